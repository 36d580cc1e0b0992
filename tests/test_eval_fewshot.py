"""Few-shot example selection: balance, determinism, similarity, and no leakage."""

from __future__ import annotations

import polars as pl
import pytest

from llmlab.errors import UserError
from llmlab.eval.fewshot import (
    LeakageError,
    check_no_leakage,
    select_fixed,
    select_similar,
    split_pool,
)

LABELS = ["negative", "positive"]


def train_frame(n: int = 60) -> pl.DataFrame:
    # 2:1 negative:positive, so a balanced draw is not balanced by luck
    return pl.DataFrame(
        {
            "review_id": list(range(100, 100 + n)),
            "review": [f"review number {i}" for i in range(n)],
            "sentiment": ["positive" if i % 3 == 0 else "negative" for i in range(n)],
        }
    )


def test_balanced_has_equal_labels_and_is_deterministic():
    pool = train_frame()
    for shots in (4, 5, 6):
        chosen = select_fixed(pool, "balanced", shots, LABELS, seed=3)
        counts = chosen["sentiment"].value_counts()["count"].to_list()
        assert chosen.height == shots and max(counts) - min(counts) <= 1 and len(counts) == 2
        assert chosen["review_id"].n_unique() == shots
    a = select_fixed(pool, "balanced", 5, LABELS, seed=3)
    assert a.equals(select_fixed(pool.reverse(), "balanced", 5, LABELS, seed=3))  # order-free
    assert not a.equals(select_fixed(pool, "balanced", 5, LABELS, seed=4))
    # Shuffled: over seeds, the labels do not always come in the same order.
    orders = {tuple(select_fixed(pool, "balanced", 4, LABELS, s)["sentiment"]) for s in range(8)}
    assert len(orders) > 1


def test_random_is_seeded_and_from_the_pool():
    pool = train_frame()
    a = select_fixed(pool, "random", 5, LABELS, seed=1)
    assert a.equals(select_fixed(pool, "random", 5, LABELS, seed=1))
    assert set(a["review_id"]) <= set(pool["review_id"])
    assert select_fixed(pool, "random", 0, LABELS, seed=1).is_empty()
    with pytest.raises(UserError, match="pool has"):
        select_fixed(pool.head(3), "random", 5, LABELS, seed=1)


def test_similar_returns_nearest_reviews_most_similar_last():
    pool = pl.DataFrame(
        {
            "review_id": [1, 2, 3, 4, 5, 6],
            "review": [
                "space aliens invade earth",
                "aliens and spaceships in space battles",
                "a romantic comedy in paris",
                "romantic love story wedding comedy",
                "boring documentary about trains",
                "trains and railways documentary",
            ],
            "sentiment": ["positive", "negative"] * 3,
        }
    )
    (near_aliens, near_trains) = select_similar(
        pool, ["aliens attack in space", "a documentary about old trains"], shots=2
    )
    assert set(near_aliens["review_id"]) == {1, 2}
    assert set(near_trains["review_id"]) == {5, 6}
    assert near_trains["review_id"][-1] == 5  # the closest one sits next to the query


def test_split_pool_is_stratified_disjoint_and_seeded():
    train = train_frame(90)
    pool, holdout = split_pool(train, 30, seed=0)
    assert pool.height == 60 and holdout.height == 30
    assert not set(pool["review_id"]) & set(holdout["review_id"])
    assert holdout["sentiment"].value_counts().sort("sentiment")["count"].to_list() == [20, 10]
    assert split_pool(train, 30, seed=0)[1].equals(holdout)
    assert split_pool(train, 0, seed=0)[1].is_empty()
    with pytest.raises(UserError, match="threshold_rows"):
        split_pool(train, 90, seed=0)


def test_leakage_is_refused():
    check_no_leakage([1, 2], [3, 4], "examples")
    with pytest.raises(LeakageError, match="examples"):
        check_no_leakage([1, 2], [2, 5], "examples")
