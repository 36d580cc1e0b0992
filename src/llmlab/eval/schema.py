"""The predictions table every evaluated system writes, LLM or baseline, whoever produced it.

One row per (system, review). A *system* is one way of producing labels: a model with a
prompt, shot count, few-shot strategy, backend and calibration, or a baseline. `eval_summary`
reads these files only, so anything scored here is comparable with everything else.
"""

from __future__ import annotations

import polars as pl

PREDICTIONS_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.Utf8(),  # unique, human-readable id, e.g. "instruct_lm/system/5shot/balanced"
    "model": pl.Utf8(),  # key of `models`, or "tfidf" / "rnn"
    "prompt": pl.Utf8(),  # key of eval.prompts; "-" for baselines
    "shots": pl.Int64(),  # in-context examples; 0 for baselines
    "strategy": pl.Utf8(),  # few-shot strategy; "-" when shots == 0 or for baselines
    "backend": pl.Utf8(),  # "vllm", "transformers", "tfidf", "rnn"
    "calibration": pl.Utf8(),  # "none", "contextual", ...
    "review_id": pl.Int64(),  # row id of the review in data/raw/imdb.parquet
    "gold": pl.Utf8(),
    "prediction": pl.Utf8(),  # a label, or null when the output was not a label
    "valid": pl.Boolean(),  # prediction is one of the labels (never coerced)
    "raw_output": pl.Utf8(),  # what the engine produced, verbatim
    # log P(label) normalized over the labels, in eval.labels order (calibrated in calibrated
    # rows, whose prediction is their argmax; vLLM's uncalibrated prediction is its choice text)
    "label_scores": pl.List(pl.Float64()),
    "seconds": pl.Float64(),  # wall time attributed to this prompt (batch time / batch size)
}
