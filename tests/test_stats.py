"""llmlab.stats against independent references (statsmodels, scipy, first principles), and the
coverage of its intervals measured by simulation or exact enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binom, norm
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar
from statsmodels.stats.proportion import proportion_confint

from llmlab.stats import (
    bonferroni,
    cochran_q,
    mcnemar_score,
    paired_difference,
    proportion_ci,
    tango_ci,
    wilson_ci,
)


@pytest.mark.parametrize("n", [1, 10, 40, 2000])
def test_wilson_matches_statsmodels(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        for level in (0.95, 0.99):
            ref = proportion_confint(k, n, alpha=1 - level, method="wilson")
            assert wilson_ci(k, n, level) == pytest.approx(ref, abs=1e-12)
    assert proportion_ci([1, 1, 0, 1]) == pytest.approx(list(wilson_ci(3, 4)))
    assert proportion_ci([]) is None


@pytest.mark.parametrize("n", [40, 2000])
def test_wilson_coverage_is_near_nominal(n):
    # Exact coverage (the binomial probability of every k whose interval holds p), averaged
    # over true accuracies 0.3..0.9: Wilson's coverage oscillates with p (Brown, Cai &
    # DasGupta 2001; 92.8% at p = 0.8, n = 40) around the nominal 95%.
    ks = np.arange(n + 1)
    intervals = np.array([wilson_ci(int(k), n) for k in ks])
    coverage = []
    for p in np.linspace(0.3, 0.9, 61):
        covers = (intervals[:, 0] <= p) & (p <= intervals[:, 1])
        coverage.append(binom.pmf(ks, n, p)[covers].sum())
    assert 0.93 <= np.mean(coverage) <= 0.97
    assert min(coverage) >= 0.90


def test_mcnemar_score_matches_statsmodels():
    for b, c in [(0, 1), (5, 0), (3, 9), (30, 10), (12, 12)]:
        ref = mcnemar([[7, b], [c, 4]], exact=False, correction=False)
        got = mcnemar_score(b, c)
        assert got["statistic"] == pytest.approx(ref.statistic)
        assert got["p_value"] == pytest.approx(ref.pvalue)
    assert mcnemar_score(0, 0)["p_value"] == 1.0


def test_cochran_q_matches_statsmodels():
    rng = np.random.default_rng(3)
    for k in (2, 3, 5):
        x = (rng.random((40, k)) < rng.uniform(0.4, 0.9, size=k)).astype(int)
        ref = cochrans_q(x)
        got = cochran_q(x)
        assert got["statistic"] == pytest.approx(ref.statistic)
        assert got["p_value"] == pytest.approx(ref.pvalue)
    # Two systems: Cochran's Q is McNemar's chi-square.
    x = np.array([[1, 0]] * 6 + [[0, 1]] * 2 + [[1, 1]] * 10)
    assert cochran_q(x)["statistic"] == pytest.approx(mcnemar_score(6, 2)["statistic"])
    assert cochran_q(np.ones((5, 3)))["p_value"] == 1.0


def _score_interval_by_brute_force(b: int, c: int, n: int, level: float) -> tuple[float, float]:
    """Tango's interval from its definition, with nothing shared with llmlab.stats: the
    restricted MLE of the discordant cell by numerical maximization of the multinomial
    likelihood, and the set {delta: |score statistic| <= z} by a grid and bisection."""
    z = norm.ppf(0.5 + level / 2)

    def statistic(delta: float) -> float:
        # Cells: p_b = q + delta, p_c = q, the rest 1 - 2q - delta; q in the feasible range.
        low, high = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12

        def nll(q: float) -> float:
            rest = n - b - c
            out = -c * math.log(q) - b * math.log(q + delta) if b or c else 0.0
            return out - (rest * math.log(1 - 2 * q - delta) if rest else 0.0)

        q = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-12}).x
        var = n * (2 * q + delta - delta**2)
        return (b - c - n * delta) / math.sqrt(var)

    def inside(d: float) -> bool:
        return abs(statistic(d)) <= z

    def edge(lo: float, hi: float) -> float:  # inside(lo) != inside(hi): bisect
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if inside(mid) == inside(lo) else (lo, mid)
        return (lo + hi) / 2

    grid = np.linspace(-0.999, 0.999, 201)
    ins = [inside(d) for d in grid]
    first, last = ins.index(True), len(ins) - 1 - ins[::-1].index(True)
    low = grid[0] if first == 0 else edge(grid[first - 1], grid[first])
    high = grid[-1] if last == len(grid) - 1 else edge(grid[last], grid[last + 1])
    return low, high


@pytest.mark.parametrize(("b", "c", "n"), [(1, 7, 21), (4, 0, 40), (10, 2, 40), (9, 13, 40)])
def test_tango_interval_matches_its_definition(b, c, n):
    low, high = tango_ci(b, c, n)
    ref_low, ref_high = _score_interval_by_brute_force(b, c, n, 0.95)
    assert low == pytest.approx(ref_low, abs=1e-6)
    assert high == pytest.approx(ref_high, abs=1e-6)


def test_tango_interval_published_example():
    # Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91, the airway
    # hyper-responsiveness example (n = 21; discordant 1 and 7): Tango -0.517 to -0.026.
    low, high = tango_ci(1, 7, 21)
    assert (round(low, 3), round(high, 3)) == (-0.517, -0.026)


def test_interval_and_test_never_disagree():
    n = 40
    for family_size in (1, 3, 12):
        for b in range(0, 16):
            for c in range(0, 16):
                a = np.array([True] * b + [False] * c + [True] * (n - b - c))
                bb = np.array([False] * b + [True] * c + [True] * (n - b - c))
                r = paired_difference(a, bb, family_size=family_size)
                low, high = r["difference_ci"]
                assert r["significant"] == (low > 0 or high < 0), (b, c, family_size)
                assert low <= r["difference"] <= high
                assert r["level"] == pytest.approx(1 - 0.05 / family_size)


@pytest.mark.parametrize("n", [40, 2000])
def test_tango_coverage_is_near_nominal(n):
    # Paired outcomes with a true difference of 0.05 and 20% discordant items.
    rng = np.random.default_rng(11)
    p_b, p_c = 0.125, 0.075
    reps = 1500
    cells = rng.multinomial(n, [p_b, p_c, 1 - p_b - p_c], size=reps)
    covered = 0
    for b, c, _ in cells:
        low, high = tango_ci(int(b), int(c), n)
        covered += low <= p_b - p_c <= high
    assert 0.93 <= covered / reps <= 0.97


def test_no_effect_rejects_at_most_the_nominal_rate():
    # Two systems with equal accuracy: McNemar's score test rejects ~5% of the time or less.
    rng = np.random.default_rng(5)
    n, reps = 40, 3000
    cells = rng.multinomial(n, [0.1, 0.1, 0.8], size=reps)
    rejected = np.mean([mcnemar_score(int(b), int(c))["p_value"] < 0.05 for b, c, _ in cells])
    assert rejected <= 0.06


def test_bonferroni():
    out = bonferroni([0.01, 0.02, 0.3])
    assert [o["p_adjusted"] for o in out] == pytest.approx([0.03, 0.06, 0.9])
    assert [o["significant"] for o in out] == [True, False, False]
    assert bonferroni([0.9, 0.8])[0]["p_adjusted"] == 1.0
