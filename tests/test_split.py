"""split_imdb: the course split (Hugging Face datasets' train_test_split), the stratified
validation subsample, stable review ids; dropping the train twins of scored reviews."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from llmlab.config import ImdbConfig, load_params
from llmlab.errors import UserError
from llmlab.eval.fewshot import split_pool
from llmlab.io import read_json, read_parquet, write_parquet
from llmlab.report import split_sentence
from llmlab.schemas import SPLIT_SCHEMA
from llmlab.split import (
    check_imdb,
    course_split_ids,
    drop_scored_duplicates,
    duplicate_key,
    run_split_imdb,
    split_imdb,
)

REPO = Path(__file__).resolve().parents[1]
REAL_IMDB = REPO.parent / "shared" / "data" / "imdb_aclimdb.csv.gz"


def raw(n: int = 500) -> pl.DataFrame:
    # 30% positive, so stratification is visible
    return pl.DataFrame(
        {
            "review": [f"review {i}" for i in range(n)],
            "sentiment": ["positive" if i % 10 < 3 else "negative" for i in range(n)],
        }
    )


def cfg(**kw) -> ImdbConfig:
    return ImdbConfig(source={"synthetic": {"rows": 1}}, **({"val_size": 2} | kw))


@pytest.mark.parametrize(
    ("n", "test_size", "seed"),
    # 30 x 0.1 = 3.0000000000000004 in floats: datasets takes ceil, 4 test rows, and so do we.
    [(1000, 0.2, 42), (37, 0.2, 42), (37, 0.3, 7), (501, 0.25, 0), (10, 0.85, 3), (30, 0.1, 42)],
)
def test_split_is_the_rows_of_datasets_train_test_split(n, test_size, seed):
    """The course: `load_dataset(...).train_test_split(test_size=0.2, seed=42)`."""
    datasets = pytest.importorskip("datasets")
    df = raw(n)
    course = datasets.Dataset.from_dict(df.to_dict(as_series=False)).train_test_split(
        test_size=test_size, seed=seed
    )
    train, test, _ = split_imdb(df, cfg(test_size=test_size, split_seed=seed, val_size=2))
    # Row for row: the same reviews, and course_split_ids in datasets' own order.
    for ours, theirs in ((train, course["train"]), (test, course["test"])):
        assert sorted(ours["review"]) == sorted(theirs["review"])
    train_ids, test_ids = course_split_ids(n, test_size, seed)
    assert [f"review {i}" for i in test_ids] == course["test"]["review"]
    assert [f"review {i}" for i in train_ids] == course["train"]["review"]
    for part in split_imdb(df, cfg(test_size=test_size, split_seed=seed, val_size=2)):
        assert part.schema == SPLIT_SCHEMA
        # review_id is the row index of the raw table
        assert part["review"].to_list() == [f"review {i}" for i in part["review_id"]]
        assert part["review_id"].is_sorted()


def test_split_leaving_no_train_rows_is_refused():
    datasets = pytest.importorskip("datasets")
    with pytest.raises(ValueError, match="train set will be empty"):
        datasets.Dataset.from_dict(raw(10).to_dict(as_series=False)).train_test_split(0.95)
    with pytest.raises(UserError, match="imdb.test_size"):
        split_imdb(raw(10), cfg(test_size=0.95))


def test_val_is_a_stratified_seeded_subsample_of_test():
    train, test, val = split_imdb(raw(), cfg(val_size=50))
    assert val.height == 50
    assert set(val["review_id"]) <= set(test["review_id"])
    assert not set(train["review_id"]) & set(test["review_id"])
    # stratified: the positive share of test (not exactly the raw 30%) scaled to 50 rows
    assert (val["sentiment"] == "positive").sum() == round(
        50 * (test["sentiment"] == "positive").mean()
    )
    assert split_imdb(raw(), cfg(val_size=50))[2].equals(val)
    assert not split_imdb(raw(), cfg(val_size=50, val_seed=7))[2].equals(val)
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


# --------------------------------------------------------------------------- duplicates


def test_duplicate_key_ignores_markup_case_and_spacing_only():
    a = "Great  film.<br /><br />Loved it &amp; more"
    assert duplicate_key(a) == duplicate_key("great film. loved it & more")
    assert duplicate_key(a) == duplicate_key(" GREAT film.\n<br/>loved IT &amp; more ")
    assert duplicate_key(a) != duplicate_key("Great film. Loved it & more!")


def with_twins() -> pl.DataFrame:
    """raw(100) where rows 90.., 95.. repeat earlier texts (variants of case and markup)."""
    df = raw(100)
    texts = df["review"].to_list()
    for copy, original in ((90, 3), (91, 3), (95, 10), (96, 60)):
        texts[copy] = texts[original].upper().replace(" ", " <br /> ")
    return df.with_columns(review=pl.Series(texts))


def test_drop_scored_duplicates_removes_exactly_the_train_twins_of_scored_rows():
    _, test, val = split_imdb(with_twins(), cfg(test_size=0.5, val_size=50))
    train = split_imdb(with_twins(), cfg(test_size=0.5, val_size=50))[0]
    kept, dropped = drop_scored_duplicates(train, val)
    scored = {duplicate_key(t) for t in val["review"]}
    expected = [
        rid
        for rid, t in zip(train["review_id"], train["review"], strict=True)
        if duplicate_key(t) in scored
    ]
    assert dropped["review_id"].to_list() == expected
    assert kept.height + dropped.height == train.height
    assert not {duplicate_key(t) for t in kept["review"]} & scored
    assert kept["review_id"].is_sorted()
    # A scored review with no twin drops nothing; no scored rows, nothing dropped.
    assert drop_scored_duplicates(train, val.clear())[1].height == 0


def test_run_split_writes_train_without_twins_and_reports_the_count(tmp_path: Path):
    params = load_params(REPO / "params.yaml", "demo")
    params = params.model_copy(
        update={"imdb": cfg(test_size=0.5, split_seed=1, val_size=50)}
    )  # fmt: skip
    write_parquet(with_twins(), tmp_path / "raw.parquet")
    paths = {k: tmp_path / f"{k}.parquet" for k in ("train", "test", "val")}
    run_split_imdb(params, input=tmp_path / "raw.parquet", info=tmp_path / "split.json", **paths)
    train, test, val = split_imdb(with_twins(), params.imdb)
    kept, dropped = drop_scored_duplicates(train, val)
    assert dropped.height > 0  # this seed puts a twin pair across the split
    assert read_parquet(paths["train"]).equals(kept)
    assert read_parquet(paths["test"]).equals(test)
    assert read_parquet(paths["val"]).equals(val)
    info = read_json(tmp_path / "split.json")
    assert info["dropped_train_rows"] == dropped.height
    assert info["dropped_review_ids"] == dropped["review_id"].to_list()
    assert info["train_rows"] == train.height == info["train_rows_kept"] + dropped.height
    sentence = split_sentence(info)
    assert f"{dropped.height} train row" in sentence
    assert f"{info['train_rows_kept']} of the {train.height} train rows remain" in sentence


def test_split_sentence_with_nothing_dropped():
    info = {"dropped_train_rows": 0, "val_rows": 40, "train_rows": 3200,
            "train_rows_kept": 3200, "scored_reviews_with_a_train_twin": []}  # fmt: skip
    assert split_sentence(info).startswith("No train review has the normalized text")
    one = info | {"dropped_train_rows": 1, "train_rows_kept": 3199,
                  "scored_reviews_with_a_train_twin": [7]}  # fmt: skip
    assert split_sentence(one).startswith("1 train row whose normalized text")
    assert "(1 of the 40 scored reviews has such a twin)" in split_sentence(one)


@pytest.fixture(scope="module")
def real_imdb() -> tuple[pl.DataFrame, list[str]]:
    """The 50k real reviews (418 exact duplicate texts) and each one's duplicate_key."""
    from llmlab.acquire import load_dataset_source
    from llmlab.sources import LocalFile

    df = load_dataset_source(LocalFile(path=REAL_IMDB), "imdb")
    return df, [duplicate_key(t) for t in df["review"]]


