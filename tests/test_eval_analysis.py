"""Variance, sensitivity and error analysis on toy tables with hand-computed answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import cohen_kappa_score

from llmlab.errors import UserError
from llmlab.eval.analysis import (
    accuracy_by_length,
    accuracy_by_truncation,
    cohen_kappa,
    draw_spread,
    draw_spread_table,
    factor_spread,
    hardest_reviews,
    pairwise_kappa,
    prompt_sensitivity,
    snippet,
    system_accuracy,
    system_kappa,
)
from llmlab.eval.metrics import INVALID
from llmlab.schemas import PREDICTIONS_SCHEMA


def frame(system: str, model: str, gold: list[str], pred: list[str | None]) -> pl.DataFrame:
    n = len(gold)
    return pl.DataFrame(
        {
            "system": [system] * n,
            "model": [model] * n,
            "prompt": ["-" if model == "tfidf" else "p"] * n,
            "shots": [0] * n,
            "strategy": ["-"] * n,
            "draw": [0] * n,
            "backend": ["tfidf" if model == "tfidf" else "vllm"] * n,
            "calibration": ["none"] * n,
            "review_id": list(range(1, n + 1)),
            "gold": gold,
            "prediction": pred,
            "valid": [p is not None for p in pred],
            "raw_output": [p or "maybe" for p in pred],
            "label_scores": [[-0.7, -0.7]] * n,
            "seconds": [0.1] * n,
            "review_tokens": [None] * n,
        },
        schema=PREDICTIONS_SCHEMA,
    )


GOLD = ["positive", "negative", "positive", "negative", "positive"]
N, P = "negative", "positive"
# Wrong per review (ids 1..5): 2, 3, 2, 0, 1.
TOY = pl.concat(
    [
        frame("m1/a", "m1", GOLD, [N, P, N, N, None]),  # wrong: 1, 2, 3, 5 (5 invalid)
        frame("m1/b", "m1", GOLD, [P, P, P, N, P]),  # wrong: 2
        frame("tfidf", "tfidf", GOLD, [N, P, N, N, P]),  # wrong: 1, 2, 3
    ]
)
REVIEWS = pl.DataFrame(
    {
        "review_id": [1, 2, 3, 4, 5],
        "review": ["Great <br /><br />film,   loved it.", "Bad.", "x" * 50, "Meh", "Fine"],
        "tokens": [5, 15, 25, 10, 3],
        "truncated": [False, False, True, False, True],
    }
)


# --------------------------------------------------------------------------- draws


def test_draw_spread_sample_sd():
    s = draw_spread([0.80, 0.82, 0.78])
    # deviations 0, +.02, -.02 -> sum of squares 0.0008 / (3 - 1) -> sd 0.02
    assert s["n_draws"] == 3
    assert s["mean"] == pytest.approx(0.80)
    assert s["sd"] == pytest.approx(0.02)
    assert (s["min"], s["max"]) == pytest.approx((0.78, 0.82))
    assert s["range"] == pytest.approx(0.04)
    assert draw_spread([0.7])["sd"] is None


def test_draw_spread_table_per_setting():
    acc = pl.DataFrame(
        {
            "model": ["m"] * 5,
            "prompt": ["p"] * 5,
            "shots": [4] * 5,
            "strategy": ["random"] * 3 + ["balanced"] * 2,
            "backend": ["vllm"] * 5,
            "calibration": ["none"] * 5,
            "draw": [0, 1, 2, 0, 1],
            "accuracy": [0.80, 0.82, 0.78, 0.9, 0.9],
        }
    )
    t = draw_spread_table(acc)
    assert t["strategy"].to_list() == ["balanced", "random"]
    assert t["n_draws"].to_list() == [2, 3]
    assert t["sd"].to_list() == pytest.approx([0.0, 0.02])
    assert t["range"].to_list() == pytest.approx([0.0, 0.04])
    single = draw_spread_table(acc.filter(pl.col("draw") == 0))
    assert single["sd"].to_list() == [None, None]


def test_system_accuracy_counts_invalid_as_wrong():
    acc = system_accuracy(TOY)
    got = dict(zip(acc["system"], acc["accuracy"], strict=True))
    assert got == {"m1/a": pytest.approx(1 / 5), "m1/b": pytest.approx(4 / 5), "tfidf": 0.4}
    assert acc.columns == ["system", "model", "prompt", "shots", "strategy", "backend",
                           "calibration", "n", "accuracy"]  # fmt: skip


# --------------------------------------------------------------------------- sensitivity


def grid(model_effect: dict, prompt_effect: dict, cal_effect: dict, draws: int = 2) -> pl.DataFrame:
    """Additive toy accuracies: 0.6 + model + prompt + calibration + a tiny draw effect."""
    rows = []
    for (m, me), (p, pe), (c, ce), d in itertools.product(
        model_effect.items(), prompt_effect.items(), cal_effect.items(), range(draws)
    ):
        rows.append(
            {
                "system": f"{m}/{p}/{c}/{d}",
                "model": m,
                "prompt": p,
                "shots": 4,
                "strategy": "random",
                "backend": "vllm",
                "calibration": c,
                "draw": d,
                "accuracy": 0.6 + me + pe + ce + 0.001 * d,
            }  # fmt: skip
        )
    baseline = {"system": "tfidf", "model": "tfidf", "prompt": "-", "shots": 0, "strategy": "-",
                "backend": "tfidf", "calibration": "none", "draw": 0, "accuracy": 0.99}  # fmt: skip
    return pl.DataFrame([*rows, baseline])


def test_sensitivity_prompt_dominates():
    acc = grid(
        {"A": 0.0, "B": 0.01}, {"p1": 0.0, "p2": 0.1, "p3": 0.2}, {"none": 0.0, "ctx": 0.005}
    )
    out = prompt_sensitivity(acc)
    spreads = dict(zip(out["factors"]["factor"], out["factors"]["spread"], strict=True))
    # Each factor's range is the same in every group of the others (the effects add up).
    assert spreads == {
        "prompt": pytest.approx(0.2),
        "model": pytest.approx(0.01),
        "calibration": pytest.approx(0.005),
    }
    assert out["factors"]["groups"].to_list() == [2 * 2 * 2, 3 * 2 * 2, 2 * 3 * 2]
    assert out["dominant"] == "prompt"
    assert out["conclusion"] == (
        "The prompt choice dominates: accuracy moves by 20.0 percentage points across prompts "
        "on average, against 1.0 percentage points across models and 0.5 percentage points "
        "across calibration methods."
    )
    # The baseline (0.99) is not an LLM system: it is in no table row.
    t = out["table"]
    assert t.height == 4 and t["max"].max() < 0.9
    row = t.filter((pl.col("model") == "A") & (pl.col("calibration") == "none")).row(0, named=True)
    assert row["n_systems"] == 6 and row["n_prompts"] == 3 and row["n_strategies"] == 1
    assert t.schema["n_systems"] == pl.Int64 and out["factors"].schema["spread"] == pl.Float64
    assert row["min"] == pytest.approx(0.6) and row["max"] == pytest.approx(0.801)
    assert row["range"] == pytest.approx(0.201)
    assert row["sd"] == pytest.approx(np.std([0.6, 0.601, 0.7, 0.701, 0.8, 0.801], ddof=1))


def test_sensitivity_model_dominates_and_ties():
    acc = grid({"A": 0.0, "B": 0.15}, {"p1": 0.0, "p2": 0.01}, {"none": 0.0, "ctx": 0.02})
    out = prompt_sensitivity(acc)
    assert out["dominant"] == "model"
    assert out["conclusion"] == (
        "The model choice dominates: accuracy moves by 15.0 percentage points across models on "
        "average, against 2.0 percentage points across calibration methods and 1.0 percentage "
        "points across prompts."
    )
    close = prompt_sensitivity(grid({"A": 0.0, "B": 0.09}, {"p1": 0.0, "p2": 0.1}, {"none": 0.0}))
    assert close["dominant"] is None
    assert close["conclusion"].startswith("No single choice dominates")
    assert close["conclusion"].endswith(
        "10.0 percentage points across prompts, 9.0 percentage points across models "
        "(calibration methods not varied)."
    )


def test_factor_spread_without_variation():
    acc = grid({"A": 0.0}, {"p1": 0.0}, {"none": 0.0})
    assert factor_spread(acc, "prompt", keys=["model", "prompt"])["spread"] is None
    out = prompt_sensitivity(acc)
    assert out["dominant"] is None and out["conclusion"].startswith("No factor was varied")


# --------------------------------------------------------------------------- errors


def test_hardest_reviews_ranking_and_votes():
    out = hardest_reviews(TOY, REVIEWS, k=10, snippet_chars=12)
    # wrong: id2 3, id1 2, id3 2, id5 1 (id4 nobody got wrong); the 2-2 tie goes by review_id.
    assert out["review_id"].to_list() == [2, 1, 3, 5]
    assert out["rank"].to_list() == [1, 2, 3, 4]
    assert out["wrong"].to_list() == [3, 2, 2, 1]
    assert out["systems"].to_list() == [3, 3, 3, 3]
    assert out["gold"].to_list() == [N, P, P, P]
    assert out["wrong_share"][0] == pytest.approx(1.0)
    by_id = {r["review_id"]: r for r in out.iter_rows(named=True)}
    assert (
        by_id[1]["votes"] == "m1 1/2 wrong (negative 1, positive 1); tfidf 1/1 wrong (negative 1)"
    )
    assert by_id[5]["votes"] == (
        f"m1 1/2 wrong (positive 1, {INVALID} 1); tfidf 0/1 wrong (positive 1)"
    )
    assert by_id[5]["family_votes"] == [
        {"family": "m1", "prediction": "positive", "count": 1},
        {"family": "m1", "prediction": INVALID, "count": 1},
        {"family": "tfidf", "prediction": "positive", "count": 1},
    ]
    assert by_id[1]["snippet"] == "Great film,…"
    assert by_id[5]["snippet"] == "Fine"
    top2 = hardest_reviews(TOY.reverse(), k=2)  # row order does not matter
    assert top2["review_id"].to_list() == [2, 1]
    assert top2["snippet"].to_list() == [None, None]
    # Nobody wrong: no rows, same columns.
    none_wrong = hardest_reviews(frame("s", "m1", GOLD, GOLD))
    assert none_wrong.is_empty() and none_wrong.columns == out.columns


def test_snippet():
    assert snippet("a<br />b   c", 100) == "a b c"
    assert snippet("abcdef", 4) == "abc…"
    assert snippet(None, 4) is None


def test_accuracy_by_length_buckets():
    out = accuracy_by_length(TOY, REVIEWS, edges=(0, 10, 20))
    # tokens: id1 5, id2 15, id3 25, id4 10, id5 3 -> buckets [0,10): {1, 5}, [10,20): {2, 4},
    # [20, inf): {3}. m1/b is wrong on id2 only.
    b = out.filter(pl.col("system") == "m1/b")
    assert b["label"].to_list() == ["[0, 10)", "[10, 20)", "[20, inf)"]
    assert b["n"].to_list() == [2, 2, 1]
    assert b["accuracy"].to_list() == pytest.approx([1.0, 0.5, 1.0])
    assert b["upper"].to_list() == [10.0, 20.0, None]
    a = out.filter(pl.col("system") == "m1/a")
    assert a["accuracy"].to_list() == pytest.approx([0.0, 0.5, 0.0])
    with pytest.raises(UserError, match="below edges"):
        accuracy_by_length(TOY, REVIEWS, edges=(4, 10))
    with pytest.raises(UserError, match="have no 'tokens'"):
        accuracy_by_length(TOY, REVIEWS.filter(pl.col("review_id") != 3))


def test_accuracy_by_truncation():
    out = accuracy_by_truncation(TOY, REVIEWS)
    t = out.filter(pl.col("system") == "tfidf")
    # truncated: ids 3, 5. tfidf is right on 4 and 5 only.
    assert t["truncated"].to_list() == [False, True]
    assert t["n"].to_list() == [3, 2]
    assert t["accuracy"].to_list() == pytest.approx([1 / 3, 1 / 2])
    assert out.columns == ["system", "truncated", "n", "accuracy"]


def test_accuracy_cis_are_the_metrics_bootstrap():
    from llmlab.eval.metrics import bootstrap_ci

    out = accuracy_by_truncation(TOY, REVIEWS, resamples=300, seed=7)
    assert out.columns == ["system", "truncated", "n", "accuracy", "ci_low", "ci_high"]
    row = out.filter((pl.col("system") == "tfidf") & ~pl.col("truncated")).row(0, named=True)
    # tfidf on the whole reviews 1, 2, 4: wrong, wrong, right.
    assert (row["ci_low"], row["ci_high"]) == bootstrap_ci(
        np.array([0.0, 0.0, 1.0]), resamples=300, seed=7
    )
    by_len = accuracy_by_length(TOY, REVIEWS, edges=(0, 10, 20), resamples=300, seed=7)
    assert (by_len["ci_low"] <= by_len["accuracy"]).all()
    assert (by_len["accuracy"] <= by_len["ci_high"]).all()


# --------------------------------------------------------------------------- agreement


def test_kappa_matches_sklearn():
    rng = np.random.default_rng(0)
    cats = [N, P, None]
    for _ in range(20):
        a = [cats[i] for i in rng.choice(3, size=60, p=[0.45, 0.45, 0.1])]
        b = [x if rng.random() < 0.7 else cats[rng.integers(3)] for x in a]
        expected = cohen_kappa_score([x or INVALID for x in a], [x or INVALID for x in b])
        assert cohen_kappa(a, b) == pytest.approx(expected)
    assert cohen_kappa([N, P, N], [N, P, N]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([P, P], [P, P]))


def test_system_and_pairwise_kappa():
    k = system_kappa(TOY, "m1/a", "tfidf")
    a = [N, P, N, N, None]
    t = [N, P, N, N, P]
    assert k["n"] == 5 and k["agreement"] == pytest.approx(0.8)
    assert k["kappa"] == pytest.approx(cohen_kappa_score([x or INVALID for x in a], t))
    table = pairwise_kappa(TOY)
    assert table.select("system_a", "system_b").rows() == [
        ("m1/a", "m1/b"), ("m1/a", "tfidf"), ("m1/b", "tfidf")
    ]  # fmt: skip
    assert table["kappa"][1] == pytest.approx(k["kappa"])
    with pytest.raises(UserError, match="same reviews"):
        system_kappa(pl.concat([TOY.filter(pl.col("review_id") != 1).filter(
            pl.col("system") == "tfidf"), TOY.filter(pl.col("system") == "m1/a")]),
            "m1/a", "tfidf")  # fmt: skip
