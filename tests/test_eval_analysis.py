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


def grid(correct_of, models=("A", "B"), prompts=("p1", "p2", "p3"), cals=("none", "ctx"),
         draws: int = 2, n: int = 200) -> pl.DataFrame:  # fmt: skip
    """Review-level rows of every (model, prompt, calibration, draw) system, right exactly
    where `correct_of(model, prompt, calibration, draw)` (a bool array of n) is True, plus a
    baseline that is right everywhere (it must be ignored)."""
    gold = [P, N] * (n // 2)
    flip = {N: P, P: N}
    frames = []
    keys = itertools.product(models, prompts, cals, range(draws))
    for m, p, c, d in [*keys, ("tfidf", "-", "none", 0)]:
        ok = np.ones(n, bool) if m == "tfidf" else correct_of(m, p, c, d)
        pred = [g if o else flip[g] for g, o in zip(gold, ok, strict=True)]
        f = frame(f"{m}/{p}/{c}/{d}", m, gold, pred)
        frames.append(
            f.with_columns(
                prompt=pl.lit(p), shots=pl.lit(0 if m == "tfidf" else 4, dtype=pl.Int64),
                strategy=pl.lit("-" if m == "tfidf" else "random"), calibration=pl.lit(c),
                draw=pl.lit(d, dtype=pl.Int64),
            )
        )  # fmt: skip
    return pl.concat(frames)


def first(k: int, n: int = 200) -> np.ndarray:
    return np.arange(n) < k


def test_sensitivity_finds_a_prompt_effect_and_nothing_else():
    # Prompts right on the first 100 / 120 / 180 reviews whatever the model, calibration
    # or draw: only the prompt changes accuracy.
    right = {"p1": 100, "p2": 120, "p3": 180}
    out = prompt_sensitivity(grid(lambda m, p, c, d: first(right[p])))
    factors = {f["factor"]: f for f in out["factors"].to_dicts()}
    assert factors["prompt"]["spread"] == pytest.approx(0.4)
    assert factors["model"]["spread"] == 0 and factors["calibration"]["spread"] == 0
    # One test per group of otherwise equal settings: prompt 2 models x 2 cals x 2 draws.
    assert [factors[f]["tests"] for f in ("prompt", "model", "calibration")] == [8, 12, 12]
    assert [factors[f]["significant"] for f in ("prompt", "model", "calibration")] == [8, 0, 0]
    assert out["conclusion"].startswith(
        "Settings whose accuracy differs significantly across the options of one choice: "
        "prompts 8 of 8 (mean range 40.0 pts), models 0 of 12 (mean range 0.0 pts), "
        "calibration methods 0 of 12 (mean range 0.0 pts) (Cochran's Q per group of "
        "otherwise equal settings, Bonferroni over all 32 tests at α = 0.05)"
    )
    assert "dominat" not in out["conclusion"]
    # The baseline (always right) is in no table row.
    t = out["table"]
    assert t.height == 4 and t["max"].max() == pytest.approx(0.9)
    row = t.filter((pl.col("model") == "A") & (pl.col("calibration") == "none")).row(0, named=True)
    assert row["n_systems"] == 6 and row["n_prompts"] == 3 and row["n_strategies"] == 1
    assert row["range"] == pytest.approx(0.4)


def test_each_factor_test_is_cochrans_q_on_the_same_reviews():
    from statsmodels.stats.contingency_tables import cochrans_q

    rng = np.random.default_rng(4)
    draws = {key: rng.random(200) < 0.7 for key in itertools.product("AB", ["p1", "p2", "p3"])}
    out = prompt_sensitivity(
        grid(lambda m, p, c, d: draws[(m, p)], cals=("none",), draws=1), alpha=0.05
    )
    test = next(t for t in out["tests"] if t["factor"] == "prompt" and t["group"]["model"] == "A")
    ref = cochrans_q(np.column_stack([draws[("A", p)] for p in ("p1", "p2", "p3")]).astype(int))
    assert test["statistic"] == pytest.approx(ref.statistic)
    assert test["p_value"] == pytest.approx(ref.pvalue)
    m = len(out["tests"])
    assert test["p_adjusted"] == pytest.approx(min(1.0, m * ref.pvalue))


def test_sensitivity_with_no_effect_claims_none():
    rng = np.random.default_rng(0)
    same = rng.random(200) < 0.7  # every system right on the same reviews
    out = prompt_sensitivity(grid(lambda m, p, c, d: same))
    assert out["conclusion"].startswith("No choice changes accuracy detectably")
    assert not any(t["significant"] for t in out["tests"])


def test_sensitivity_without_variation():
    acc = grid(lambda m, p, c, d: first(100), models=("A",), prompts=("p1",), cals=("none",))
    accuracies = system_accuracy(acc)
    assert factor_spread(accuracies, "prompt", keys=["model", "prompt"])["spread"] is None
    out = prompt_sensitivity(acc)
    assert out["conclusion"].startswith("No factor was varied")


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


def test_accuracy_cis_are_wilson_intervals():
    from statsmodels.stats.proportion import proportion_confint

    out = accuracy_by_truncation(TOY, REVIEWS, ci=True)
    assert out.columns == ["system", "truncated", "n", "accuracy", "ci_low", "ci_high"]
    row = out.filter((pl.col("system") == "tfidf") & ~pl.col("truncated")).row(0, named=True)
    # tfidf on the whole reviews 1, 2, 4: wrong, wrong, right.
    ref = proportion_confint(1, 3, method="wilson")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(ref)
    by_len = accuracy_by_length(TOY, REVIEWS, edges=(0, 10, 20), ci=True)
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