@pytest.mark.skipif(not REAL_IMDB.exists(), reason="reference data not available")
@pytest.mark.parametrize("preset", ["full", "demo"])
def test_real_imdb_no_scored_text_reaches_the_train_side(preset, real_imdb):
    """With the preset's imdb and eval config: no scored text in any few-shot pool, the
    threshold slice or the baselines' training rows."""
    df, keys = real_imdb
    params = load_params(REPO / "params.yaml", preset)
    train, _, val = split_imdb(df, params.imdb)
    kept, dropped = drop_scored_duplicates(train, val)
    print(f"{preset}: dropped {dropped.height} of {train.height} train rows ({val.height} scored)")
    calibration = params.eval.calibration
    holdout_rows = calibration.threshold_rows if "threshold" in calibration.methods else 0
    pool, holdout = split_pool(kept, holdout_rows, calibration.seed)
    assert holdout.height == holdout_rows and pool.height == kept.height - holdout_rows
    scored = {keys[i] for i in val["review_id"]}
    # Every strategy draws its examples from `pool`; the baselines train on all of `kept`
    # (the RNN's early-stopping slice is part of it).
    for part in (pool, holdout, kept):
        assert not {keys[i] for i in part["review_id"]} & scored
    assert set(dropped["review_id"]) == {i for i in train["review_id"] if keys[i] in scored}
    if preset == "full":
        assert dropped.height > 0  # the leak is real on the course's split
