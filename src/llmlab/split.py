"""split_imdb: the course's train/test split, then one fixed validation subsample of test;
then the train rows that duplicate a scored review's text are dropped.

Every system (LLMs and baselines) is scored on the same `val` rows; few-shot examples, the
calibration threshold slice and baseline training data come from `train` only. `review_id`
(the row index in data/raw/imdb.parquet) identifies a review in every file downstream, so
paired tests can join systems on it.

IMDB repeats some reviews verbatim (418 exact duplicate texts in the 50k), so disjoint ids do
not make disjoint texts: a scored review's twin in train would be retrieved, with its gold
label, as the nearest `similar` example and trained on by the baselines. The split stays the
course's; `drop_scored_duplicates` is a separate step that removes those twins from train
before it is written, so every consumer of data/imdb/train.parquet is clean.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.model_selection import train_test_split

from llmlab.baselines.text import normalize_text
from llmlab.config import Config, ImdbConfig
from llmlab.errors import UserError
from llmlab.io import check_schema, read_parquet, write_json, write_parquet
from llmlab.schemas import IMDB_SCHEMA, SENTIMENTS

log = logging.getLogger(__name__)


def check_imdb(df: pl.DataFrame, where: str) -> None:
    """Raise UserError naming `where` if the raw table is not usable for splitting."""
    check_schema(df, dict(IMDB_SCHEMA), where)
    nulls = df.select(pl.col("review", "sentiment").null_count()).row(0)
    if any(nulls):
        raise UserError(f"{where}: null values in review/sentiment ({nulls[0]}, {nulls[1]})")
    unknown = sorted(set(df["sentiment"].unique().to_list()) - set(SENTIMENTS))
    if unknown:
        raise UserError(f"{where}: column 'sentiment' has values {unknown}, expected {SENTIMENTS}")


def course_split_ids(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices of Hugging Face datasets' `Dataset.train_test_split(
    test_size=test_size, seed=seed)` on `n` rows, in the order datasets selects them.

    datasets (5.x, shuffle=True, no stratification): n_test = ceil(test_size * n), the rest is
    train; `np.random.default_rng(seed).permutation(n)`, its first n_test entries are test.
    """
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    if n_train <= 0:
        raise UserError(f"imdb.test_size: {test_size} of {n} rows leaves no train rows")
    permutation = np.random.default_rng(seed).permutation(n)
    return permutation[n_test:], permutation[:n_test]


def split_imdb(
    df: pl.DataFrame, cfg: ImdbConfig
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Return (train, test, val), each with `review_id` and sorted by it.

    train/test: the rows of `load_dataset(...).train_test_split(test_size, seed=split_seed)`,
    as the course splits (`course_split_ids`).
    val: a stratified sample of `val_size` test rows (seeded by `val_seed`).
    """
    with_id = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("review_id"), *IMDB_SCHEMA)
    train_ids, test_ids = course_split_ids(with_id.height, cfg.test_size, cfg.split_seed)
    # In review_id order, so the val draw depends on which rows are in test, not on their order.
    test_ids = np.sort(test_ids)
    test_labels = with_id["sentiment"].to_numpy()[test_ids]
    if cfg.val_size > len(test_ids):
        raise UserError(f"imdb.val_size: {cfg.val_size} is more than the {len(test_ids)} test rows")
    if cfg.val_size == len(test_ids):
        val_ids = test_ids
    else:
        val_ids, _ = train_test_split(
            test_ids, train_size=cfg.val_size, stratify=test_labels, random_state=cfg.val_seed
        )

    def take(selected: np.ndarray) -> pl.DataFrame:
        return with_id.filter(pl.col("review_id").is_in(selected.tolist())).sort("review_id")

    train, test, val = take(train_ids), take(test_ids), take(val_ids)
    # The guarantees downstream code relies on; cheap enough to check every time.
    assert set(val["review_id"]) <= set(test["review_id"])
    assert not set(train["review_id"]) & set(test["review_id"])
    return train, test, val


def duplicate_key(text: str) -> str:
    """The text two reviews must share to count as duplicates: the baselines' normalisation
    (HTML tags -> spaces, entities decoded, lowercased), whitespace runs collapsed."""
    return " ".join(normalize_text(text).split())


def drop_scored_duplicates(
    train: pl.DataFrame, scored: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, dropped): `train` split by whether a row's `duplicate_key` equals a scored
    review's. Both keep train's row order."""
    scored_keys = {duplicate_key(t) for t in scored["review"]}
    twin = pl.Series([duplicate_key(t) in scored_keys for t in train["review"]], dtype=pl.Boolean)
    return train.filter(~twin), train.filter(twin)


def split_info(
    cfg: ImdbConfig,
    rows: int,
    parts: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
    dropped: pl.DataFrame,
    scored: pl.DataFrame,
) -> dict[str, Any]:
    """data/imdb/split.json: the split's sizes and the train rows dropped as scored twins."""
    train, test, val = parts
    dropped_keys = {duplicate_key(t) for t in dropped["review"]}
    twins = [
        rid
        for rid, text in zip(scored["review_id"], scored["review"], strict=True)
        if duplicate_key(text) in dropped_keys
    ]
    return {
        "rows": rows,
        "test_size": cfg.test_size,
        "split_seed": cfg.split_seed,
        "train_rows": train.height,  # the course's train split
        "test_rows": test.height,
        "val_rows": val.height,
        "dropped_train_rows": dropped.height,
        "train_rows_kept": train.height - dropped.height,
        "dropped_review_ids": dropped["review_id"].to_list(),
        "scored_reviews_with_a_train_twin": twins,
    }


def run_split_imdb(
    cfg: Config, *, input: Path, train: Path, test: Path, val: Path, info: Path
) -> None:
    """CLI layer of split-imdb: read and check the raw table, split, drop the train twins of
    scored reviews, write three parquet files and the split's JSON."""
    df = read_parquet(input)
    check_imdb(df, str(input))
    if df.height < 2:
        raise UserError(f"{input}: {df.height} rows, too few to split")
    parts = split_imdb(df, cfg.imdb)
    kept, dropped = drop_scored_duplicates(parts[0], parts[2])
    log.info(
        "dropped %d of %d train rows: their normalized text equals a scored (val) review's",
        dropped.height,
        parts[0].height,
    )
    written = (kept, parts[1], parts[2])
    for name, part in zip(("train", "test", "val"), written, strict=True):
        counts = dict(part.group_by("sentiment").len().sort("sentiment").iter_rows())
        log.info("%s: %d rows %s", name, part.height, counts)
    for part, path in zip(written, (train, test, val), strict=True):
        write_parquet(part, path)
    write_json(split_info(cfg.imdb, df.height, parts, dropped, parts[2]), info)
