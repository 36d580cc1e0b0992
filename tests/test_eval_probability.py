"""Probability quality (ECE, Brier, log loss, reliability) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from llmlab.errors import UserError
from llmlab.eval.calibration import apply_bias, contextual_bias
from llmlab.eval.metrics import bootstrap_ci
from llmlab.eval.probability import (
    EPS,
    RELIABILITY_COLUMNS,
    bootstrap_statistic_ci,
    brier_score,
    calibration_change,
    calibration_metrics,
    calibration_twins,
    ece_ci,
    expected_calibration_error,
    label_probabilities,
    log_loss,
    plot_reliability,
    probability_metrics,
    reliability_table,
    reliability_tables,
)
from llmlab.schemas import PREDICTIONS_SCHEMA

LABELS = ["negative", "positive"]

# Toy set: P(positive) and whether gold is positive.
P_POS = np.array([0.05, 0.15, 0.55, 0.58, 0.92, 0.95])
GOLD = np.array([0, 1, 1, 0, 1, 1])


def two_label(p_pos: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p_pos, p_pos])


def frame(
    system: str,
    scores: np.ndarray,
    gold: np.ndarray,
    *,
    calibration: str = "none",
    model: str = "m",
    valid: list[bool] | None = None,
) -> pl.DataFrame:
    n = len(gold)
    valid = [True] * n if valid is None else valid
    pred = [LABELS[i] if ok else None for i, ok in zip(np.argmax(scores, 1), valid, strict=True)]
    return pl.DataFrame(
        {
            "system": [system] * n,
            "model": [model] * n,
            "prompt": ["p"] * n,
            "shots": [0] * n,
            "strategy": ["-"] * n,
            "draw": [0] * n,
            "backend": ["vllm"] * n,
            "calibration": [calibration] * n,
            "review_id": list(range(n)),
            "gold": [LABELS[g] for g in gold],
            "prediction": pred,
            "valid": valid,
            "raw_output": [p or "maybe" for p in pred],
            "label_scores": np.asarray(scores, dtype=np.float64).tolist(),
            "seconds": [0.1] * n,
            "review_tokens": [None] * n,
        },
        schema=PREDICTIONS_SCHEMA,
    )


def test_probabilities_are_softmax_and_shift_invariant():
    logp = np.log(two_label(P_POS))
    assert label_probabilities(logp)[:, 1] == pytest.approx(P_POS)
    # A calibration bias shifts the log-probs; softmax renormalizes.
    assert label_probabilities(logp - np.array([0.3, -1.2]) + 5.0) == pytest.approx(
        label_probabilities(apply_bias(logp, np.array([0.3, -1.2])))
    )
    # A baseline's log(0) is a probability of 0.
    assert label_probabilities([[0.0, -np.inf]]).tolist() == [[1.0, 0.0]]
    with pytest.raises(UserError):
        label_probabilities([[np.nan, 0.0]])


def test_ece_brier_log_loss_hand_computed():
    probs = label_probabilities(np.log(two_label(P_POS)))
    # Width bins of 0.1: [0,.1) {0.05: gold 0} -> |0.05-0| = 0.05;  [.1,.2) {0.15: 1} -> 0.85;
    # [.5,.6) {0.55: 1, 0.58: 0} -> |0.565-0.5| = 0.065 (x2 rows); [.9,1] {0.92, 0.95: 1, 1}
    # -> |0.935-1| = 0.065 (x2). ECE = (0.05 + 0.85 + 2*0.065 + 2*0.065) / 6 = 1.16 / 6.
    assert expected_calibration_error(probs, GOLD) == pytest.approx(1.16 / 6)
    # 3 equal-mass bins of 2 sorted rows: {0.05, 0.15 | 0, 1} -> |0.1-0.5| = 0.4;
    # {0.55, 0.58 | 1, 0} -> 0.065; {0.92, 0.95 | 1, 1} -> 0.065. ECE = 2*(0.4+0.13)/6.
    assert expected_calibration_error(probs, GOLD, bins=3, binning="mass") == pytest.approx(
        1.06 / 6
    )
    # Brier: squared gaps .05, .85, .45, .58, .08, .05.
    brier = (0.05**2 + 0.85**2 + 0.45**2 + 0.58**2 + 0.08**2 + 0.05**2) / 6
    assert brier_score(probs, GOLD) == pytest.approx(brier)
    assert brier_score(probs, GOLD) == pytest.approx(brier_score_loss(GOLD, P_POS))
    # Log loss: -mean log P(gold).
    nll = -sum(map(math.log, [0.95, 0.15, 0.55, 0.42, 0.92, 0.95])) / 6
    assert log_loss(probs, GOLD) == pytest.approx(nll)
    assert log_loss(probs, GOLD) == pytest.approx(sk_log_loss(GOLD, P_POS))
    # The positive label is the column the binary view uses: flipping it mirrors the view.
    assert expected_calibration_error(probs, GOLD, positive=0) == pytest.approx(1.16 / 6)


def test_log_loss_clips_at_eps():
    probs = np.array([[1.0, 0.0]])
    assert log_loss(probs, np.array([1])) == pytest.approx(-math.log(EPS))


def test_top_label_view_for_three_labels():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.05, 0.15, 0.8]])
    gold = np.array([0, 2, 2, 2])
    # Confidence 0.7 (right), 0.5 (wrong), 0.4 (right), 0.8 (right); width bins:
    # [.4,.5) {0.4: 1} -> 0.6; [.5,.6) {0.5: 0} -> 0.5; [.7,.8) {0.7: 1} -> 0.3;
    # [.8,.9) {0.8: 1} -> 0.2. ECE = (0.6 + 0.5 + 0.3 + 0.2) / 4.
    assert expected_calibration_error(probs, gold) == pytest.approx(1.6 / 4)
    # Multi-class Brier: sum over labels of (p - onehot)^2.
    rows = [
        0.3**2 + 0.2**2 + 0.1**2,
        0.1**2 + 0.5**2 + 0.6**2,
        0.3**2 + 0.3**2 + 0.6**2,
        0.05**2 + 0.15**2 + 0.2**2,
    ]
    assert brier_score(probs, gold) == pytest.approx(sum(rows) / 4)
    assert log_loss(probs, gold) == pytest.approx(sk_log_loss(gold, probs, labels=[0, 1, 2]))


def calibrated_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from P(positive) = sigmoid(z): a perfectly calibrated scorer."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=n)
    gold = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    return z, gold


def test_calibrated_scorer_has_small_ece_biased_large_and_contextual_fixes_it():
    z, gold = calibrated_sample(20_000, seed=0)
    good = np.column_stack([np.zeros_like(z), z])  # log-odds z as (unnormalized) scores
    for binning in ("width", "mass"):
        assert expected_calibration_error(label_probabilities(good), gold, binning=binning) < 0.02
    # A model with a prior towards "positive": +2 on the positive log-odds.
    shift = 2.0
    biased = good + np.array([0.0, shift])
    ece_biased = expected_calibration_error(label_probabilities(biased), gold)
    assert ece_biased > 0.15
    # Its content-free inputs show the same prior (with a little noise).
    noise = np.random.default_rng(1).normal(0.0, 0.05, size=3)
    content_free = np.column_stack([np.zeros(3), shift + noise])
    fixed = apply_bias(biased, contextual_bias(content_free))
    ece_fixed = expected_calibration_error(label_probabilities(fixed), gold)
    assert ece_fixed < 0.03
    assert ece_fixed < ece_biased / 5


def test_calibration_change_is_paired_and_matches_the_metrics():
    z, gold = calibrated_sample(2_000, seed=3)
    good = label_probabilities(np.column_stack([np.zeros_like(z), z]))
    biased = label_probabilities(np.column_stack([np.zeros_like(z), z + 2.0]))
    boot = {"resamples": 300, "seed": 5}
    change = calibration_change(biased, good, gold, **boot)
    before = calibration_metrics(biased, gold, **boot)
    after = calibration_metrics(good, gold, **boot)
    for key in ("ece_width", "ece_mass", "brier", "log_loss"):
        assert change[key] == pytest.approx(after[key] - before[key])
        low, high = change[f"{key}_ci"]
        assert low <= change[key] <= high and high < 0  # removing the bias helps, surely
    # Paired: the same probabilities twice change nothing, on every resample.
    same = calibration_change(good, good, gold, **boot)
    assert same["ece_width"] == 0.0 and same["ece_width_ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="do not match"):
        calibration_change(good, good[:10], gold, **boot)


@pytest.mark.parametrize("n", [100, 103, 7])
def test_equal_mass_bins_have_equal_counts(n):
    rng = np.random.default_rng(n)
    probs = two_label(rng.random(n))
    gold = rng.integers(0, 2, n)
    counts = reliability_table(probs, gold, binning="mass")["count"].to_numpy()
    assert counts.sum() == n
    assert counts.size == min(10, n)
    assert counts.max() - counts.min() <= 1
    # Ties too: a constant scorer still gets equal counts.
    tied = reliability_table(two_label(np.full(n, 0.5)), gold, binning="mass")["count"]
    assert tied.max() - tied.min() <= 1


def test_reliability_table_matches_ece():
    probs = label_probabilities(np.log(two_label(P_POS)))
    for binning, bins in (("width", 10), ("mass", 3)):
        t = reliability_table(probs, GOLD, bins=bins, binning=binning)
        assert tuple(t.columns) == RELIABILITY_COLUMNS
        nonempty = t.filter(pl.col("count") > 0)
        ece = (
            nonempty["count"] * (nonempty["mean_predicted"] - nonempty["observed"]).abs()
        ).sum() / t["count"].sum()
        assert ece == pytest.approx(
            expected_calibration_error(probs, GOLD, bins=bins, binning=binning)
        )
    width = reliability_table(probs, GOLD)
    assert width.height == 10 and width["count"].to_list() == [1, 1, 0, 0, 0, 2, 0, 0, 0, 2]
    assert width["lower"][5] == pytest.approx(0.5) and width["upper"][5] == pytest.approx(0.6)
    assert width["mean_predicted"][2] is None  # empty bin
    assert width.row(5, named=True)["observed"] == pytest.approx(0.5)


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    z, gold = calibrated_sample(500, seed=3)
    probs = label_probabilities(np.column_stack([np.zeros_like(z), z + 0.5]))
    m1 = calibration_metrics(probs, gold, resamples=300, seed=7)
    m2 = calibration_metrics(probs, gold, resamples=300, seed=7)
    assert m1 == m2
    for key in ("ece_width", "ece_mass", "brier", "log_loss"):
        low, high = m1[f"{key}_ci"]
        assert low <= m1[key] <= high, key
        assert low < high
    assert (
        calibration_metrics(probs, gold, resamples=300, seed=8)["ece_width_ci"]
        != m1["ece_width_ci"]
    )
    assert ece_ci(probs, gold, resamples=300, seed=7) == tuple(m1["ece_width_ci"])


def test_statistic_bootstrap_uses_the_metrics_resamples():
    # Same seed and rows -> the same resample indices as metrics.bootstrap_ci (also chunked).
    x = np.random.default_rng(0).random(3_000)
    mean = bootstrap_statistic_ci(lambda a: a.mean(axis=1), [x], resamples=1_500, seed=5)
    assert mean == bootstrap_ci(x, resamples=1_500, seed=5)


def test_probability_metrics_per_system_and_invalid_rows():
    z, gold = calibrated_sample(400, seed=4)
    scores = np.log(label_probabilities(np.column_stack([np.zeros_like(z), z])))
    valid = [i % 10 != 0 for i in range(400)]
    preds = pl.concat(
        [
            frame("a/none", scores, gold, valid=valid),
            frame(
                "a/contextual",
                apply_bias(scores, np.log([0.4, 0.6])),
                gold,
                calibration="contextual",
            ),
        ]
    )
    # Row order does not matter (rows are sorted by review_id first).
    shuffled = preds.sample(fraction=1.0, shuffle=True, seed=0)
    m = probability_metrics(shuffled, LABELS, resamples=200, seed=1)
    assert list(m) == [s for s in shuffled["system"].unique(maintain_order=True)]
    a = m["a/none"]
    assert a["n"] == 400 and a["n_invalid"] == 40 and a["view"] == "P(positive)"
    assert a["model"] == "m" and a["calibration"] == "none"
    expected = calibration_metrics(label_probabilities(scores), gold, resamples=200, seed=1)
    for key in ("ece_width", "ece_mass", "brier", "log_loss"):
        assert a[key] == pytest.approx(expected[key])
        assert a[f"{key}_ci"] == pytest.approx(expected[f"{key}_ci"])
    valid_only = probability_metrics(preds, LABELS, resamples=200, seed=1, include_invalid=False)
    assert valid_only["a/none"]["n"] == 360 and valid_only["a/contextual"]["n"] == 400
    with pytest.raises(UserError, match="not in labels"):
        probability_metrics(preds, LABELS, resamples=200, seed=1, positive="neutral")


def test_missing_scores_are_an_error():
    bad = frame("s", np.log(two_label(P_POS)), GOLD).with_columns(
        label_scores=pl.lit([0.0], dtype=pl.List(pl.Float64))
    )
    with pytest.raises(UserError, match="one score per label"):
        probability_metrics(bad, LABELS, resamples=100, seed=0)


def test_reliability_tables_twins_and_plot(tmp_path):
    z, gold = calibrated_sample(300, seed=5)
    raw = np.column_stack([np.zeros_like(z), z + 1.0])
    preds = pl.concat(
        [
            frame("m/p/none", raw, gold),
            frame(
                "m/p/contextual",
                apply_bias(raw, np.log([0.27, 0.73])),
                gold,
                calibration="contextual",
            ),
            frame(
                "tfidf", np.column_stack([np.zeros_like(z), z]), gold, model="tfidf"
            ).with_columns(prompt=pl.lit("-"), backend=pl.lit("tfidf")),
        ]
    )
    twins = calibration_twins(preds, "m/p/none")
    assert sorted(twins["system"].unique().to_list()) == ["m/p/contextual", "m/p/none"]
    tables = reliability_tables(preds, LABELS)
    assert tables.columns == ["system", "model", "calibration", *RELIABILITY_COLUMNS]
    assert tables.group_by("system").agg(pl.col("count").sum())["count"].to_list() == [300] * 3
    for binning in ("width", "mass"):
        out = plot_reliability(preds, LABELS, tmp_path / f"rel_{binning}.png", binning=binning)
        assert out.is_file() and out.stat().st_size > 1000
