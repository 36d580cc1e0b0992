"""How good the label probabilities are, not only the argmax: calibration error, Brier score,
log loss, the reliability table and diagram, with CIs.

Probabilities are the softmax of `label_scores` over the labels (PREDICTIONS_SCHEMA). For
uncalibrated rows those are normalized log-probabilities; calibrated rows hold
`apply_bias`-shifted scores, and softmax removes the shift's normalization constant. Baselines
write the log of their predicted probabilities (`predict_log_proba` / `log_softmax`), so they
are read the same way.

The view of the probabilities:
- two labels: P(positive label) against whether gold is the positive label (the binary,
  Naeini-style calibration of P(positive); `positive` defaults to the last label, as in
  `llmlab.eval.metrics`). Brier is then sklearn's binary `brier_score_loss`.
- k > 2 labels: *top-label* calibration, the confidence max_k P(k) against whether the argmax
  label is gold (Guo et al., 2017); Brier is the multi-class sum over labels of
  (P(k) - 1[gold = k])^2 (Brier, 1950), which for two labels would be twice the binary value.
Log loss is -log P(gold) in every case, with P clipped below at EPS.

Calibration error: the binned ECE's plug-in estimate is biased upward (a perfectly calibrated
scorer scores ~0.16 on 40 reviews in 10 bins) and its percentile bootstrap more so, so the
reported figure is the *debiased* squared L2 calibration error of Kumar, Liang & Ma (2019)
on equal-width bins [a, b) (the last closed), max(1, min(configured, floor(sqrt(n)))) of them,
and its square root, with a bias-corrected bootstrap CI (`squared_calibration_error_ci`); the
plug-in L1 ECE on the same bins is kept as a descriptive number without CI.

Invalid predictions: the scores are computed for every prompt whether or not the generated
text parsed as a label, so every row is scored by default (`include_invalid=True`); the
`prediction` column is never read. That keeps all systems on the same reviews (a paired view)
and it is what calibration acts on: calibrated predictions are the argmax of these scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns

from llmlab.errors import UserError
from llmlab.eval.calibration import normalize
from llmlab.eval.metrics import bootstrap_ci
from llmlab.plots import save_figure, setup_theme

# Lower clip of P(gold) in the log loss (sklearn's historical default): one confidently wrong
# row costs at most -log(1e-15) ~ 34.5 nats instead of infinity.
EPS = 1e-15
Binning = Literal["width", "mass"]
BINNINGS: tuple[Binning, ...] = ("width", "mass")
RELIABILITY_COLUMNS = ("bin", "lower", "upper", "mean_predicted", "observed", "count")


# --------------------------------------------------------------------------- probabilities


def label_probabilities(scores: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Softmax over the label axis (last): (rows, labels) probabilities summing to 1.

    Any per-row shift of the scores (a calibration bias before renormalization) cancels; -inf
    (probability 0 in a baseline's log-probs) is fine, NaN or an all -inf row is an error.
    """
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise UserError(f"label_scores: expected (rows, >= 2 labels), got shape {arr.shape}")
    if np.isnan(arr).any() or np.isposinf(arr).any() or np.isneginf(arr).all(axis=1).any():
        raise UserError("label_scores: NaN, +inf or all -inf scores; cannot make probabilities")
    return np.exp(normalize(arr))


