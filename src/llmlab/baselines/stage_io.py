"""What both baseline stages share around their model: reading the IMDB split files, turning
per-label log-probabilities into the common predictions table, and scoring it with the same
metrics code as the LLMs (`llmlab.eval.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from llmlab.config import Config
from llmlab.errors import UserError
from llmlab.eval.metrics import system_metrics
from llmlab.io import read_parquet
from llmlab.schemas import PREDICTIONS_SCHEMA, SPLIT_SCHEMA


def check_split(
    df: pl.DataFrame, where: str, labels: Sequence[str], *, require_every_label: bool
) -> None:
    """Raise UserError (one line, naming `where`) unless `df` is a usable split.

    Usable: rows present, no nulls, unique review ids, every sentiment one of `labels`, and,
    for training data (`require_every_label`), every label present: a classifier cannot learn
    a label it never sees.
    """
    if df.is_empty():
        raise UserError(f"{where}: no rows")
    for column in SPLIT_SCHEMA:
        nulls = df[column].null_count()
        if nulls:
            raise UserError(f"{where}: column {column!r} has {nulls} null values")
    if df["review_id"].is_duplicated().any():
        raise UserError(f"{where}: column 'review_id' has duplicate ids")
    present = set(df["sentiment"].unique().to_list())
    unknown = sorted(present - set(labels))
    if unknown:
        raise UserError(
            f"{where}: column 'sentiment' holds {unknown}, which are not in "
            f"eval.labels {list(labels)}"
        )
    missing = [label for label in labels if label not in present]
    if require_every_label and missing:
        raise UserError(f"{where}: no rows with sentiment {missing} (eval.labels {list(labels)})")


def read_split(path: Path, labels: Sequence[str], *, require_every_label: bool) -> pl.DataFrame:
    """Read a split parquet, check it (see `check_split`) and keep the columns we use."""
    df = read_parquet(path, SPLIT_SCHEMA)
    check_split(df, str(path), labels, require_every_label=require_every_label)
    return df.select(list(SPLIT_SCHEMA))


def predictions_frame(
    val: pl.DataFrame,
    *,
    model: str,
    labels: Sequence[str],
    log_probs: np.ndarray,
    seconds_per_review: float,
) -> pl.DataFrame:
    """The predictions table (PREDICTIONS_SCHEMA) of a baseline from its log-probabilities.

    `log_probs` has one row per row of `val` and one column per label, in `labels` order. The
    prediction is the arg-max label (ties go to the first label), so it is always valid.
    """
    if log_probs.shape != (val.height, len(labels)):
        raise ValueError(
            f"log_probs has shape {log_probs.shape}, expected {(val.height, len(labels))}"
        )
    predicted = [labels[i] for i in np.argmax(log_probs, axis=1)]
    n = val.height
    return pl.DataFrame(
        {
            "system": [model] * n,
            "model": [model] * n,
            "prompt": ["-"] * n,
            "shots": [0] * n,
            "strategy": ["-"] * n,
            "draw": [0] * n,
            "backend": [model] * n,
            "calibration": ["none"] * n,
            "review_id": val["review_id"],
            "gold": val["sentiment"],
            "prediction": predicted,
            "valid": [True] * n,
            "raw_output": predicted,
            "label_scores": log_probs.astype(np.float64).tolist(),
            "seconds": [float(seconds_per_review)] * n,
            "review_tokens": [None] * n,  # a model-token length: LLMs only
        },
        schema=PREDICTIONS_SCHEMA,
    )


def score_predictions(predictions: pl.DataFrame, cfg: Config) -> dict[str, Any]:
    """The metrics of one baseline, computed exactly as for the LLMs."""
    return system_metrics(predictions, cfg.eval.labels)


def metrics_document(
    predictions: pl.DataFrame, training: Mapping[str, Any], cfg: Config
) -> dict[str, Any]:
    """The metrics JSON of a baseline: the shared metrics plus a `training` block."""
    return {**score_predictions(predictions, cfg), "training": dict(training)}
