"""Every system's accuracy with CIs, paired tests and figures, from all predictions (JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = ("eval",)


def run(
    cfg: Config,
    *,
    predictions: Annotated[list[Path], In("predictions parquet files")],
    summary: Annotated[Path, Out("JSON")],
    figures: Annotated[Path, Out("folder")],
) -> None:
    from llmlab.eval.summary import run_eval_summary

    run_eval_summary(
        cfg,
        predictions=predictions,
        summary=summary,
        figures=figures,
    )