def probabilities_and_gold(
    rows: pl.DataFrame, labels: Sequence[str], *, include_invalid: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, k), gold label indices (n,)) of one system's rows, by review_id.

    Sorting by review_id makes the result (and the equal-mass bins' tie order and the bootstrap
    resamples) independent of the file's row order.
    """
    labels = list(labels)
    if not include_invalid:
        rows = rows.filter(pl.col("valid").fill_null(False))
    rows = rows.sort("review_id")
    if rows.is_empty():
        raise UserError("probability metrics: no rows to score")
    unknown = sorted(set(rows["gold"].to_list()) - set(labels))
    if unknown:
        raise UserError(f"probability metrics: gold labels {unknown} are not in {labels}")
    lengths = rows["label_scores"].list.len()
    bad = rows.filter(rows["label_scores"].is_null() | (lengths != len(labels)))
    if bad.height:
        raise UserError(
            f"probability metrics: {bad.height} rows of system {bad['system'][0]!r} have no "
            f"label_scores or not one score per label ({len(labels)})"
        )
    scores = np.array(rows["label_scores"].to_list(), dtype=np.float64)
    gold = np.array([labels.index(g) for g in rows["gold"].to_list()], dtype=np.int64)
    return label_probabilities(scores), gold


def _check(probs: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[1] < 2 or gold.shape != (probs.shape[0],):
        raise ValueError(f"probs {probs.shape} and gold {gold.shape} do not match")
    if probs.shape[0] == 0:
        raise ValueError("no rows")
    if gold.min() < 0 or gold.max() >= probs.shape[1]:
        raise ValueError("gold index out of range")
    return probs, gold


def reliability_view(
    probs: np.ndarray, gold: np.ndarray, *, positive: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) that ECE and the reliability diagram compare.

    Two labels: P(label `positive`, default the last) and 1[gold = positive]. More labels:
    the top-label confidence max_k P(k) and 1[argmax = gold] (`positive` is ignored).
    """
    probs, gold = _check(probs, gold)
    k = probs.shape[1]
    if k == 2:
        pos = k - 1 if positive is None else positive
        if not 0 <= pos < k:
            raise ValueError(f"positive index {pos} out of range for {k} labels")
        return probs[:, pos], (gold == pos).astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == gold).astype(np.float64)


# --------------------------------------------------------------------------- binning


def _mass_sizes(n: int, bins: int) -> np.ndarray:
    """Bin sizes of `n` sorted rows in `min(bins, n)` equal-mass bins (np.array_split sizes:
    the first n % bins bins hold one row more)."""
    b = min(bins, n)
    q, r = divmod(n, b)
    return np.array([q + 1] * r + [q] * (b - r), dtype=np.int64)


def _width_index(conf: np.ndarray, bins: int) -> np.ndarray:
    # Bins [i/bins, (i+1)/bins), the last one closed so that confidence 1.0 is counted.
    return np.minimum((conf * bins).astype(np.int64), bins - 1)


def _check_binning(bins: int, binning: str) -> None:
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")


def _ece_batch(conf: np.ndarray, outcome: np.ndarray, bins: int, binning: Binning) -> np.ndarray:
    """Plug-in ECE of each row of (resamples, n) arrays: sum over bins of |sum conf - sum
    outcome| / n, which equals sum_b (n_b / n) |mean conf_b - mean outcome_b|."""
    r, n = conf.shape
    if binning == "width":
        idx = _width_index(conf, bins) + bins * np.arange(r)[:, None]
        diff = np.bincount(idx.ravel(), weights=(conf - outcome).ravel(), minlength=r * bins)
        return np.abs(diff.reshape(r, bins)).sum(axis=1) / n
    # Stable sort: equal confidences keep their row order, so ties are split deterministically.
    order = np.argsort(conf, axis=1, kind="stable")
    diff = np.take_along_axis(conf - outcome, order, axis=1)
    starts = np.concatenate([[0], np.cumsum(_mass_sizes(n, bins))[:-1]])
    return np.abs(np.add.reduceat(diff, starts, axis=1)).sum(axis=1) / n


def calibration_bins(n: int, configured: int = 10) -> int:
    """Equal-width bins for `n` reviews: max(1, min(configured, floor(sqrt(n)))).

    The square-root rule keeps about sqrt(n) reviews in an average bin (6 bins of ~7 at
    n = 40, the configured 10 from n = 100 on), so neither the bins' width nor their noise
    dominates; the plug-in ECE with 10 bins of ~4 reviews is mostly noise.
    """
    if n < 1 or configured < 1:
        raise ValueError(f"calibration_bins: n = {n}, configured = {configured}")
    return max(1, min(configured, math.isqrt(n)))


