"""Analytics of saiga and IMDB: statistics on hand-made rows, figures, the stage I/O."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmlab.analytics.common import distribution, length_summary
from llmlab.analytics.imdb import FIGURES_IMDB, imdb_figures, imdb_statistics, run_imdb_analytics
from llmlab.analytics.saiga import (
    FIGURES_SAIGA,
    OFF_LIST,
    bot_replies,
    run_saiga_analytics,
    saiga_figures,
    saiga_statistics,
)
from llmlab.config import load_params
from llmlab.errors import UserError
from llmlab.io import write_parquet
from llmlab.schemas import IMDB_SCHEMA, SAIGA_FULL_SCHEMA
from tests.saiga_rows import row

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

SAIGA = pl.DataFrame(
    [
        row(("user", "q"), ("bot", "abcd")),
        row(
            ("system", "s"),
            ("user", "q"),
            ("bot", "ab"),
            ("user", "q"),
            ("bot", "abcdef"),
            opus_score=6,
            sonnet_topic="coding",
            sonnet_complexity="hard",
        ),
        row(
            ("user", "q"),
            ("bot", "abcdefghij"),
            language="English",
            opus_score=10,
            sonnet_topic="made_up",
            sonnet_complexity="easy",
            source="oasst",
        ),
        row(
            ("bot", "hello"),
            ("user", "q"),
            ("bot", "x"),
            language="English",
            opus_score=3,
            is_bad_by_regex=True,
        ),
    ],
    schema=SAIGA_FULL_SCHEMA,
)


def chars_as_tokens(df: pl.DataFrame) -> np.ndarray:
    # Stand-in tokenizer: one token per character.
    return bot_replies(df)["content"].str.len_chars().to_numpy()


def test_length_summary_of_known_values():
    assert length_summary(pl.Series(range(1, 101))) == {
        "mean": 50.5,
        "min": 1,
        "median": 50.5,
        "p95": 95.05,
        "max": 100,
    }
    assert length_summary(pl.Series([], dtype=pl.Int64))["mean"] is None


def test_distribution_counts_shares_and_order():
    df = pl.DataFrame({"x": ["b", "a", "b", "c", "a", "b"]})
    assert distribution(df, "x") == [
        {"value": "b", "rows": 3, "share": 0.5},
        {"value": "a", "rows": 2, "share": 0.3333},
        {"value": "c", "rows": 1, "share": 0.1667},
    ]


def test_saiga_statistics_lengths_overall_and_russian():
    stats = saiga_statistics(SAIGA, chars_as_tokens(SAIGA), "tok")
    assert stats["rows"] == 4
    everything, russian = stats["lengths"]["all"], stats["lengths"]["Russian"]
    assert everything["bot_replies"] == 6 and russian["bot_replies"] == 3
    # Russian replies: "abcd", "ab", "abcdef" -> 4, 2, 6 characters (and "tokens").
    assert russian["bot_reply_chars"] == {
        "mean": 4.0,
        "min": 2,
        "median": 4.0,
        "p95": 5.8,
        "max": 6,
    }
    assert russian["bot_reply_tokens"] == russian["bot_reply_chars"]
    assert russian["dialogue_messages"]["max"] == 5 and russian["dialogue_turns"]["mean"] == 1.5
    assert everything["bot_reply_chars"]["max"] == 10
    assert stats["counts"] == {
        "with_system": 1,
        "single_turn": 2,
        "no_user_before_first_bot": 1,
        "is_bad_by_regex": 1,
        "russian_score_ge_8": 1,
    }
    assert stats["score_shares"]["opus_score_ge_8"] == 0.5


def test_saiga_statistics_cross_views_group_off_list_topics():
    stats = saiga_statistics(SAIGA, chars_as_tokens(SAIGA), "tok")
    topics = {d["value"] for d in stats["distributions"]["topic"]}
    assert topics == {"facts", "coding", OFF_LIST}
    by_topic = {d["topic"]: d for d in stats["score_by_topic"]}
    assert by_topic["facts"]["mean_opus_score"] == 6.0
    assert by_topic["facts"]["share_score_ge_8"] == 0.5
    assert [d["topic"] for d in stats["score_by_topic"]][0] == OFF_LIST  # highest mean first
    english = {
        d["sonnet_complexity"]: d["share_of_language"]
        for d in stats["complexity_by_language"]
        if d["language"] == "English"
    }
    assert english == {"easy": 0.5, "medium": 0.5}
    json.dumps(stats)  # JSON-able as is


def test_saiga_figures_are_titled_and_labelled():
    figs = saiga_figures(SAIGA, chars_as_tokens(SAIGA), "tok")
    assert tuple(figs) == FIGURES_SAIGA
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), name


def test_imdb_statistics_balance_and_lengths():
    df = pl.DataFrame(
        {
            "review": ["good film", "great<br /><br />movie here", "bad", "bad"],
            "sentiment": ["positive", "positive", "negative", "negative"],
        },
        schema=IMDB_SCHEMA,
    )
    stats = imdb_statistics(df)
    assert stats["labels"] == [
        {"value": "negative", "rows": 2, "share": 0.5},
        {"value": "positive", "rows": 2, "share": 0.5},
    ]
    assert stats["lengths"]["positive"]["words"]["max"] == 3
    assert stats["lengths"]["negative"]["chars"] == {
        "mean": 3.0,
        "min": 3,
        "median": 3.0,
        "p95": 3.0,
        "max": 3,
    }
    assert stats["duplicate_reviews"] == 1 and stats["share_with_br_tags"] == 0.25
    assert tuple(imdb_figures(df)) == FIGURES_IMDB


def test_run_imdb_analytics_rejects_unknown_labels_and_writes_nothing(tmp_path):
    raw = tmp_path / "imdb.parquet"
    write_parquet(pl.DataFrame({"review": ["x"], "sentiment": ["neutral"]}), raw)
    cfg = load_params(PARAMS, "demo")
    with pytest.raises(UserError, match="sentiment.*neutral"):
        run_imdb_analytics(cfg, raw, tmp_path / "figs", tmp_path / "stats.json")
    assert not (tmp_path / "figs").exists() and not (tmp_path / "stats.json").exists()


def test_run_saiga_analytics_end_to_end(tiny_llama_dir, tmp_path):
    raw = tmp_path / "saiga.parquet"
    write_parquet(SAIGA, raw)
    cfg = load_params(PARAMS, "demo")
    run_saiga_analytics(cfg, raw, Path(tiny_llama_dir), tmp_path / "figs", tmp_path / "stats.json")
    assert sorted(p.stem for p in (tmp_path / "figs").glob("*.png")) == sorted(FIGURES_SAIGA)
    stats = json.loads((tmp_path / "stats.json").read_text())
    tokens = stats["lengths"]["all"]["bot_reply_tokens"]
    assert 1 <= tokens["min"] <= tokens["max"] <= 10


def test_run_saiga_analytics_needs_a_tokenizer_folder(tmp_path):
    raw = tmp_path / "saiga.parquet"
    write_parquet(SAIGA, raw)
    cfg = load_params(PARAMS, "demo")
    with pytest.raises(UserError, match="tokenizer folder does not exist"):
        run_saiga_analytics(cfg, raw, tmp_path / "missing", tmp_path / "figs", tmp_path / "s.json")
    assert not (tmp_path / "figs").exists()
