"""The synthetic generators: real schemas and value sets, realistic shape, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from llmlab.io import write_parquet
from llmlab.schemas import (
    BAD_PHRASES,
    IMDB_SCHEMA,
    OPUS_SCORE_RANGE,
    SAIGA_COMPLEXITIES,
    SAIGA_FULL_SCHEMA,
    SAIGA_LANGUAGES,
    SAIGA_ROLES,
    SAIGA_SCHEMA,
    SAIGA_TOPICS,
    SENTIMENTS,
)
from llmlab.synthetic.imdb import generate_imdb
from llmlab.synthetic.saiga import generate_saiga

CYRILLIC = r"[\p{Cyrillic}]"


@pytest.fixture(scope="module")
def imdb() -> pl.DataFrame:
    return generate_imdb(4000, seed=0)


@pytest.fixture(scope="module")
def saiga() -> pl.DataFrame:
    return generate_saiga(5000, seed=0)


@pytest.fixture(scope="module")
def messages(saiga: pl.DataFrame) -> pl.DataFrame:
    """One row per message: row index, position in the dialogue, content, role."""
    return (
        saiga.with_row_index("row")
        .select("row", "language", "messages")
        .explode("messages")
        .with_columns(pos=pl.int_range(pl.len()).over("row"))
        .unnest("messages")
    )


# ---------------------------------------------------------------------------------------
# IMDB
# ---------------------------------------------------------------------------------------


def test_imdb_schema_and_exact_balance(imdb: pl.DataFrame) -> None:
    assert imdb.schema == IMDB_SCHEMA
    assert imdb.null_count().sum_horizontal().item() == 0
    counts = dict(imdb["sentiment"].value_counts().iter_rows())
    assert counts == {"positive": 2000, "negative": 2000}
    assert set(counts) == set(SENTIMENTS)


def test_imdb_odd_and_empty_sizes() -> None:
    odd = generate_imdb(7, seed=3)
    assert odd.height == 7
    assert sorted(odd["sentiment"].value_counts().iter_rows()) == [
        ("negative", 3),
        ("positive", 4),
    ]
    empty = generate_imdb(0, seed=3)
    assert empty.height == 0 and empty.schema == IMDB_SCHEMA


def test_imdb_length_distribution_is_heavy_tailed_like_the_real_one(imdb: pl.DataFrame) -> None:
    # Real IMDB: 32..13,704 characters, mean 1,309, median 970, 95th percentile ~3,400.
    length = imdb["review"].str.len_chars()
    assert length.min() >= 32
    assert length.max() <= 13_704
    assert 850 <= length.median() <= 1_200
    assert 1_100 <= length.mean() <= 1_500
    assert length.quantile(0.95) >= 2_500
    assert length.quantile(0.05) <= 400


def test_imdb_br_tags_in_a_realistic_share(imdb: pl.DataFrame) -> None:
    # Real IMDB: 58.4% of reviews have <br /> paragraph breaks, more often in long ones.
    has_br = imdb["review"].str.contains("<br /><br />", literal=True)
    assert 0.5 <= has_br.mean() <= 0.66
    long = imdb["review"].str.len_chars() > 2_000
    assert has_br.filter(long).mean() > has_br.filter(~long).mean()


def test_imdb_has_exact_duplicates_with_consistent_labels() -> None:
    df = generate_imdb(5000, seed=1)
    # Real IMDB: 418 duplicates in 50k (0.84%).
    assert 20 <= df.height - df["review"].n_unique() <= 70
    assert (
        df.group_by("review")
        .agg(pl.col("sentiment").n_unique())
        .filter(pl.col("sentiment") > 1)
        .is_empty()
    )


def test_imdb_has_hard_review_kinds(imdb: pl.DataFrame) -> None:
    positive = imdb.filter(pl.col("sentiment") == "positive")["review"]
    negative = imdb.filter(pl.col("sentiment") == "negative")["review"]
    # Negated praise in positive reviews, sarcasm in negative ones.
    assert positive.str.contains(r"not bad at all|didn't hate it|wasn't disappointed").sum() > 10
    assert negative.str.contains(r"Oh great|want my .* back|said no one ever").sum() > 10
    # Positive words in negative reviews and vice versa (mixed reviews).
    assert negative.str.contains(r"\b(wonderful|brilliant|superb)\b").mean() > 0.1


def test_tfidf_baseline_is_good_but_not_perfect() -> None:
    """The property the demo needs: a bag-of-words model learns it, but makes mistakes."""
    pytest.importorskip("sklearn")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    df = generate_imdb(2500, seed=7)
    train, test = df.head(2000), df.tail(500)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(C=4.0, solver="liblinear")
    model.fit(vectorizer.fit_transform(train["review"].to_list()), train["sentiment"].to_list())
    predicted = model.predict(vectorizer.transform(test["review"].to_list()))
    accuracy = float(np.mean(predicted == test["sentiment"].to_numpy()))
    assert 0.80 <= accuracy <= 0.96


# ---------------------------------------------------------------------------------------
# saiga
# ---------------------------------------------------------------------------------------


def test_saiga_schema_is_exactly_the_real_one(saiga: pl.DataFrame) -> None:
    assert saiga.schema == SAIGA_FULL_SCHEMA
    assert list(saiga.schema)[: len(SAIGA_SCHEMA)] == list(SAIGA_SCHEMA)
    struct = saiga.schema["messages"].inner
    assert [field.name for field in struct.fields] == ["content", "role"]
    assert saiga.null_count().sum_horizontal().item() == 0


def test_saiga_value_sets(saiga: pl.DataFrame, messages: pl.DataFrame) -> None:
    assert set(messages["role"].unique()) == set(SAIGA_ROLES)
    assert set(saiga["language"].unique()) == set(SAIGA_LANGUAGES)
    assert set(saiga["sonnet_complexity"].unique()) == set(SAIGA_COMPLEXITIES)
    lo, hi = OPUS_SCORE_RANGE
    assert saiga["opus_score"].is_between(lo, hi).all()
    assert saiga["opus_score"].n_unique() == hi - lo + 1
    topics = saiga["sonnet_topic"]
    assert set(SAIGA_TOPICS) <= set(topics.unique())
    # Off-list topics exist but are rare.
    assert topics.is_in(SAIGA_TOPICS).mean() > 0.99
    assert saiga["language"].value_counts(sort=True)["language"][0] == "Russian"


def test_saiga_turns_count_bot_messages_and_dialogues_end_with_a_bot_reply(
    saiga: pl.DataFrame, messages: pl.DataFrame
) -> None:
    per_row = messages.group_by("row", maintain_order=True).agg(
        bots=(pl.col("role") == "bot").sum(),
        users=(pl.col("role") == "user").sum(),
        last_role=pl.col("role").last(),
        last_len=pl.col("content").last().str.strip_chars().str.len_chars(),
        system_not_first=((pl.col("role") == "system") & (pl.col("pos") > 0)).sum(),
    )
    assert (per_row["bots"] == saiga["turns"]).all()
    assert (per_row["last_role"] == "bot").all()
    assert (per_row["last_len"] > 0).all()
    assert (per_row["users"] >= 1).all()
    assert (per_row["system_not_first"] == 0).all()
    single = (saiga["turns"] == 1).mean()
    assert 0.5 <= single <= 0.7
    assert saiga["turns"].max() >= 6


def test_saiga_has_a_few_malformed_rows(messages: pl.DataFrame) -> None:
    """Rows where a bot reply comes before any user message (real: ~0.14%)."""
    first = (
        messages.filter(pl.col("role") != "system")
        .group_by("row")
        .agg(pl.col("role").sort_by("pos").first())
    )
    malformed = (first["role"] == "bot").sum()
    assert 1 <= malformed <= 25


def test_saiga_regex_flag_matches_the_phrases(saiga: pl.DataFrame, messages: pl.DataFrame) -> None:
    # An implementation independent of the generator's: polars' Aho-Corasick matcher.
    flagged = (
        messages.group_by("row", maintain_order=True)
        .agg(
            flag=(
                (pl.col("role") == "bot")
                & pl.col("content").str.to_lowercase().str.contains_any(list(BAD_PHRASES))
            ).any()
        )
        .get_column("flag")
    )
    assert (flagged == saiga["is_bad_by_regex"]).all()
    assert 0.02 <= saiga["is_bad_by_regex"].mean() <= 0.12
    # Filtering on the flag is meaningful: flagged rows score much lower.
    means = dict(saiga.group_by("is_bad_by_regex").agg(pl.col("opus_score").mean()).iter_rows())
    assert means[False] - means[True] > 2


def test_saiga_text_is_in_the_row_language(saiga: pl.DataFrame, messages: pl.DataFrame) -> None:
    users = messages.filter(pl.col("role") == "user")
    russian = users.filter(pl.col("language") == "Russian")
    assert russian["content"].str.contains(CYRILLIC).all()
    ukrainian = users.filter(pl.col("language") == "Ukrainian")
    assert ukrainian["content"].str.contains(r"[іїєґІЇЄҐ]").mean() > 0.3
    english = users.filter(pl.col("language") == "English")
    assert not english["content"].str.contains(CYRILLIC).any()
    bots = messages.filter((pl.col("role") == "bot") & (pl.col("language") == "Russian"))
    assert bots["content"].str.contains(CYRILLIC).mean() > 0.99
    # Mixed rows: both scripts appear in the same dialogue.
    mixed = (
        messages.filter(pl.col("language") == "Mixed")
        .group_by("row")
        .agg(
            pl.col("content").str.contains(CYRILLIC).any().alias("cyr"),
            (~pl.col("content").str.contains(CYRILLIC)).any().alias("latin"),
        )
    )
    assert (mixed["cyr"] & mixed["latin"]).mean() > 0.9
    for column in (
        "sonnet_topic_explanation",
        "sonnet_complexity_explanation",
        "score_explanation",
    ):
        assert not saiga[column].str.contains(CYRILLIC).any(), column


def test_saiga_scores_make_filters_meaningful(saiga: pl.DataFrame) -> None:
    # Real: Russian rows with opus_score >= 8 are ~28,200 of 41,600 (68%).
    russian_good = ((saiga["language"] == "Russian") & (saiga["opus_score"] >= 8)).mean()
    assert 0.6 <= russian_good <= 0.75
    by_topic = saiga.group_by("sonnet_topic").agg(pl.col("opus_score").mean())
    scores = dict(by_topic.iter_rows())
    assert scores["math"] < scores["writing"]


def test_saiga_bot_replies_are_heavy_tailed(messages: pl.DataFrame) -> None:
    length = messages.filter(pl.col("role") == "bot")["content"].str.len_chars()
    assert length.quantile(0.99) > 5 * length.median()
    assert length.max() > 5_000


def test_saiga_first_prompts_repeat_a_little(messages: pl.DataFrame) -> None:
    first = messages.filter(pl.col("role") == "user").group_by("row").agg(pl.col("content").first())
    duplicated = first.height - first["content"].n_unique()
    assert 0 < duplicated < 0.5 * first.height


def test_saiga_system_messages_and_roleplay(saiga: pl.DataFrame, messages: pl.DataFrame) -> None:
    with_system = messages.filter(pl.col("role") == "system")["row"].unique()
    roleplay = saiga.with_row_index("row").filter(pl.col("sonnet_topic") == "roleplay")["row"]
    assert roleplay.is_in(with_system.implode()).all()
    assert 0.05 <= with_system.len() / saiga.height <= 0.35


def test_saiga_empty() -> None:
    empty = generate_saiga(0, seed=0)
    assert empty.height == 0 and empty.schema == SAIGA_FULL_SCHEMA


# ---------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("generate", "rows"), [(generate_imdb, 300), (generate_saiga, 300)])
def test_same_seed_same_bytes_other_seed_other_bytes(generate, rows: int, tmp_path) -> None:
    paths = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        paths[name] = tmp_path / f"{name}.parquet"
        write_parquet(generate(rows, seed), paths[name])
    a, b, c = (paths[name].read_bytes() for name in "abc")
    assert a == b
    assert a != c
    assert generate(rows, 5).equals(generate(rows, 5))
    assert not generate(rows, 5).equals(generate(rows, 6))


def test_generators_leave_global_random_state_alone() -> None:
    import random

    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    generate_imdb(20, seed=1)
    generate_saiga(20, seed=1)
    assert (random.random(), np.random.random()) == before


def test_negative_rows_rejected() -> None:
    with pytest.raises(ValueError, match="rows"):
        generate_imdb(-1, seed=0)
    with pytest.raises(ValueError, match="rows"):
        generate_saiga(-1, seed=0)


# ---------------------------------------------------------------------------------------
# Package layout: one dataset's generator never loads the other's code or phrases
# ---------------------------------------------------------------------------------------

_IMDB_MODULES = {"llmlab.synthetic.imdb"}
_SAIGA_MODULES = {"llmlab.synthetic.saiga", "llmlab.synthetic.saiga_dialogue"}


def _loaded_after(statement: str) -> tuple[set[str], int]:
    """Run `statement` in a fresh interpreter: the dataset modules it loaded, phrase files read."""
    code = (
        f"import json, sys\n{statement}\n"
        "from llmlab.synthetic.common import load_phrases\n"
        "mods = [m for m in sys.modules if m.startswith('llmlab.synthetic.')]\n"
        "print(json.dumps([mods, load_phrases.cache_info().currsize]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods, n_phrase_files = json.loads(out.stdout)
    return set(mods) - {"llmlab.synthetic.common"}, n_phrase_files


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("import llmlab.synthetic.imdb", _IMDB_MODULES),
        ("from llmlab.synthetic.imdb import generate_imdb", _IMDB_MODULES),
        ("import llmlab.synthetic.saiga", _SAIGA_MODULES),
        ("from llmlab.synthetic.saiga import generate_saiga", _SAIGA_MODULES),
    ],
)
def test_importing_one_generator_does_not_load_the_other(statement: str, expected: set) -> None:
    modules, n_phrase_files = _loaded_after(statement)
    assert modules == expected
    assert n_phrase_files == 1  # its own phrases/<dataset>.json only


def test_importing_the_package_loads_no_generator() -> None:
    assert _loaded_after("import llmlab.synthetic") == (set(), 0)


def test_phrase_banks_ship_as_package_data() -> None:
    from importlib import resources

    folder = resources.files("llmlab.synthetic").joinpath("phrases")
    assert {"imdb.json", "saiga.json"} <= {f.name for f in folder.iterdir()}
