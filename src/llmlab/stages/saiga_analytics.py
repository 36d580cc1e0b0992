"""Distributions and length statistics of saiga: figures and a statistics JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = ("analytics",)


def run(
    cfg: Config,
    *,
    input: Annotated[Path, In("raw saiga parquet")],
    tokenizer: Annotated[Path, In("model folder whose tokenizer counts tokens")],
    figures: Annotated[Path, Out("folder")],
    stats: Annotated[Path, Out("JSON")],
) -> None:
    from llmlab.analytics.saiga import run_saiga_analytics

    run_saiga_analytics(cfg, input=input, tokenizer=tokenizer, figures=figures, stats=stats)
