"""Helpers both analytics stages use: summaries of lengths and of categorical columns."""

from __future__ import annotations

from typing import Any

import polars as pl


def length_summary(values: pl.Series) -> dict[str, float | int | None]:
    """mean, min, median, p95 (linear interpolation) and max of a numeric series."""
    if values.len() == 0:
        return {"mean": None, "min": None, "median": None, "p95": None, "max": None}
    return {
        "mean": round(float(values.mean()), 2),
        "min": int(values.min()),
        "median": float(values.median()),
        "p95": round(float(values.quantile(0.95, "linear")), 2),
        "max": int(values.max()),
    }


def distribution(df: pl.DataFrame, column: str) -> list[dict[str, Any]]:
    """Rows and share per value of `column`, most frequent first (ties: value order)."""
    counts = (
        df.group_by(column)
        .len("rows")
        .with_columns(share=(pl.col("rows") / df.height).round(4))
        .sort(["rows", column], descending=[True, False], nulls_last=True)
    )
    return [{"value": v, "rows": r, "share": s} for v, r, s in counts.iter_rows()]
