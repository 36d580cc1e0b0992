"""Zero-/few-shot sentiment of one model at one shot count, on one shard of the reviews."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out, Wildcard

PARAMS = (
    "device",
    "eval",
    "models.{model}.prompt_format",
    "models.{model}.chat_template_kwargs",
)


def run(
    cfg: Config,
    *,
    model: Annotated[str, Wildcard("key of eval.models", values="eval.models")],
    shots: Annotated[int, Wildcard("number of in-context examples", values="eval.shots")],
    shard: Annotated[int, Wildcard("shard index, 0 .. eval.shards - 1", values="eval.shards")],
    model_dir: Annotated[Path, In("model folder")],
    train: Annotated[Path, In("IMDB train parquet (few-shot pool)")],
    val: Annotated[Path, In("IMDB validation parquet")],
    predictions: Annotated[Path, Out("parquet of the shard's reviews")],
    info: Annotated[Path, Out("JSON: the shard's run info (timings, biases, examples)")],
) -> None:
    from llmlab.eval.run import run_eval_llm

    run_eval_llm(
        cfg,
        model=model,
        shots=shots,
        shard=shard,
        model_dir=model_dir,
        train=train,
        val=val,
        predictions=predictions,
        info=info,
    )
