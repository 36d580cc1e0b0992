"""Choosing in-context examples from the train split, and keeping them away from scored rows.

Strategies (`eval.fewshot.strategies`):
- `random`: k rows of the pool, one set shared by every query.
- `balanced`: k rows with the labels as equal as possible (the remainder of k / labels goes to
  labels drawn at random), in shuffled order, one set shared by every query.
- `similar`: for each query the k pool reviews nearest by TF-IDF cosine, most similar last
  (next to the query). Each query has its own prefix, so engines cannot reuse a cached one.

The pool is the train split minus the held-out slice the calibration threshold is fitted on,
so neither examples nor the threshold ever see an evaluated (validation) row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split

from llmlab.errors import UserError
from llmlab.eval.prompts import clean_review

FIXED_STRATEGIES = ("random", "balanced")


class LeakageError(AssertionError):
    """An in-context example or calibration row is also an evaluated row (a bug, not input)."""


def split_pool(
    train: pl.DataFrame, holdout_rows: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split train into (few-shot pool, held-out calibration slice), stratified by sentiment.

    `holdout_rows == 0` gives an empty slice. Both parts are sorted by review_id.
    """
    train = train.sort("review_id")
    if holdout_rows == 0:
        return train, train.clear()
    if holdout_rows >= train.height:
        raise UserError(
            f"eval.calibration.threshold_rows: {holdout_rows} is not less than the "
            f"{train.height} train rows"
        )
    pool_ids, holdout_ids = train_test_split(
        train["review_id"].to_numpy(),
        test_size=holdout_rows,
        stratify=train["sentiment"].to_numpy(),
        random_state=seed,
    )
    pool = train.filter(pl.col("review_id").is_in(pool_ids.tolist()))
    holdout = train.filter(pl.col("review_id").is_in(holdout_ids.tolist()))
    return pool, holdout


def select_fixed(
    pool: pl.DataFrame, strategy: str, shots: int, labels: Sequence[str], seed: int
) -> pl.DataFrame:
    """One example set shared by all queries (`random` or `balanced`), in prompt order."""
    if shots == 0:
        return pool.clear()
    if shots > pool.height:
        raise UserError(f"eval.shots: {shots} examples asked, the few-shot pool has {pool.height}")
    pool = pool.sort("review_id")  # the draw depends on the seed only, not on row order
    rng = np.random.default_rng(seed)
    if strategy == "random":
        picked = rng.choice(pool.height, size=shots, replace=False)
        return pool[picked.tolist()]
    if strategy != "balanced":
        raise ValueError(f"select_fixed: {strategy!r} is not a fixed strategy")
    per_label = dict.fromkeys(labels, shots // len(labels))
    for label in rng.choice(list(labels), size=shots % len(labels), replace=False):
        per_label[str(label)] += 1
    parts = []
    for label, count in per_label.items():
        rows = pool.filter(pl.col("sentiment") == label)
        if count > rows.height:
            raise UserError(
                f"eval.fewshot: {count} {label!r} examples asked, the pool has {rows.height}"
            )
        parts.append(rows[rng.choice(rows.height, size=count, replace=False).tolist()])
    chosen = pl.concat(parts)
    return chosen[rng.permutation(chosen.height).tolist()]


def select_similar(pool: pl.DataFrame, queries: Sequence[str], shots: int) -> list[pl.DataFrame]:
    """For each query, its `shots` nearest pool rows by TF-IDF cosine, least similar first.

    Ties are broken by review_id, so the result does not depend on row order or threads.
    """
    pool = pool.sort("review_id")
    if shots > pool.height:
        raise UserError(f"eval.shots: {shots} examples asked, the few-shot pool has {pool.height}")
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 1))
    pool_matrix = vectorizer.fit_transform([clean_review(t) for t in pool["review"]])
    query_matrix = vectorizer.transform([clean_review(t) for t in queries])
    out: list[pl.DataFrame] = []
    chunk = 256  # rows of the dense similarity block: 256 x pool size floats at a time
    for start in range(0, query_matrix.shape[0], chunk):
        sims = (query_matrix[start : start + chunk] @ pool_matrix.T).toarray()
        for row in sims:
            # lexsort: last key is primary; ascending similarity, then descending review order
            # so that among equal scores the smallest review_id ends nearest the query.
            order = np.lexsort((-np.arange(row.size), row))[-shots:]
            out.append(pool[order.tolist()])
    return out


def check_no_leakage(used_ids: Sequence[int], evaluated_ids: Sequence[int], what: str) -> None:
    """Fail loudly if any row used to build prompts (or fit a threshold) is evaluated."""
    overlap = set(used_ids) & set(evaluated_ids)
    if overlap:
        raise LeakageError(f"{what}: review_ids {sorted(overlap)[:5]} are also evaluated rows")
