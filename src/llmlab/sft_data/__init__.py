"""SFT data stages: filter_saiga -> rename_roles -> format_chat (one variant each).

- `filters`: the variant's heuristics (sft.variants.<variant>.filter), the funnel, the sample.
- `dedup`: exact and MinHash near-duplicate detection of first user messages.
- `chat`: the project's chat template, the SFT tokenizer, role renaming, formatting.
- `run`: the stages' CLI layer (check inputs, call the above, write outputs atomically).

This file imports nothing, so importing one submodule never imports the others.
"""
