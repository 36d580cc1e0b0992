"""Merge one variant's LoRA adapter into the base model: a checked, self-contained HF folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out, Wildcard

PARAMS = (
    "device",
    "sft.merge",
    # QLoRA or not: which base weights `sft.merge.base: trained` means.
    "sft.variants.{variant}.quantize",
)


def run(
    cfg: Config,
    *,
    variant: Annotated[str, Wildcard("key of sft.variants", values="sft.variants")],
    model_dir: Annotated[Path, In("base model folder")],
    adapter: Annotated[Path, In("adapter folder (train_lora)")],
    eval: Annotated[Path, In("formatted eval parquet (the check's held-out dialogues)")],
    merged: Annotated[Path, Out("merged model folder")],
    metrics: Annotated[Path, Out("JSON: the checks", kind="metric")],
) -> None:
    from llmlab.merge import run_merge_adapter

    run_merge_adapter(
        cfg,
        variant,
        model_dir=model_dir,
        adapter=adapter,
        eval=eval,
        merged=merged,
        metrics=metrics,
    )
