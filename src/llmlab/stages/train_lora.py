"""(Q)LoRA SFT of one variant: adapter, per-step log, held-out loss, loss curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Option, Out, Wildcard

PARAMS = (
    "device",
    "sft.variants.{variant}.quantize",
    "sft.variants.{variant}.lora",
    "sft.variants.{variant}.training",
    # The number of data-parallel processes changes the effective batch, so the result.
    "sft.variants.{variant}.distributed",
)


def run(
    cfg: Config,
    *,
    variant: Annotated[str, Wildcard("key of sft.variants", values="sft.variants")],
    model_dir: Annotated[Path, In("base model folder")],
    train: Annotated[Path, In("formatted train parquet")],
    eval: Annotated[Path, In("formatted eval parquet")],
    checkpoints: Annotated[Path, Option("checkpoint folder (kept across interrupted runs)")],
    adapter: Annotated[Path, Out("adapter folder")],
    train_log: Annotated[Path, Out("per-step JSON", kind="plot")],
    metrics: Annotated[Path, Out("JSON", kind="metric")],
    curve: Annotated[Path, Out("loss-curve PNG", kind="plot")],
) -> None:
    from llmlab.train import run_train_lora

    run_train_lora(
        cfg,
        variant,
        model_dir=model_dir,
        train=train,
        eval=eval,
        checkpoints=checkpoints,
        adapter=adapter,
        train_log=train_log,
        metrics=metrics,
        curve=curve,
    )
