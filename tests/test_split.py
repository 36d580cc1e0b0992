"""split_imdb: the course split, the stratified validation subsample, stable review ids."""

from __future__ import annotations

import polars as pl
import pytest
from sklearn.model_selection import train_test_split

from llmlab.config import ImdbConfig
from llmlab.errors import UserError
from llmlab.schemas import SPLIT_SCHEMA
from llmlab.split import check_imdb, split_imdb


def raw(n: int = 500) -> pl.DataFrame:
    # 30% positive, so stratification is visible
    return pl.DataFrame(
        {
            "review": [f"review {i}" for i in range(n)],
            "sentiment": ["positive" if i % 10 < 3 else "negative" for i in range(n)],
        }
    )


def cfg(**kw) -> ImdbConfig:
    return ImdbConfig(source={"synthetic": {"rows": 1}}, **({"val_size": 50} | kw))


def test_split_matches_the_course_recipe_on_a_dataframe():
    df = raw()
    train, test, val = split_imdb(df, cfg())
    # What the course does: train_test_split on the (pandas) frame itself.
    course_train, course_test = train_test_split(df.to_pandas(), test_size=0.2, random_state=42)
    assert sorted(train["review_id"]) == sorted(course_train.index)
    assert sorted(test["review_id"]) == sorted(course_test.index)
    for part in (train, test, val):
        assert part.schema == SPLIT_SCHEMA
        # review_id is the row index of the raw table
        assert part["review"].to_list() == [f"review {i}" for i in part["review_id"]]
        assert part["review_id"].is_sorted()


def test_val_is_a_stratified_seeded_subsample_of_test():
    train, test, val = split_imdb(raw(), cfg())
    assert val.height == 50
    assert set(val["review_id"]) <= set(test["review_id"])
    assert not set(train["review_id"]) & set(test["review_id"])
    # stratified: the positive share of test (not exactly the raw 30%) scaled to 50 rows
    assert (val["sentiment"] == "positive").sum() == round(
        50 * (test["sentiment"] == "positive").mean()
    )
    assert split_imdb(raw(), cfg())[2].equals(val)
    assert not split_imdb(raw(), cfg(val_seed=7))[2].equals(val)
    assert split_imdb(raw(), cfg(val_size=100))[2].equals(test)  # all of test


def test_val_larger_than_test_is_refused():
    with pytest.raises(UserError, match="imdb.val_size"):
        split_imdb(raw(), cfg(val_size=101))


def test_check_imdb_names_the_problem():
    check_imdb(raw(), "x.parquet")
    with pytest.raises(UserError, match=r"x.parquet: .*'neutral'"):
        check_imdb(raw().with_columns(sentiment=pl.lit("neutral")), "x.parquet")
    with pytest.raises(UserError, match="missing column 'review'"):
        check_imdb(raw().drop("review"), "x.parquet")
    with pytest.raises(UserError, match="null"):
        check_imdb(raw().with_columns(review=pl.lit(None, pl.String)), "x.parquet")
