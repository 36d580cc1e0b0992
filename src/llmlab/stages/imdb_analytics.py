"""Label balance and review lengths of IMDB: figures and a statistics JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = ("analytics",)


def run(
    cfg: Config,
    *,
    input: Annotated[Path, In("raw IMDB parquet")],
    figures: Annotated[Path, Out("folder")],
    stats: Annotated[Path, Out("JSON")],
) -> None:
    from llmlab.analytics.imdb import run_imdb_analytics

    run_imdb_analytics(cfg, input=input, figures=figures, stats=stats)
