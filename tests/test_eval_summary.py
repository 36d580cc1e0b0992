"""eval_summary on hand-made predictions: systems table, tests, markdown, figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmlab.config import load_params
from llmlab.errors import UserError
from llmlab.eval.analysis import system_kappa
from llmlab.eval.probability import probability_metrics
from llmlab.eval.run import system_id
from llmlab.eval.summary import check_same_reviews, summarize, write_figures
from llmlab.schemas import PREDICTIONS_SCHEMA
from llmlab.tables import (
    draws_table,
    errors_tables,
    eval_tables,
    probability_tables,
    sensitivity_table,
)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

N = 40
GOLD = ["negative", "positive"] * (N // 2)
TOKENS = [50 + 10 * i for i in range(N)]  # the demo cuts reviews above 128 tokens: i >= 8


@pytest.fixture(scope="module")
def eval_cfg():
    return load_params(PARAMS, preset="demo").eval


def system(
    model,
    prompt,
    shots,
    strategy,
    backend,
    calibration,
    correct: np.ndarray,
    ppr=None,
    *,
    draw=0,
    scores=None,
):
    """Rows of one system that is right exactly where `correct` is True. `scores`: the
    label_scores of every row (default: 60% on the predicted label, so that their argmax is
    the prediction); LLM rows get review lengths."""
    flip = {"negative": "positive", "positive": "negative"}
    pred = [g if ok else flip[g] for g, ok in zip(GOLD, correct, strict=True)]
    llm = prompt != "-"
    sid = system_id(model, prompt, shots, strategy, backend, calibration, draw) if llm else model
    if scores is None:
        scores = [[-0.51, -0.92] if p == "negative" else [-0.92, -0.51] for p in pred]
    scores = np.asarray(scores).tolist()
    return pl.DataFrame(
        {
            "system": [sid] * N,
            "model": [model] * N,
            "prompt": [prompt] * N,
            "shots": [shots] * N,
            "strategy": [strategy] * N,
            "draw": [draw] * N,
            "backend": [backend] * N,
            "calibration": [calibration] * N,
            "review_id": list(range(N)),
            "gold": GOLD,
            "prediction": pred,
            "valid": [True] * N,
            "raw_output": pred,
            "label_scores": scores,
            "seconds": [0.1] * N,
            "review_tokens": TOKENS if llm else [None] * N,
        },
        schema=PREDICTIONS_SCHEMA,
    )


def right(k: int) -> np.ndarray:
    """The first k reviews right, the rest wrong."""
    return np.arange(N) < k


@pytest.fixture(scope="module")
def predictions():
    return pl.concat(
        [
            system("instruct_lm", "system", 0, "-", "vllm", "none", right(24)),
            system("instruct_lm", "system", 0, "-", "vllm", "contextual", right(30)),
            system("instruct_lm", "system", 5, "balanced", "vllm", "none", right(28)),
            system("instruct_lm", "system", 5, "balanced", "vllm", "contextual", right(32)),
            system("tfidf", "-", 0, "-", "tfidf", "-", right(36)),
        ]
    )


def test_summary_numbers(predictions, eval_cfg):
    doc, table = summarize(predictions, eval_cfg)
    assert doc["n_reviews"] == N
    assert table.height == 5 and table["kind"][0] == "baseline"
    assert doc["best_system"] == "tfidf" and doc["best_baseline"] == "tfidf"
    assert doc["best_llm"] == "instruct_lm/system/5shot/balanced/vllm/contextual"
    t = doc["llm_vs_baseline"]
    assert t["difference"] == pytest.approx((32 - 36) / N)
    assert (t["only_a"], t["only_b"]) == (0, 4)
    # Both were picked as the best on these reviews: descriptive, never "significant".
    assert t["selected"] and t["significant"] is None
    gains = {g["system"]: g for g in doc["calibration_gains"]}
    g0 = gains["instruct_lm/system/0shot/vllm/contextual"]
    assert g0["uncalibrated_system"] == "instruct_lm/system/0shot/vllm/none"
    assert g0["gain"] == pytest.approx(6 / N)
    # McNemar (6 - 0)^2 / 6 = 6, p = 0.0143; a family of two calibrated systems: x2.
    test = g0["test"]
    assert test["only_a"] == 6 and test["family_size"] == 2
    assert test["p_adjusted"] == pytest.approx(2 * 0.014306, abs=1e-5) and test["significant"]
    assert test["level"] == pytest.approx(0.975) and g0["gain_ci"][0] > 0
    assert "predicted_positive_rate_calibrated" in g0
    best = doc["fewshot_effect"]["best"]["instruct_lm"]["5shot"]
    assert best["uncalibrated"]["difference"] == pytest.approx(4 / N)
    assert best["any"]["a"].endswith("5shot/balanced/vllm/contextual")
    pairs = doc["fewshot_effect"]["pairs"]
    assert len(pairs) == 2 and all(p["test"]["family_size"] == 2 for p in pairs)
    assert best["uncalibrated"]["significant"] is None  # selected: descriptive
    bias = doc["label_bias"]
    assert bias["family_size"] == 2 and bias["positive"] == "positive"
    # The report renders the tables from the summary (compute stages write no markdown).
    md = eval_tables(doc)
    assert "| tfidf | - | 0 |" in md and "Calibration" in md and "best LLM vs best baseline" in md
    assert "Gain [97.5% CI]" in md and "**p = 0.029**" in md and "descriptive" in md
    assert "90.0% [" in md  # tfidf accuracy 36/40
    assert "+10.0 pts [" in md  # the 5-shot gain, in percentage points


def test_reviews_must_match(predictions):
    assert check_same_reviews(predictions) == N
    with pytest.raises(UserError, match="different reviews"):
        check_same_reviews(
            predictions.filter(~((pl.col("model") == "tfidf") & (pl.col("review_id") == 0)))
        )


def test_figures_are_written(predictions, eval_cfg, tmp_path):
    doc, table = summarize(predictions, eval_cfg)
    made = write_figures(doc, table, tmp_path)
    assert set(made) == {
        "accuracy",
        "confusion",
        "prompts",
        "strategies",
        "calibration",
    }
    for name in made.values():
        assert (tmp_path / name).stat().st_size > 5_000


# --------------------------------------------------------------------------- draws, probabilities


def log_p(p_positive) -> np.ndarray:
    p = np.broadcast_to(np.asarray(p_positive, dtype=np.float64), (N,))
    return np.log(np.column_stack([1 - p, p]))


def confident(correct: np.ndarray, p: float = 0.75) -> np.ndarray:
    """P(positive) = p where the system says positive, 1 - p where it says negative."""
    says_positive = np.array([(g == "positive") == ok for g, ok in zip(GOLD, correct, strict=True)])
    return log_p(np.where(says_positive, p, 1 - p))


REVIEWS = pl.DataFrame(
    {
        "review_id": list(range(N)),
        "review": [("word " * (30 + 10 * i)).strip() + "<br />end" for i in range(N)],
        "sentiment": GOLD,
    }
)
FEW = ("instruct_lm", "system", 5, "balanced", "vllm")
DRAW_RIGHT = {"none": (28, 26, 30), "contextual": (32, 31, 33)}


def toy_with_draws() -> pl.DataFrame:
    """Uncalibrated systems say P(positive) = 0.9 for every review (biased: ECE 0.4);
    contextual ones are 75% sure of their answer. Three draws of the 5-shot setting."""
    frames = [
        system("instruct_lm", "system", 0, "-", "vllm", "none", right(24), scores=log_p(0.9)),
        system("instruct_lm", "system", 0, "-", "vllm", "contextual", right(30),
               scores=confident(right(30))),
        system("instruct_lm", "minimal", 0, "-", "vllm", "none", right(20), scores=log_p(0.9)),
        system("instruct_lm", "minimal", 0, "-", "vllm", "contextual", right(26),
               scores=confident(right(26))),
        system("base_lm", "minimal", 0, "-", "vllm", "none", right(22), scores=log_p(0.9)),
        system("base_lm", "minimal", 0, "-", "vllm", "contextual", right(25),
               scores=confident(right(25))),
        system("tfidf", "-", 0, "-", "tfidf", "none", right(36), scores=confident(right(36), 0.9)),
        system("rnn", "-", 0, "-", "rnn", "none", right(34), scores=confident(right(34), 0.8)),
    ]  # fmt: skip
    for method, rights in DRAW_RIGHT.items():
        for draw, k in enumerate(rights):
            scores = log_p(0.9) if method == "none" else confident(right(k))
            frames.append(system(*FEW, method, right(k), draw=draw, scores=scores))
    return pl.concat(frames)


@pytest.fixture(scope="module")
def with_draws():
    return toy_with_draws()


@pytest.fixture(scope="module")
def rich(with_draws, eval_cfg):
    return summarize(with_draws, eval_cfg, REVIEWS)


def test_draw0_alone_feeds_the_systems_table_and_tests(rich):
    doc, table = rich
    assert table.height == 10 and not table["system"].str.contains("/draw").any()
    assert doc["best_llm"] == "instruct_lm/system/5shot/balanced/vllm/contextual"
    by_id = {s["system"]: s for s in doc["systems"]}
    assert by_id[doc["best_llm"]]["accuracy"] == pytest.approx(32 / N)  # draw 0, not the mean
    assert any("first draw (draw 0)" in note for note in doc["notes"])
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN anywhere


def test_probability_metrics_for_every_system_baselines_included(rich, with_draws, eval_cfg):
    doc, table = rich
    prob = {s["system"]: s for s in doc["probability"]["systems"]}
    assert set(prob) == set(table["system"]) and doc["probability"]["view"] == "P(positive)"
    # tfidf: 90% sure of its answer, right on 36 of 40: Brier (36 x 0.1^2 + 4 x 0.9^2) / 40.
    assert prob["tfidf"]["kind"] == "baseline"
    assert prob["tfidf"]["brier"] == pytest.approx((36 * 0.01 + 4 * 0.81) / N)
    assert prob["tfidf"]["log_loss"] == pytest.approx(-(36 * np.log(0.9) + 4 * np.log(0.1)) / N)
    rnn = with_draws.filter(pl.col("system") == "rnn")
    direct = probability_metrics(rnn, eval_cfg.labels, resamples=1000, seed=42)["rnn"]
    for key in ("ce_squared", "ce_squared_ci", "ce_l2", "ece_plugin", "brier_ci", "log_loss"):
        assert prob["rnn"][key] == pytest.approx(direct[key])
    # 40 reviews: floor(sqrt(40)) = 6 equal-width bins, for every system and the figure.
    assert doc["probability"]["bins"] == 6 and prob["rnn"]["bins"] == 6
    # Uncalibrated: P(positive) = 0.9 on 40 balanced reviews, all in one bin: plug-in ECE 0.4,
    # debiased squared error 0.4^2 - 0.5 x 0.5 / 39. Contextual (0.75 / 0.25, right on 32):
    # bins {0.75: 16 of 20 positive} and {0.25: 4 of 20}: 0.05^2 - 0.8 x 0.2 / 19 each.
    q = doc["calibration_quality"]
    assert q["uncalibrated_system"] == "instruct_lm/system/5shot/balanced/vllm/none"
    assert q["calibration"] == "contextual" and q["bins"] == 6 and q["view"] == "P(positive)"
    before, after = 0.16 - 0.25 / 39, 0.0025 - 0.16 / 19
    assert q["ece_plugin_uncalibrated"] == pytest.approx(0.4)
    assert q["ece_plugin_calibrated"] == pytest.approx(0.05)
    assert q["ce_squared_uncalibrated"] == pytest.approx(before)
    assert q["ce_l2_uncalibrated"] == pytest.approx(np.sqrt(before))
    assert q["ce_squared_calibrated"] == pytest.approx(after) and q["ce_l2_calibrated"] == 0.0
    assert q["ce_squared_change"] == pytest.approx(after - before)
    # One Bonferroni family: the 4 calibration changes, CIs at 1 - 0.05/4.
    assert q["family_size"] == 4 and q["ce_level"] == pytest.approx(1 - 0.05 / 4)
    assert q["ce_squared_change_ci"][1] < 0 and q["brier_change"] < 0
    assert (q["systems_compared"], q["systems_lower_ce"]) == (4, 4)
    # Significantly lower after the correction: the two 0/5-shot `system` settings only (the
    # `minimal` ones, right on 25-26 of 40, are worse calibrated at 0.75 confidence).
    assert q["systems_lower_ce_significant"] == 2 and q["systems_higher_ce_significant"] == 0
    changes = doc["probability"]["calibration_changes"]
    assert len(changes) == 4 and all(not c["system"].endswith("draw1") for c in changes)


def test_reliability_diagrams_per_model(rich, with_draws, tmp_path):
    doc, table = rich
    plan = {r["model"]: r for r in doc["reliability"]}
    assert plan["instruct_lm"]["systems"] == [
        "instruct_lm/system/5shot/balanced/vllm/none",
        "instruct_lm/system/5shot/balanced/vllm/contextual",
    ]
    assert plan["base_lm"]["calibrations"] == ["none", "contextual"]
    made = write_figures(doc, table, tmp_path, with_draws.filter(pl.col("draw") == 0))
    for model in ("instruct_lm", "base_lm"):
        assert made[f"reliability_{model}"] == f"reliability_{model}.png"
        assert (tmp_path / f"reliability_{model}.png").stat().st_size > 5_000


def test_spread_over_draws_next_to_the_single_draw_ci(rich):
    doc, _ = rich
    spread = doc["draw_spread"]
    assert spread["draws"] == 3 and spread["multi_draw_settings"] == 2
    rows = {r["calibration"]: r for r in spread["settings"]}
    none = rows["none"]
    assert none["system"] == "instruct_lm/system/5shot/balanced/vllm/none"
    assert none["n_draws"] == 3
    assert none["mean"] == pytest.approx(28 / N)
    assert none["sd"] == pytest.approx(2 / N)  # accuracies 28, 26, 30 of 40
    assert (none["min"], none["max"], none["range"]) == pytest.approx((26 / N, 30 / N, 4 / N))
    assert none["accuracy_draw0"] == pytest.approx(28 / N)
    assert none["ci_low"] <= none["accuracy_draw0"] <= none["ci_high"]
    assert none["ci_width"] == pytest.approx(none["ci_high"] - none["ci_low"])
    assert spread["mean_sd"] == pytest.approx((2 / N + 1 / N) / 2)
    assert spread["range_exceeds_ci"] == 0
    # Draw effect: Cochran's Q over the three draws on the same reviews (statsmodels as the
    # reference), Bonferroni over the two multi-draw settings.
    from statsmodels.stats.contingency_tables import cochrans_q

    ref = cochrans_q(np.column_stack([right(k) for k in DRAW_RIGHT["none"]]).astype(int))
    assert none["p_value"] == pytest.approx(ref.pvalue)
    assert none["p_adjusted"] == pytest.approx(min(1.0, 2 * ref.pvalue))
    assert spread["draw_effect_tests"] == 2


def test_sensitivity_tests_every_choice_and_ranks_none(rich):
    doc, _ = rich
    sens = doc["sensitivity"]
    spread = {f["factor"]: f["spread"] for f in sens["factors"]}
    # prompt: system vs minimal at 0 shots (24 vs 20, 30 vs 26 right); model: base_lm vs
    # instruct_lm on minimal/0shot (22 vs 20, 25 vs 26); calibration: six none/contextual pairs.
    assert spread["prompt"] == pytest.approx(4 / N)
    assert spread["model"] == pytest.approx((2 / N + 1 / N) / 2)
    assert spread["calibration"] == pytest.approx((3 + 6 + 6 + 4 + 5 + 3) / 6 / N)
    m = len(sens["tests"])
    assert m == 2 + 2 + 6
    for t in sens["tests"]:
        assert t["significant"] == (t["p_adjusted"] < 0.05)
        assert t["p_adjusted"] == pytest.approx(min(1.0, m * t["p_value"]))
    assert "dominat" not in sens["conclusion"] and "not ranked" in sens["conclusion"]
    assert "comparisons" not in sens
    five = [r for r in sens["table"] if r["shots"] == 5 and r["calibration"] == "none"]
    assert five[0]["n_systems"] == 3 and five[0]["range"] == pytest.approx(4 / N)


def test_error_analysis(rich):
    doc, _ = rich
    err = doc["errors"]
    best = "instruct_lm/system/5shot/balanced/vllm/contextual"
    assert err["focus_systems"] == ["base_lm/minimal/0shot/vllm/contextual", best, "rnn", "tfidf"]
    # Reviews i >= 8 have more than 128 tokens (cut); the best system is right on i < 32.
    trunc = {r["truncated"]: r for r in err["by_truncation"] if r["system"] == best}
    assert (trunc[False]["n"], trunc[False]["accuracy"]) == (8, 1.0)
    assert (trunc[True]["n"], trunc[True]["accuracy"]) == (32, pytest.approx(24 / 32))
    assert err["truncated_share"]["instruct_lm"] == pytest.approx(32 / N)
    tokens = [r for r in err["by_tokens"] if r["system"] == best]
    assert [r["label"] for r in tokens] == ["[0, 64)", "[64, 128)", "[128, 256)", "[256, inf)"]
    assert sum(r["n"] for r in tokens) == N
    words = [r for r in err["by_words"] if r["system"] == "tfidf"]
    assert {r["label"] for r in words} <= {"[0, 100)", "[100, 200)", "[200, 400)", "[400, inf)"}
    assert sum(r["n"] for r in words) == N
    # Reviews 36..39 are wrong in every system (draw 0: 10 systems); ties by review_id.
    hardest = err["hardest"]
    assert len(hardest) == 10 and err["hardest_systems"] == 10
    assert [h["review_id"] for h in hardest[:4]] == [36, 37, 38, 39]
    assert hardest[0]["wrong"] == 10 and hardest[0]["snippet"].startswith("word word")
    assert "tfidf 1/1 wrong" in hardest[0]["votes"]
    pairs = {(k["system_a"], k["system_b"]): k for k in err["kappa"]}
    assert set(pairs) == {
        ("base_lm/minimal/0shot/vllm/contextual", best),
        ("base_lm/minimal/0shot/vllm/contextual", "tfidf"),
        (best, "tfidf"),
    }


def test_kappa_pairs_match_the_analysis(rich, with_draws):
    doc, _ = rich
    for k in doc["errors"]["kappa"]:
        direct = system_kappa(with_draws, k["system_a"], k["system_b"])
        assert k["kappa"] == pytest.approx(direct["kappa"])


def test_new_sections_render_as_tables(rich):
    doc, _ = rich
    prob = probability_tables(doc)
    assert "### Probability quality" in prob and "| tfidf | none | 0.000 [" in prob
    assert "| instruct_lm/system/5shot/balanced/vllm/none | contextual | 0.392 → 0.000 |" in prob
    assert "P(positive); 6 equal-width bins; 95% CI" in prob and "[98.75% CI]" in prob
    draws = draws_table(doc)
    assert "3 draws of each fixed example set" in draws
    assert (
        "| instruct_lm | system | 5 | balanced | none | 3 | 70.0% | 5.0 pts | 65.0% – 75.0% |"
        in draws
    )
    sens = sensitivity_table(doc)
    assert "Conclusion: " in sens and "| calibration | 11.2 pts | 6 | 2 |" in sens
    errors = errors_tables(doc)
    titles = ("in the model's tokens", "in words", "Truncated vs whole", "most systems get wrong")
    for title in (*titles, "Cohen's kappa"):
        assert title in errors
