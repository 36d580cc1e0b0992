"""Join eval_llm's shards of one model and shot count: predictions and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out, Wildcard

# `eval.shards` is read here only to check that every shard is present; the rest is what
# the metrics depend on.
PARAMS = ("eval.labels", "eval.bootstrap", "eval.shards")


def run(
    cfg: Config,
    *,
    model: Annotated[str, Wildcard("key of eval.models", values="eval.models")],
    shots: Annotated[int, Wildcard("number of in-context examples", values="eval.shots")],
    val: Annotated[Path, In("IMDB validation parquet (the row order)")],
    shard_predictions: Annotated[list[Path], In("eval_llm's shard parquets")],
    shard_info: Annotated[list[Path], In("eval_llm's shard JSONs")],
    predictions: Annotated[Path, Out("parquet")],
    metrics: Annotated[Path, Out("JSON", kind="metric")],
) -> None:
    from llmlab.eval.shards import run_eval_llm_gather

    run_eval_llm_gather(
        cfg,
        model=model,
        shots=shots,
        val=val,
        shard_predictions=shard_predictions,
        shard_info=shard_info,
        predictions=predictions,
        metrics=metrics,
    )