def _squared_ce_batch(
    conf: np.ndarray, outcome: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """(debiased, plug-in) squared calibration error of each row of (resamples, n) arrays,
    equal-width bins (see `squared_calibration_error`)."""
    r, n = conf.shape
    idx = (_width_index(conf, bins) + bins * np.arange(r)[:, None]).ravel()
    size = r * bins
    count = np.bincount(idx, minlength=size).reshape(r, bins).astype(np.float64)
    sum_c = np.bincount(idx, weights=conf.ravel(), minlength=size).reshape(r, bins)
    sum_o = np.bincount(idx, weights=outcome.ravel(), minlength=size).reshape(r, bins)
    safe = np.maximum(count, 1.0)
    mean_o = sum_o / safe
    gap2 = (mean_o - sum_c / safe) ** 2
    weight = count / n
    plugin = (weight * gap2).sum(axis=1)
    # Kumar et al.'s correction: the observed share's sampling variance ybar(1 - ybar)/(n_b - 1)
    # is what (ybar - cbar)^2 adds on average; a bin of one review carries no variance
    # estimate and counts 0 (as in their code).
    variance = mean_o * (1.0 - mean_o) / np.maximum(count - 1.0, 1.0)
    debiased = np.where(count >= 2, weight * (gap2 - variance), 0.0).sum(axis=1)
    return debiased, plugin


def squared_calibration_error(
    probs: np.ndarray, gold: np.ndarray, *, bins: int, positive: int | None = None
) -> float:
    """Debiased squared calibration error (Kumar, Liang & Ma 2019, "Verified Uncertainty
    Calibration", NeurIPS, debiased plug-in estimator):

        sum_b (n_b / n) [(ybar_b - cbar_b)^2 - ybar_b (1 - ybar_b) / (n_b - 1)]

    over `bins` equal-width bins [i/bins, (i+1)/bins), the last closed, of the confidence
    (`reliability_view`: P(positive) for two labels, Naeini-style binary ECE; top-label
    otherwise); cbar_b, ybar_b: the bin's mean confidence and observed frequency. It estimates
    the binned squared L2 calibration error sum_b P(b) (E[Y | b] - E[C | b])^2 without the
    upward bias of the plug-in, and can be negative when the scorer is close to calibrated.
    """
    _check_binning(bins, "width")
    conf, outcome = reliability_view(probs, gold, positive=positive)
    return float(_squared_ce_batch(conf[None, :], outcome[None, :], bins)[0][0])


def l2_calibration_error(value: float) -> float:
    """sqrt(max(0, squared calibration error)): the L2 calibration error on the probability
    scale (the debiased squared error can be negative; its square root is then 0)."""
    return math.sqrt(max(0.0, value))


def expected_calibration_error(
    probs: np.ndarray,
    gold: np.ndarray,
    *,
    bins: int = 10,
    binning: Binning = "width",
    positive: int | None = None,
) -> float:
    """Plug-in ECE = sum_b (n_b / n) |mean confidence_b - observed frequency_b| (see
    reliability_view), biased upward on few reviews per bin (descriptive only).

    `width`: `bins` equal-width bins on [0, 1] (empty ones contribute 0). `mass`: rows sorted by
    confidence (stable: ties keep row order) and cut into min(bins, n) bins of equal counts
    (differing by at most one row), so ties can straddle a bin edge.
    """
    _check_binning(bins, binning)
    conf, outcome = reliability_view(probs, gold, positive=positive)
    return float(_ece_batch(conf[None, :], outcome[None, :], bins, binning)[0])


def brier_rows(probs: np.ndarray, gold: np.ndarray, *, positive: int | None = None) -> np.ndarray:
    """Per-row Brier terms: (P(positive) - 1[gold = positive])^2 for two labels, else
    sum_k (P(k) - 1[gold = k])^2."""
    probs, gold = _check(probs, gold)
    if probs.shape[1] == 2:
        conf, outcome = reliability_view(probs, gold, positive=positive)
        return (conf - outcome) ** 2
    onehot = np.eye(probs.shape[1])[gold]
    return ((probs - onehot) ** 2).sum(axis=1)


def brier_score(probs: np.ndarray, gold: np.ndarray, *, positive: int | None = None) -> float:
    """Mean Brier term (lower is better; 0.25 for a constant 0.5 on two labels)."""
    return float(brier_rows(probs, gold, positive=positive).mean())


def log_loss_rows(probs: np.ndarray, gold: np.ndarray, *, eps: float = EPS) -> np.ndarray:
    """Per-row -log(clip(P(gold), eps, 1))."""
    probs, gold = _check(probs, gold)
    p_gold = probs[np.arange(gold.size), gold]
    return -np.log(np.clip(p_gold, eps, 1.0))


def log_loss(probs: np.ndarray, gold: np.ndarray, *, eps: float = EPS) -> float:
    """Mean negative log-likelihood of gold in nats (ln 2 ~ 0.693 for 0.5 on two labels)."""
    return float(log_loss_rows(probs, gold, eps=eps).mean())


def bootstrap_replicates(
    statistic: Callable[..., np.ndarray],
    arrays: Sequence[np.ndarray],
    *,
    resamples: int,
    seed: int,
) -> np.ndarray:
    """(resamples,) values of a statistic on row-resampled versions of `arrays`.

    `statistic` maps (resamples, n) arrays to (resamples,) values. The resample indices are
    drawn exactly as `llmlab.eval.metrics.bootstrap_ci` draws them (same generator, chunking
    and order), so with the same seed and rows every interval here and the accuracy CI use
    the same resamples.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    n = arrays[0].size
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        values[start:stop] = statistic(*(a[idx] for a in arrays))
    return values


def squared_calibration_error_ci(
    conf: np.ndarray,
    outcome: np.ndarray,
    *,
    bins: int,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """(debiased estimate, CI) of the squared calibration error of one (confidence, outcome)
    view: a percentile bootstrap of the bias-corrected replicates.

    Within a resample the estimator targets the *sample's* binned error, i.e. its plug-in
    value P (the bootstrap world's truth), not the estimate T: its replicates T*_r sit near P,
    above T, and their plain percentile interval can exclude T (the finding this replaces).
    The replicates T*_r - P + T carry the sampling distribution back to T. The interval is cut
    at 0 (the error is not negative). Coverage of the true binned error, simulated in
    tests/test_eval_probability.py: ~93-97% at n = 40 (6 bins) and n = 2000 (10 bins) for
    miscalibrated scorers, conservative (~98-100%) when the true error is near 0.
    """
    conf = np.asarray(conf, dtype=np.float64)
    outcome = np.asarray(outcome, dtype=np.float64)
    debiased, plugin = _squared_ce_batch(conf[None, :], outcome[None, :], bins)
    est, plug = float(debiased[0]), float(plugin[0])
    values = bootstrap_replicates(
        lambda c, o: _squared_ce_batch(c, o, bins)[0],
        [conf, outcome],
        resamples=resamples,
        seed=seed,
    )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values - plug + est, [tail, 1.0 - tail])
    return est, (max(0.0, float(low)), max(0.0, float(high)))


def calibration_metrics(
    probs: np.ndarray,
    gold: np.ndarray,
    *,
    bins: int = 10,
    positive: int | None = None,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """n, bins, ce_squared (debiased, `squared_calibration_error`) and ce_l2 (its square root),
    each with a `<name>_ci`; ece_plugin (the classic plug-in ECE on the same bins: biased
    upward, no CI); brier and log_loss with percentile bootstrap CIs (means of rows).

    `bins` is the configured maximum; the bins used are `calibration_bins(n, bins)`. Every CI
    uses the same seed, hence the same resamples of the rows (as the accuracy CI of
    `system_metrics` does with the same seed).
    """
    probs, gold = _check(probs, gold)
    boot = {"resamples": resamples, "seed": seed, "level": level}
    used = calibration_bins(int(gold.size), bins)
    conf, outcome = reliability_view(probs, gold, positive=positive)
    est, ci = squared_calibration_error_ci(conf, outcome, bins=used, **boot)
    out: dict[str, Any] = {
        "n": int(gold.size),
        "bins": used,
        "ce_squared": est,
        "ce_squared_ci": list(ci),
        "ce_l2": l2_calibration_error(est),
        "ce_l2_ci": [l2_calibration_error(x) for x in ci],
        "ece_plugin": float(_ece_batch(conf[None, :], outcome[None, :], used, "width")[0]),
    }
    for key, per_row in (
        ("brier", brier_rows(probs, gold, positive=positive)),
        ("log_loss", log_loss_rows(probs, gold)),
    ):
        out[key] = float(per_row.mean())
        out[f"{key}_ci"] = list(bootstrap_ci(per_row, **boot))
    return out


def calibration_change(
    probs_before: np.ndarray,
    probs_after: np.ndarray,
    gold: np.ndarray,
    *,
    bins: int = 10,
    positive: int | None = None,
    resamples: int,
    seed: int,
    level: float = 0.95,
    family_size: int = 1,
) -> dict[str, Any]:
    """Paired change after - before on the same rows (e.g. a calibrated system against its
    uncalibrated twin).

    - ce_squared: change of the debiased squared calibration error (`calibration_bins(n,
      bins)` equal-width bins) with ce_squared_ci at level 1 - (1 - level) / family_size
      (`ce_level`: Bonferroni over a family of that many changes): the percentile interval
      of the paired, bias-corrected bootstrap replicates D*_r - D_P + D (D_P: the change of
      the plug-in values, the bootstrap world's truth; see `squared_calibration_error_ci`),
      with the resamples raised until each tail holds >= 10 of them (4,800 for a family of
      12, 19,200 for 48). Percentile rather than normal: the change is skewed when one side
      is far off (a constant P = 0.9 on balanced reviews), and a symmetric interval then
      wastes power. ce_squared_se: the replicates' sd. An interval entirely below 0 means the
      second probabilities are better calibrated; simulated with equally calibrated pairs
      (tests, scripts/benchmark_false_claims.py) it excludes 0 at most at the nominal rate.
    - ce_l2, ece_plugin: changes of the point values (descriptive, no CI).
    - brier, log_loss: mean per-row changes with percentile bootstrap CIs at `level`.
    Identical probabilities change nothing on every resample: every CI is [0, 0].
    """
    probs_before, gold = _check(probs_before, gold)
    probs_after, _ = _check(probs_after, gold)
    if probs_before.shape != probs_after.shape:
        raise ValueError(f"probs {probs_before.shape} and {probs_after.shape} do not match")
    if family_size < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    used = calibration_bins(int(gold.size), bins)
    before, outcome = reliability_view(probs_before, gold, positive=positive)
    after, _ = reliability_view(probs_after, gold, positive=positive)

    def change(b: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        return _squared_ce_batch(a, o, used)[0] - _squared_ce_batch(b, o, used)[0]

    est = float(change(before[None, :], after[None, :], outcome[None, :])[0])
    plug = float(
        _squared_ce_batch(after[None, :], outcome[None, :], used)[1][0]
        - _squared_ce_batch(before[None, :], outcome[None, :], used)[1][0]
    )
    ce_level = 1.0 - (1.0 - level) / family_size
    tail = (1.0 - ce_level) / 2.0
    values = bootstrap_replicates(
        change,
        [before, after, outcome],
        resamples=max(resamples, math.ceil(10.0 / tail)),
        seed=seed,
    )
    se = float(values.std(ddof=1)) if values.size > 1 else 0.0
    low, high = np.quantile(values - plug + est, [tail, 1.0 - tail])
    est_b = squared_calibration_error(probs_before, gold, bins=used, positive=positive)
    est_a = squared_calibration_error(probs_after, gold, bins=used, positive=positive)
    ece = {
        name: expected_calibration_error(p, gold, bins=used, positive=positive)
        for name, p in (("before", probs_before), ("after", probs_after))
    }
    out: dict[str, Any] = {
        "n": int(gold.size),
        "bins": used,
        "ce_squared": est,
        "ce_squared_se": se,
        "ce_squared_ci": [float(low), float(high)],
        "ce_level": ce_level,
        "family_size": family_size,
        "ce_l2": l2_calibration_error(est_a) - l2_calibration_error(est_b),
        "ece_plugin": ece["after"] - ece["before"],
    }
    boot = {"resamples": resamples, "seed": seed, "level": level}
    for key, per_row in (
        (
            "brier",
            brier_rows(probs_after, gold, positive=positive)
            - brier_rows(probs_before, gold, positive=positive),
        ),
        ("log_loss", log_loss_rows(probs_after, gold) - log_loss_rows(probs_before, gold)),
    ):
        out[key] = float(per_row.mean())
        out[f"{key}_ci"] = list(bootstrap_ci(per_row, **boot))
    return out


# --------------------------------------------------------------------------- reliability


def reliability_table(
    probs: np.ndarray,
    gold: np.ndarray,
    *,
    bins: int = 10,
    binning: Binning = "width",
    positive: int | None = None,
) -> pl.DataFrame:
    """One row per bin: bin (0-based), lower, upper, mean_predicted, observed, count.

    `width`: every bin, its edges [lower, upper) (the last closed), empty bins with count 0 and
    null means. `mass`: lower/upper are the smallest/largest confidence in the bin.
    ECE = sum(count * |mean_predicted - observed|) / sum(count).
    """
    _check_binning(bins, binning)
    conf, outcome = reliability_view(probs, gold, positive=positive)
    if binning == "width":
        idx = _width_index(conf, bins)
        count = np.bincount(idx, minlength=bins)
        sum_c = np.bincount(idx, weights=conf, minlength=bins)
        sum_o = np.bincount(idx, weights=outcome, minlength=bins)
        lower = np.arange(bins) / bins
        upper = np.arange(1, bins + 1) / bins
    else:
        order = np.argsort(conf, kind="stable")
        parts = np.split(order, np.cumsum(_mass_sizes(conf.size, bins))[:-1])
        count = np.array([p.size for p in parts])
        sum_c = np.array([conf[p].sum() for p in parts])
        sum_o = np.array([outcome[p].sum() for p in parts])
        lower = np.array([conf[p].min() for p in parts])
        upper = np.array([conf[p].max() for p in parts])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = np.where(count > 0, sum_c / count, np.nan)
        mean_o = np.where(count > 0, sum_o / count, np.nan)
    return pl.DataFrame(
        {
            "bin": np.arange(count.size, dtype=np.int64),
            "lower": lower.astype(np.float64),
            "upper": upper.astype(np.float64),
            "mean_predicted": mean_c,
            "observed": mean_o,
            "count": count.astype(np.int64),
        },
        nan_to_null=True,
    )


# --------------------------------------------------------------------------- tables


def _positive_index(labels: Sequence[str], positive: str | None) -> int | None:
    if len(labels) != 2:
        return None
    positive = labels[-1] if positive is None else positive
    if positive not in labels:
        raise UserError(f"positive label {positive!r} is not in labels {list(labels)}")
    return list(labels).index(positive)


def view_name(labels: Sequence[str], positive: str | None = None) -> str:
    """What confidence means: "P(<positive>)" for two labels, "top-label" otherwise."""
    pos = _positive_index(labels, positive)
    return "top-label" if pos is None else f"P({labels[pos]})"


def probability_metrics(
    predictions: pl.DataFrame,
    labels: Sequence[str],
    *,
    resamples: int,
    seed: int,
    bins: int = 10,
    positive: str | None = None,
    level: float = 0.95,
    include_invalid: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per system (first-appearance order): {model, calibration, view, n_invalid} and the
    `calibration_metrics` (n, bins, ce_squared, ce_l2, ece_plugin, brier, log_loss, CIs).

    `n` rows are scored (all rows unless `include_invalid=False`); `n_invalid` counts the rows
    whose generated text was not a label (scored anyway by default, see the module docstring).
    """
    pos = _positive_index(labels, positive)
    out: dict[str, dict[str, Any]] = {}
    for (system,), rows in predictions.group_by("system", maintain_order=True):
        probs, gold = probabilities_and_gold(rows, labels, include_invalid=include_invalid)
        first = rows.row(0, named=True)
        out[system] = {
            "model": first["model"],
            "calibration": first["calibration"],
            "view": view_name(labels, positive),
            "n_invalid": int((~rows["valid"].fill_null(False)).sum()),
        } | calibration_metrics(
            probs, gold, bins=bins, positive=pos, resamples=resamples, seed=seed, level=level
        )
    return out


def reliability_tables(
    predictions: pl.DataFrame,
    labels: Sequence[str],
    *,
    bins: int = 10,
    binning: Binning = "width",
    positive: str | None = None,
    include_invalid: bool = True,
) -> pl.DataFrame:
    """`reliability_table` of every system, with leading columns system, model, calibration."""
    pos = _positive_index(labels, positive)
    frames = []
    for (system,), rows in predictions.group_by("system", maintain_order=True):
        probs, gold = probabilities_and_gold(rows, labels, include_invalid=include_invalid)
        first = rows.row(0, named=True)
        table = reliability_table(probs, gold, bins=bins, binning=binning, positive=pos)
        frames.append(
            table.select(
                pl.lit(system).alias("system"),
                pl.lit(first["model"]).alias("model"),
                pl.lit(first["calibration"]).alias("calibration"),
                *RELIABILITY_COLUMNS,
            )
        )
    return pl.concat(frames)


def calibration_twins(predictions: pl.DataFrame, system: str) -> pl.DataFrame:
    """Rows of `system` and of every system that differs from it only in calibration (the
    uncalibrated/calibrated set one reliability panel compares)."""
    keys = ["model", "prompt", "shots", "strategy", "backend"]
    rows = predictions.filter(pl.col("system") == system)
    if rows.is_empty():
        raise UserError(f"calibration_twins: no rows of system {system!r}")
    first = rows.row(0, named=True)
    return predictions.filter(pl.all_horizontal([pl.col(k) == first[k] for k in keys]))


# --------------------------------------------------------------------------- figure


def plot_reliability(
    predictions: pl.DataFrame,
    labels: Sequence[str],
    path: Path,
    *,
    bins: int = 10,
    binning: Binning = "width",
    positive: str | None = None,
    include_invalid: bool = True,
    title: str = "Reliability: uncalibrated vs calibrated",
) -> Path:
    """One reliability diagram per model (columns), one curve per system of that model.

    Pass the systems to compare, typically `calibration_twins` of each model's chosen system:
    curves are then labelled by calibration method (by system id when a model has several
    systems with the same calibration). Top: observed frequency against mean confidence per
    non-empty bin, and the diagonal (perfect calibration); bottom: rows per bin.
    """
    tables = reliability_tables(
        predictions,
        labels,
        bins=bins,
        binning=binning,
        positive=positive,
        include_invalid=include_invalid,
    )
    view = view_name(labels, positive)
    models = tables["model"].unique(maintain_order=True).to_list()
    setup_theme()
    fig, axes = plt.subplots(
        2,
        len(models),
        figsize=(4.2 * len(models) + 1.0, 6.0),
        gridspec_kw={"height_ratios": [3, 1]},
        sharex=True,
        squeeze=False,
    )
    methods = tables["calibration"].unique(maintain_order=True).to_list()
    colors = dict(zip(methods, sns.color_palette("deep", len(methods)), strict=True))
    markers = dict(zip(methods, "osD^vP*X", strict=False))
    for col, model in enumerate(models):
        ax, ax_n = axes[0, col], axes[1, col]
        part = tables.filter(pl.col("model") == model)
        systems = part["system"].unique(maintain_order=True).to_list()
        by_method = part.unique(["system", "calibration"]).group_by("calibration").len()
        ambiguous = (by_method["len"] > 1).any()
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
        width = 1.0 / bins / max(1, len(systems))
        for j, system in enumerate(systems):
            t = part.filter((pl.col("system") == system) & (pl.col("count") > 0))
            method = t["calibration"][0]
            label = system if ambiguous else method
            ax.plot(
                t["mean_predicted"].to_numpy(),
                t["observed"].to_numpy(),
                marker=markers.get(method, "o"),
                color=colors[method],
                label=label,
            )
            if binning == "width":
                # Bars side by side inside each bin, one per curve.
                x = t["lower"].to_numpy() + width * (j + 0.5)
                ax_n.bar(
                    x, t["count"].to_numpy(), width=width * 0.95, color=colors[method], alpha=0.8
                )
            else:
                ax_n.scatter(
                    t["mean_predicted"].to_numpy(),
                    t["count"].to_numpy(),
                    color=colors[method],
                    s=14,
                )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(model)
        ax.set_ylabel("observed frequency" if view != "top-label" else "accuracy")
        ax.legend(fontsize=7, loc="upper left")
        ax_n.set_xlabel(f"mean predicted {view} ({binning} bins)")
        ax_n.set_ylabel("rows per bin")
    fig.suptitle(title, fontweight="bold", fontsize=10)
    return save_figure(fig, path)
