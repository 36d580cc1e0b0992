"""Every system's accuracy, probability quality, draw spread and errors, with figures (JSON).

Reads every predictions file and the validation reviews (text snippets, word counts)."""

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
    val: Annotated[Path, In("IMDB validation parquet (review texts, for the error analysis)")],
    summary: Annotated[Path, Out("JSON")],
    figures: Annotated[Path, Out("folder")],
) -> None:
    from llmlab.eval.summary import run_eval_summary

    run_eval_summary(
        cfg,
        predictions=predictions,
        val=val,
        summary=summary,
        figures=figures,
    )
