"""Probability quality (calibration error, Brier, log loss, reliability) against hand-computed
values, numerical integration and simulation (bias, coverage, no-effect claims)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import integrate
from scipy.special import expit
from scipy.stats import norm
from sklearn.metrics import brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from llmlab.errors import UserError
from llmlab.eval.calibration import apply_bias, contextual_bias
from llmlab.eval.metrics import bootstrap_ci
from llmlab.eval.probability import (
    EPS,
    RELIABILITY_COLUMNS,
    bootstrap_replicates,
    brier_score,
    calibration_bins,
    calibration_change,
    calibration_metrics,
    calibration_twins,
    expected_calibration_error,
    label_probabilities,
    log_loss,
    plot_reliability,
    probability_metrics,
    reliability_table,
    reliability_tables,
    squared_calibration_error,
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
    # 400 resamples: the fewest a 95% CE change CI uses (10 replicates per tail).
    boot = {"resamples": 400, "seed": 5}
    change = calibration_change(biased, good, gold, **boot)
    before = calibration_metrics(biased, gold, **boot)
    after = calibration_metrics(good, gold, **boot)
    assert change["bins"] == before["bins"] == 10
    for key in ("ce_squared", "ce_l2", "ece_plugin", "brier", "log_loss"):
        assert change[key] == pytest.approx(after[key] - before[key])
    for key in ("ce_squared", "brier", "log_loss"):
        low, high = change[f"{key}_ci"]
        assert low <= change[key] <= high and high < 0  # removing the bias helps, surely

    # The CE change's CI: percentile of the replicates D* - D_P + D, D_P the plug-in change;
    # recomputed here row by row (not through the vectorized batch) on the same resamples.
    def debiased(p: np.ndarray, o: np.ndarray) -> float:
        return squared_calibration_error(two_label(p), o.astype(int), bins=10)

    def plugin(p: np.ndarray, o: np.ndarray) -> float:
        idx = np.minimum((p * 10).astype(int), 9)
        return sum(
            (idx == b).mean() * (o[idx == b].mean() - p[idx == b].mean()) ** 2
            for b in range(10)
            if (idx == b).any()
        )

    outcome = gold.astype(float)
    reps = bootstrap_replicates(
        lambda b, a, o: np.array(
            [debiased(ai, oi) - debiased(bi, oi) for bi, ai, oi in zip(b, a, o, strict=True)]
        ),
        [biased[:, 1], good[:, 1], outcome],
        **boot,
    )
    plug = plugin(good[:, 1], outcome) - plugin(biased[:, 1], outcome)
    assert change["ce_squared_se"] == pytest.approx(reps.std(ddof=1))
    expected = np.quantile(reps - plug + change["ce_squared"], [0.025, 0.975])
    assert change["ce_squared_ci"] == pytest.approx(expected)
    # Bonferroni over a family of 12: level 1 - 0.05/12, 4,800 resamples (10 per tail), wider.
    family = calibration_change(biased, good, gold, family_size=12, **boot)
    assert family["ce_level"] == pytest.approx(1 - 0.05 / 12) and family["family_size"] == 12
    assert family["ce_squared_ci"][0] < change["ce_squared_ci"][0]
    assert family["ce_squared_ci"][1] > change["ce_squared_ci"][1]
    assert family["brier_ci"] == change["brier_ci"]  # Brier and log loss stay at 95%
    # Paired: the same probabilities twice change nothing, on every resample.
    same = calibration_change(good, good, gold, **boot)
    assert same["ce_squared"] == 0.0 and same["ce_squared_ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="do not match"):
        calibration_change(good, good[:10], gold, **boot)


def equally_calibrated_pair(n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two perfectly calibrated scorers of the same reviews: each sees the log-odds z ~ N(0,
    1.5^2) plus its own N(0, 1) noise and reports P(positive | what it saw) (Gauss-Hermite)."""
    x, w = np.polynomial.hermite.hermgauss(40)
    z = rng.normal(0.0, 1.5, n)
    gold = (rng.random(n) < expit(z)).astype(np.int64)
    shrink, post_sd = 2.25 / 3.25, math.sqrt(2 * 2.25 / 3.25)

    def scorer() -> np.ndarray:
        seen = z + rng.normal(0.0, 1.0, n)
        p = (expit(shrink * seen[:, None] + post_sd * x) * w).sum(axis=1) / math.sqrt(math.pi)
        return two_label(p)

    return scorer(), scorer(), gold


