"""Generate answers of the base model and each adapter: showcase and held-out prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = (
    "device",
    "sft.generation",
    "sft.heldout.count",
    "sft.heldout.seed",
)


def run(
    cfg: Config,
    *,
    model_dir: Annotated[Path, In("base model folder")],
    adapters: Annotated[list[Path], In("adapter folders")],
    train: Annotated[list[Path], In("every variant's formatted train parquet")],
    eval: Annotated[list[Path], In("every variant's formatted eval parquet")],
    generations: Annotated[Path, Out("parquet of the showcase prompts' answers")],
    heldout: Annotated[Path, Out("parquet: held-out prompts' answers, reference-answer losses")],
) -> None:
    from llmlab.generate import run_compare_generations

    run_compare_generations(
        cfg,
        model_dir=model_dir,
        adapters=adapters,
        generations=generations,
        train=train,
        eval=eval,
        heldout=heldout,
    )
