"""TF-IDF + logistic regression on IMDB train, scored on the validation rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = (
    "baselines.tfidf",
    "eval.labels",
    "eval.bootstrap",
)


def run(
    cfg: Config,
    *,
    train: Annotated[Path, In("IMDB train parquet")],
    val: Annotated[Path, In("IMDB validation parquet")],
    predictions: Annotated[Path, Out("parquet")],
    metrics: Annotated[Path, Out("JSON", kind="metric")],
    model_out: Annotated[Path, Out("joblib file")],
) -> None:
    from llmlab.baselines.tfidf import run_baseline_tfidf

    run_baseline_tfidf(
        cfg, train=train, val=val, predictions=predictions, metrics=metrics, model_out=model_out
    )