@pytest.mark.parametrize("n", [40, 2000])
def test_change_ci_excludes_0_at_most_5_percent_without_an_effect(n):
    """Calibration that changes nothing about calibration quality (two equally, perfectly
    calibrated scorers; or the same one shifted by +1 and -1 logit, equally miscalibrated by
    symmetry): the paired CI excludes 0 at most at the nominal 5% (binomial margin)."""
    rng = np.random.default_rng(n)
    reps = 300 if n == 40 else 60
    claims = 0
    for r in range(reps):
        a, b, gold = equally_calibrated_pair(n, rng)
        if r % 2:  # equally miscalibrated
            a = label_probabilities(np.log(a) + np.array([0.0, 1.0]))
            b = label_probabilities(np.log(b) - np.array([0.0, 1.0]))
        change = calibration_change(a, b, gold, resamples=300 if n == 40 else 200, seed=r)
        low, high = change["ce_squared_ci"]
        claims += low > 0 or high < 0
    assert claims / reps <= (0.08 if n == 40 else 0.12)


def test_debiased_squared_error_hand_computed_and_bins_rule():
    probs = label_probabilities(np.log(two_label(P_POS)))
    # 3 equal-width bins [0, 1/3), [1/3, 2/3), [2/3, 1]: {0.05, 0.15 | 0, 1}, {0.55, 0.58 | 1,
    # 0}, {0.92, 0.95 | 1, 1}. Per bin (ybar - cbar)^2 - ybar (1 - ybar) / (n_b - 1):
    # (0.5 - 0.1)^2 - 0.25 = -0.09; (0.5 - 0.565)^2 - 0.25 = -0.245775; (1 - 0.935)^2 - 0 =
    # 0.004225; weights 2/6 each.
    expected = (-0.09 - 0.245775 + 0.004225) / 3
    assert squared_calibration_error(probs, GOLD, bins=3) == pytest.approx(expected)
    # One review alone in a bin carries no variance estimate and counts 0 (Kumar et al.'s code).
    assert squared_calibration_error(probs[:1], GOLD[:1], bins=1) == 0.0
    # Left-closed bins: 0.5 falls in [0.5, 1] of 2 bins, 1.0 in the last (closed) bin.
    edge = two_label(np.array([0.5, 0.5, 1.0, 0.0, 0.0]))
    t = reliability_table(edge, np.array([1, 0, 1, 0, 0]), bins=2)
    assert t["count"].to_list() == [2, 3]
    assert [calibration_bins(n) for n in (1, 3, 4, 40, 99, 100, 2000)] == [1, 1, 2, 6, 9, 10, 10]
    assert calibration_bins(2000, configured=15) == 15
    m = calibration_metrics(probs, GOLD, resamples=200, seed=0)
    assert m["bins"] == 2  # floor(sqrt(6))
    assert m["ce_squared"] == pytest.approx(squared_calibration_error(probs, GOLD, bins=2))
    assert m["ce_l2"] == math.sqrt(max(0.0, m["ce_squared"]))
    assert m["ece_plugin"] == pytest.approx(expected_calibration_error(probs, GOLD, bins=2))


def true_squared_error(shift: float, bins: int, sd: float = 1.5) -> float:
    """Binned squared calibration error of P(positive) = sigmoid(z + shift) when the truth is
    sigmoid(z), z ~ N(0, sd^2): sum_b P(b) (E[Y | b] - E[C | b])^2 by quadrature per bin."""
    total = 0.0
    for b in range(bins):
        # Bin b of the confidence is an interval of z (the confidence is monotone in z).
        lo = -np.inf if b == 0 else math.log(b / bins / (1 - b / bins)) - shift
        hi = np.inf if b == bins - 1 else math.log((b + 1) / bins / (1 - (b + 1) / bins)) - shift
        mass = norm.cdf(hi, scale=sd) - norm.cdf(lo, scale=sd)
        gap = integrate.quad(
            lambda z: (expit(z) - expit(z + shift)) * norm.pdf(z, scale=sd), lo, hi
        )[0]
        total += gap * gap / mass if mass > 0 else 0.0
    return total


