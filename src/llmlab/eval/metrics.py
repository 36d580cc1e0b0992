"""Metrics of one system's predictions, and paired tests between two systems.

Intervals and tests come from `llmlab.stats`: Wilson for an accuracy, McNemar's score test
with Tango's interval for the difference of two systems on the same reviews.

Input is a predictions table in `llmlab.schemas.PREDICTIONS_SCHEMA` (only `review_id`,
`gold`, `prediction`, `valid` and `seconds` are read). An invalid prediction (an output that
is not a label) counts as wrong: it lowers accuracy and the recall of its gold label, and is
reported separately as the invalid rate; it is never mapped to a label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from sklearn.metrics import confusion_matrix, f1_score

from llmlab.errors import UserError
from llmlab.stats import paired_difference, wilson_ci

if TYPE_CHECKING:
    from llmlab.config import EvalConfig

# Column name of invalid outputs in confusion matrices (not a label: labels are user strings
# but may not contain angle brackets, see EvalConfig).
INVALID = "<invalid>"


def bootstrap_ci(
    values: np.ndarray, *, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (resampling rows with replacement).

    For means without a closed-form interval (Brier score, log loss, win rates with ties);
    a proportion gets `llmlab.stats.wilson_ci` instead."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    # Chunked so that 2,000 rows x 10,000 resamples does not allocate 160 MB at once.
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // values.size)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def _predicted_or_invalid(predictions: pl.DataFrame) -> list[str]:
    return (
        predictions.select(
            pl.when(pl.col("valid")).then(pl.col("prediction")).otherwise(pl.lit(INVALID))
        )
        .to_series()
        .to_list()
    )


def system_metrics(
    predictions: pl.DataFrame,
    labels: Sequence[str],
    *,
    positive: str | None = None,
) -> dict[str, Any]:
    """Accuracy (with a Wilson 95% CI), macro-F1, confusion matrix and rates of one system.

    `predictions` holds the rows of ONE system. `positive` is the label whose predicted rate
    is reported as `predicted_positive_rate` (default: the last label, "positive" for
    [negative, positive]); a strongly biased model shows up there long before in accuracy.

    Returns a JSON-ready dict:
      n, accuracy, accuracy_ci [low, high], macro_f1, invalid, invalid_rate,
      predicted_rates {label: share of rows}, predicted_positive_rate,
      confusion {"labels": [...gold rows], "columns": [...labels, "<invalid>"], "counts": [[...]]},
      seconds (total wall time), prompts_per_second (null if no time was recorded).
    """
    labels = list(labels)
    if predictions.is_empty():
        raise UserError("system_metrics: no prediction rows to score")
    gold = predictions["gold"].to_list()
    unknown_gold = sorted(set(gold) - set(labels))
    if unknown_gold:
        raise UserError(f"system_metrics: gold labels {unknown_gold} are not in labels {labels}")
    positive = labels[-1] if positive is None else positive
    if positive not in labels:
        raise UserError(f"system_metrics: positive label {positive!r} is not in labels {labels}")
    valid = predictions["valid"].fill_null(False).to_numpy()
    # A row marked valid must hold a label; anything else is a bug in whoever wrote the file.
    bad = predictions.filter(pl.col("valid") & ~pl.col("prediction").is_in(labels))
    if bad.height:
        raise UserError(
            f"system_metrics: {bad.height} rows are marked valid but their prediction is not a "
            f"label (e.g. {bad['prediction'][0]!r})"
        )
    predicted = _predicted_or_invalid(predictions)
    correct = np.array([p == g for p, g in zip(predicted, gold, strict=True)], dtype=np.float64)
    n = len(gold)
    columns = [*labels, INVALID]
    counts = confusion_matrix(gold, predicted, labels=columns)[: len(labels)]
    seconds = float(predictions["seconds"].fill_null(0.0).sum())
    rates = {label: float(np.mean([p == label for p in predicted])) for label in labels}
    return {
        "n": n,
        "accuracy": float(correct.mean()),
        "accuracy_ci": list(wilson_ci(int(correct.sum()), n)),
        # INVALID is a possible prediction but not averaged over: it only costs recall.
        "macro_f1": float(
            f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)
        ),
        "invalid": int(n - valid.sum()),
        "invalid_rate": float(1.0 - valid.mean()),
        "predicted_rates": rates,
        "predicted_positive_rate": rates[positive],
        "confusion": {"labels": labels, "columns": columns, "counts": counts.tolist()},
        "seconds": seconds,
        "prompts_per_second": n / seconds if seconds > 0 else None,
    }


def correct_by_review(predictions: pl.DataFrame) -> pl.DataFrame:
    """One system's rows -> (review_id, correct); invalid predictions are not correct."""
    return predictions.select(
        "review_id",
        correct=(
            pl.col("valid").fill_null(False) & (pl.col("prediction") == pl.col("gold"))
        ).fill_null(False),
    )


def paired_comparison(a: pl.DataFrame, b: pl.DataFrame, *, family_size: int = 1) -> dict[str, Any]:
    """Compare two systems on the reviews both scored: accuracy difference A - B with Tango's
    score interval and McNemar's score test (`llmlab.stats.paired_difference`), Bonferroni
    over a family of `family_size` tests. Raises if they did not score the same reviews."""
    ca, cb = correct_by_review(a), correct_by_review(b)
    if ca["review_id"].is_duplicated().any() or cb["review_id"].is_duplicated().any():
        raise UserError("paired_comparison: a system has more than one row per review_id")
    joined = ca.join(cb, on="review_id", how="full", suffix="_b", coalesce=True)
    missing = joined.filter(pl.col("correct").is_null() | pl.col("correct_b").is_null()).height
    if missing:
        raise UserError(
            f"paired_comparison: the two systems differ on {missing} reviews; a paired test "
            "needs the same reviews"
        )
    joined = joined.sort("review_id")
    xa = joined["correct"].to_numpy().astype(bool)
    xb = joined["correct_b"].to_numpy().astype(bool)
    return {
        "accuracy_a": float(xa.mean()),
        "accuracy_b": float(xb.mean()),
    } | paired_difference(xa, xb, family_size=family_size)


def metrics_by_system(predictions: pl.DataFrame, eval_cfg: EvalConfig) -> dict[str, Any]:
    """system_metrics of every system in a predictions table, keyed by system id."""
    out = {}
    for (system,), rows in predictions.group_by("system", maintain_order=True):
        first = rows.row(0, named=True)
        out[system] = {
            key: first[key]
            for key in ("model", "prompt", "shots", "strategy", "backend", "calibration")
        } | system_metrics(rows, eval_cfg.labels)
    return out
