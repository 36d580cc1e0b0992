#!/usr/bin/env python
"""What serving QLoRA adapters on another base costs (README, "Generation design").

The pinned vLLM has no bitsandbytes 4-bit, so compare_generations cannot serve the adapters
on the 4-bit NF4 base they were trained on. Three bases, each with the same adapter:

- nf4: the 4-bit base itself (transformers + bitsandbytes): the model train_lora trained;
- dequantized: its NF4 weights dequantized to the run's dtype (what the vllm backend serves,
  `llmlab.generate.load_trained_base`);
- original: the model folder's own unquantized weights (what serving the folder would give).

For each: the held-out loss (mean next-token NLL, nats per token, on the first `--dialogues`
eval dialogues cut to `--tokens` tokens, as merge_adapter's check) and greedy answers to the
first user turns of the eval dialogues, compared with nf4's (exact text agreement).

    .venv/bin/python scripts/benchmark_generation_base.py \\
        --model-dir models/pretrained/sft_lm --adapter models/adapters/a \\
        --eval data/sft/a/eval.parquet

Runs on the CPU in fp32 (where bitsandbytes computes a 4-bit layer as its dequantized weight's
matmul); one line per base, then the CPU it ran on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from llmlab.run_metadata import cpu_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--adapter", type=Path, required=True)
    p.add_argument("--eval", type=Path, required=True, help="the variant's eval.parquet")
    p.add_argument("--dialogues", type=int, default=8)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    args = p.parse_args()

    import polars as pl
    from peft import PeftModel

    from llmlab.config import GenerationConfig
    from llmlab.generate import generate_answers, load_trained_base
    from llmlab.io import read_parquet
    from llmlab.merge import Nll, check_sequences, load_adapter_tokenizer, load_base, logits_of
    from llmlab.runtime import Runtime, load_base_model
    from llmlab.schemas import MESSAGES_SCHEMA

    tokenizer = load_adapter_tokenizer(args.adapter)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    sequences = check_sequences(args.eval, tokenizer, args.dialogues, args.tokens)
    dialogues = read_parquet(args.eval, MESSAGES_SCHEMA)["messages"].to_list()
    prompts = [m[0]["content"] for m in dialogues if m and m[0]["role"] == "user"]
    prompts = prompts[: args.prompts]
    gen = GenerationConfig(
        prompts=prompts, do_sample=False, max_new_tokens=args.max_new_tokens, quantize=False
    )
    fp32 = Runtime(device="cpu", precision="fp32", optim="", quantize=False)
    bases = {
        "nf4": lambda: load_base(args.model_dir, Runtime("cpu", "fp32", "", quantize=True)),
        "dequantized": lambda: load_trained_base(args.model_dir, fp32),
        "original": lambda: load_base_model(args.model_dir, fp32),
    }
    rows = []
    answers: dict[str, list[str]] = {}
    for name, load in bases.items():
        start = time.perf_counter()
        model = PeftModel.from_pretrained(load(), args.adapter).eval()
        nll, base_nll = Nll(), Nll()
        for ids, logits in zip(sequences, logits_of(model, sequences), strict=True):
            nll.add(logits, ids)
        with model.disable_adapter():
            for ids, logits in zip(sequences, logits_of(model, sequences), strict=True):
                base_nll.add(logits, ids)
        answers[name] = [a.text for a in generate_answers(model, tokenizer, prompts, gen)]
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        rows.append(
            {
                "base": name,
                "heldout_nll_with_adapter": round(nll.mean, 4),
                "heldout_nll_base_alone": round(base_nll.mean, 4),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        del model
    for row in rows:
        same = [a == b for a, b in zip(answers[row["base"]], answers["nf4"], strict=True)]
        row["greedy_answers_equal_to_nf4"] = f"{sum(same)}/{len(same)}"
    print(pl.DataFrame(rows))
    print(
        f"adapter {args.adapter}, {len(sequences)} dialogues / "
        f"{sum(len(s) - 1 for s in sequences)} predicted tokens, {len(prompts)} prompts x "
        f"{args.max_new_tokens} new tokens; CPU: {cpu_name()}"
    )


if __name__ == "__main__":
    main()