def test_plugin_ece_is_biased_and_the_debiased_error_is_not():
    """A perfectly calibrated scorer on 40 reviews: plug-in ECE ~0.16 in 10 bins (the issue's
    number), the debiased squared error ~0; a miscalibrated one (+1 logit): the debiased mean
    matches the integrated truth, the plug-in exceeds it."""
    rng = np.random.default_rng(11)
    plugin, debiased, shifted, shifted_plugin = [], [], [], []
    for _ in range(2_000):
        z = rng.normal(0.0, 1.5, 40)
        gold = (rng.random(40) < expit(z)).astype(np.int64)
        good, bad = two_label(expit(z)), two_label(expit(z + 1.0))
        plugin.append(expected_calibration_error(good, gold, bins=10))
        debiased.append(squared_calibration_error(good, gold, bins=6))
        shifted.append(squared_calibration_error(bad, gold, bins=6))
        conf = bad[:, 1]
        idx = np.minimum((conf * 6).astype(int), 5)
        shifted_plugin.append(
            sum(
                (idx == b).mean() * (gold[idx == b].mean() - conf[idx == b].mean()) ** 2
                for b in range(6)
                if (idx == b).any()
            )
        )
    assert 0.14 < np.mean(plugin) < 0.18
    assert abs(np.mean(debiased)) < 0.003  # sd of the mean ~0.0006
    truth = true_squared_error(1.0, 6)
    assert truth == pytest.approx(0.0326, abs=5e-4)
    assert np.mean(shifted) == pytest.approx(truth, abs=0.003)
    assert np.mean(shifted_plugin) > truth + 0.015


@pytest.mark.parametrize(("n", "reps", "resamples"), [(40, 400, 400), (2000, 100, 200)])
def test_calibration_error_ci_covers_the_truth(n, reps, resamples):
    """The printed 95% CI of the calibration error covers the true binned error of a scorer
    with +1 logit of bias ~95% of the time (binomial margins for the number of runs; the
    benchmark script runs more), and always contains its own estimate."""
    bins = calibration_bins(n)
    truth = true_squared_error(1.0, bins)
    rng = np.random.default_rng(n)
    covered = 0
    for r in range(reps):
        z = rng.normal(0.0, 1.5, n)
        gold = (rng.random(n) < expit(z)).astype(np.int64)
        m = calibration_metrics(two_label(expit(z + 1.0)), gold, resamples=resamples, seed=r)
        low, high = m["ce_squared_ci"]
        covered += low <= truth <= high
        assert low <= max(0.0, m["ce_squared"]) <= high
        assert m["ce_l2_ci"] == pytest.approx([math.sqrt(low), math.sqrt(high)])
        assert m["ce_l2_ci"][0] <= m["ce_l2"] <= m["ce_l2_ci"][1]
    margin = 3 * math.sqrt(0.95 * 0.05 / reps)
    assert 0.95 - margin <= covered / reps <= min(1.0, 0.95 + margin)


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


def test_cis_contain_the_estimate_and_are_deterministic():
    z, gold = calibrated_sample(500, seed=3)
    probs = label_probabilities(np.column_stack([np.zeros_like(z), z + 0.5]))
    m1 = calibration_metrics(probs, gold, resamples=300, seed=7)
    m2 = calibration_metrics(probs, gold, resamples=300, seed=7)
    assert m1 == m2
    for key in ("ce_squared", "ce_l2", "brier", "log_loss"):
        low, high = m1[f"{key}_ci"]
        assert low <= m1[key] <= high, key
        assert low < high
    assert (
        calibration_metrics(probs, gold, resamples=300, seed=8)["ce_squared_ci"]
        != m1["ce_squared_ci"]
    )


def test_replicates_use_the_metrics_resamples():
    # Same seed and rows -> the same resample indices as metrics.bootstrap_ci (also chunked).
    x = np.random.default_rng(0).random(3_000)
    means = bootstrap_replicates(lambda a: a.mean(axis=1), [x], resamples=1_500, seed=5)
    assert tuple(np.quantile(means, [0.025, 0.975])) == bootstrap_ci(x, resamples=1_500, seed=5)


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
    for key in ("ce_squared", "ce_l2", "brier", "log_loss"):
        assert a[key] == pytest.approx(expected[key])
        assert a[f"{key}_ci"] == pytest.approx(expected[f"{key}_ci"])
    assert a["ece_plugin"] == pytest.approx(expected["ece_plugin"]) and a["bins"] == 10
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
