"""split_imdb: the course's train/test split, then one fixed validation subsample of test.

Every system (LLMs and baselines) is scored on the same `val` rows; few-shot examples and
baseline training data come from `train` only. `review_id` (the row index in
data/raw/imdb.parquet) identifies a review in every file downstream, so paired tests can join
systems on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.model_selection import train_test_split

from llmlab.config import Config, ImdbConfig
from llmlab.errors import UserError
from llmlab.io import check_schema, read_parquet, write_parquet
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


def split_imdb(
    df: pl.DataFrame, cfg: ImdbConfig
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Return (train, test, val), each with `review_id` and sorted by it.

    train/test: `train_test_split(test_size, random_state=split_seed)` over the rows, as the
    course does (not stratified, so the same rows as `train_test_split(df, ...)` on the frame).
    val: a stratified sample of `val_size` test rows (seeded by `val_seed`).
    """
    with_id = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("review_id"), *IMDB_SCHEMA)
    ids = np.arange(with_id.height)
    train_ids, test_ids = train_test_split(
        ids, test_size=cfg.test_size, random_state=cfg.split_seed
    )
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


def run_split_imdb(cfg: Config, *, input: Path, train: Path, test: Path, val: Path) -> None:
    """CLI layer of split-imdb: read and check the raw table, split, write three parquet files."""
    df = read_parquet(input)
    check_imdb(df, str(input))
    if df.height < 2:
        raise UserError(f"{input}: {df.height} rows, too few to split")
    parts = split_imdb(df, cfg.imdb)
    for name, part in zip(("train", "test", "val"), parts, strict=True):
        counts = dict(part.group_by("sentiment").len().sort("sentiment").iter_rows())
        log.info("%s: %d rows %s", name, part.height, counts)
    for part, path in zip(parts, (train, test, val), strict=True):
        write_parquet(part, path)
