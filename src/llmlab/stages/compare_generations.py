"""Generate answers of the base model and each adapter on the configured prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = (
    "device",
    "sft.generation",
)


def run(
    cfg: Config,
    *,
    model_dir: Annotated[Path, In("base model folder")],
    adapters: Annotated[list[Path], In("adapter folders")],
    generations: Annotated[Path, Out("parquet")],
) -> None:
    from llmlab.generate import run_compare_generations

    run_compare_generations(
        cfg,
        model_dir=model_dir,
        adapters=adapters,
        generations=generations,
    )
