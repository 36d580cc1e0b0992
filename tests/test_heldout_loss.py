"""The SFT systems compared on one common held-out set: the paired loss differences, their
intervals against scipy/statsmodels, their coverage, and the report's sentence under no effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from llmlab.config import load_params
from llmlab.errors import UserError
from llmlab.io import write_parquet
from llmlab.report import heldout_loss_sentence, sft_conclusions
from llmlab.schemas import HELDOUT_ANSWERS, HELDOUT_LOSS
from llmlab.sft_eval import heldout_loss_comparison, loss_pairs, run_format_metrics
from llmlab.stats import paired_mean_difference

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ["base", "a", "b"]


def scored(losses: dict[str, np.ndarray], tokens: np.ndarray) -> pl.DataFrame:
    """compare_generations' held-out table with each system's per-token loss per prompt."""
    rows = []
    for system, per_token in losses.items():
        for pid, (loss, n) in enumerate(zip(per_token, tokens, strict=True)):
            rows.append(
                {
                    "prompt_id": pid,
                    "prompt": f"вопрос {pid}",
                    "reference": f"ответ {pid}",
                    "system": system,
                    "answer": "…",
                    "new_tokens": 3,
                    "finished": True,
                    "reference_nll": float(loss * n),
                    "reference_tokens": int(n),
                }
            )
    return pl.DataFrame(rows).select(*HELDOUT_ANSWERS, *HELDOUT_LOSS)


def no_effect(rng: np.random.Generator, n: int, skewed: bool = True) -> dict[str, np.ndarray]:
    """Per-token losses of three systems with the same distribution: prompts differ in
    difficulty (shared), systems in noise only (skewed: occasional bad answers)."""
    difficulty = rng.gamma(4.0, 0.5, n)
    noise = (lambda: rng.exponential(0.4, n)) if skewed else (lambda: rng.normal(0, 0.4, n))
    return {s: difficulty + noise() for s in SYSTEMS}


# --------------------------------------------------------------------------- the interval


@pytest.mark.parametrize("family_size", [1, 3])
def test_paired_difference_matches_scipy_and_statsmodels(family_size: int) -> None:
    from statsmodels.stats.weightstats import DescrStatsW

    rng = np.random.default_rng(0)
    a, b = rng.normal(2.0, 0.5, 12), rng.normal(2.2, 0.5, 12)
    got = paired_mean_difference(a, b, family_size=family_size)
    ref = stats.ttest_rel(a, b)
    level = 1 - 0.05 / family_size
    assert got["difference"] == pytest.approx(np.mean(a - b))
    assert got["statistic"] == pytest.approx(ref.statistic)
    assert got["p_value"] == pytest.approx(ref.pvalue)
    assert got["p_adjusted"] == pytest.approx(min(1.0, ref.pvalue * family_size))
    assert got["difference_ci"] == pytest.approx(list(ref.confidence_interval(level)))
    assert got["difference_ci"] == pytest.approx(
        list(DescrStatsW(a - b).tconfint_mean(alpha=1 - level))
    )


def test_the_interval_excludes_zero_exactly_when_the_corrected_test_rejects() -> None:
    rng = np.random.default_rng(1)
    verdicts = []
    for _ in range(2000):
        n = int(rng.integers(2, 30))
        a, b = rng.normal(0, 1, n), rng.normal(rng.normal(0, 0.5), 1, n)
        r = paired_mean_difference(a, b, family_size=3)
        low, high = r["difference_ci"]
        assert r["significant"] == (low > 0 or high < 0)
        verdicts.append(r["significant"])
    assert 0.1 < np.mean(verdicts) < 0.9  # both verdicts were exercised


def test_paired_difference_refuses_what_has_no_interval() -> None:
    with pytest.raises(ValueError, match="1 pairs"):
        paired_mean_difference([1.0], [2.0])
    with pytest.raises(ValueError, match="vs"):
        paired_mean_difference([1.0, 2.0], [2.0])
    same = paired_mean_difference([1.0, 2.0], [1.0, 2.0])
    assert (same["difference_ci"], same["p_value"], same["significant"]) == ([0, 0], 1.0, False)


@pytest.mark.parametrize(("n", "at_least"), [(10, 0.92), (40, 0.93), (200, 0.93)])
def test_the_interval_covers_the_true_difference(n: int, at_least: float) -> None:
    """Nominal 95%: covers the true mean difference 93-97% of the time, also with skewed,
    length-dependent per-prompt losses (one system sometimes answers far worse: differences
    of skewness ~2). At 10 prompts (the demo) such skew costs the t interval ~2 points
    (measured 93.0%; 95% with symmetric differences)."""
    rng = np.random.default_rng(n)
    reps, delta, covered = 2000, 0.2, 0
    for _ in range(reps):
        tokens = np.maximum(3, rng.lognormal(4, 1, n)).round()
        difficulty = rng.gamma(4, 0.5, n)
        a = difficulty + delta + rng.exponential(0.5, n) - 0.5 + rng.normal(0, 1, n) / tokens**0.5
        b = difficulty + rng.normal(0, 0.1, n) + rng.normal(0, 1, n) / tokens**0.5
        low, high = paired_mean_difference(a, b)["difference_ci"]
        covered += low <= delta <= high
    assert at_least <= covered / reps <= 0.97


# --------------------------------------------------------------------------- the comparison


def test_heldout_loss_comparison_on_hand_made_scores() -> None:
    tokens = np.array([10, 30, 20, 40])
    losses = {
        "base": np.array([3.0, 2.0, 2.5, 2.0]),
        "a": np.array([2.0, 1.5, 2.0, 1.5]),
        "b": np.array([2.1, 1.4, 2.3, 1.6]),
    }
    h = heldout_loss_comparison(scored(losses, tokens), SYSTEMS)
    assert (h["prompts"], h["tokens"], h["family_size"]) == (4, 100, 3)
    base = h["systems"]["base"]
    assert base["loss"] == pytest.approx((30 + 60 + 50 + 80) / 100)
    assert base["perplexity"] == pytest.approx(np.exp(2.2))
    assert base["mean_loss"] == pytest.approx(np.mean(losses["base"]))
    assert [p["pair"] for p in h["pairs"]] == ["a vs base", "b vs base", "a vs b"]
    a_base = h["pairs"][0]
    ref = stats.ttest_rel(losses["a"], losses["base"])
    assert a_base["difference"] == pytest.approx(-0.625)
    assert a_base["p_value"] == pytest.approx(ref.pvalue)
    assert a_base["difference_ci"] == pytest.approx(list(ref.confidence_interval(1 - 0.05 / 3)))
    assert h["lowest"] == "a"
    assert loss_pairs(["a", "b"]) == [("a", "b")]


def test_heldout_loss_comparison_refuses_unpaired_scores() -> None:
    tokens = np.array([10, 20])
    df = scored({s: np.array([1.0, 2.0]) for s in SYSTEMS}, tokens)
    with pytest.raises(UserError, match="missing columns"):
        heldout_loss_comparison(df.drop("reference_nll"), SYSTEMS)
    other = df.with_columns(
        pl.when(pl.col("system") == "b")
        .then(pl.col("reference_tokens") + 1)
        .otherwise(pl.col("reference_tokens"))
        .alias("reference_tokens")
    )
    with pytest.raises(UserError, match="other reference tokens"):
        heldout_loss_comparison(other, SYSTEMS)
    with pytest.raises(UserError, match="not scored on every prompt"):
        heldout_loss_comparison(
            df.filter(~((pl.col("system") == "a") & (pl.col("prompt_id") == 1))), SYSTEMS
        )
    with pytest.raises(UserError, match="1 scored prompts"):
        heldout_loss_comparison(df.filter(pl.col("prompt_id") == 0), SYSTEMS)


def test_format_metrics_stage_writes_the_heldout_loss(tmp_path: Path) -> None:
    cfg = load_params(ROOT / "params.yaml", preset="demo")
    rng = np.random.default_rng(0)
    heldout, out = tmp_path / "heldout.parquet", tmp_path / "format.json"
    write_parquet(scored(no_effect(rng, 6), rng.integers(5, 50, 6)), heldout)
    run_format_metrics(cfg, heldout=heldout, metrics=out)
    h = json.loads(out.read_text())["heldout_loss"]
    assert list(h["systems"]) == SYSTEMS and len(h["pairs"]) == 3


# --------------------------------------------------------------------------- the sentence


def three_systems(seed: int, offsets: dict[str, float], noise: float, n: int = 40) -> pl.DataFrame:
    """SYSTEMS scored on n prompts of shared difficulty: per-prompt loss = difficulty +
    the system's offset + N(0, noise)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(20, 200, n)
    difficulty = rng.gamma(4, 0.5, n)
    losses = {s: difficulty + offsets[s] + rng.normal(0, noise, n) for s in SYSTEMS}
    return scored(losses, tokens)


def test_the_sentence_claims_what_the_intervals_show() -> None:
    h = heldout_loss_comparison(
        three_systems(seed=2, offsets={"base": 0.5, "a": 0.0, "b": 0.01}, noise=0.1), SYSTEMS
    )
    text = heldout_loss_sentence(h)
    a_base, b_base, a_b = h["pairs"]
    assert a_base["significant"] and b_base["significant"] and not a_b["significant"]
    assert text.startswith("SFT loss on one common held-out set (40 prompts no variant trained")
    for s in SYSTEMS:
        name = "the base model" if s == "base" else f"`{s}`"
        assert f"{name} {h['systems'][s]['mean_loss']:.3f}" in text
    low, high = a_base["difference_ci"]
    assert (
        f"`a` − the base model {a_base['difference']:+.3f} [{low:+.3f}, {high:+.3f}] (`a` lower)"
        in text
    )
    assert "`a` − `b`" in text and "(no difference shown)" in text
    # a is lowest but not shown below b: no "lowest" claim beyond the point estimate.
    assert "The lowest is `a`'s, but it is not shown below `b`'s." in text
    assert "98.3% intervals (paired t, Bonferroni over 3 pairs)" in text
    # Without the common set, train_lora's per-split losses rank nothing.
    lines = sft_conclusions({"a": {"eval_loss": 2.0}, "b": {"eval_loss": 1.5}}, {})
    assert lines == [
        "SFT: train_lora's loss of each variant on its own eval split (the splits passed "
        "different filters, so these do not rank the variants): `a` 2.000, `b` 1.500."
    ]
    assert sft_conclusions({}, {}, h)[-1] == text


def test_the_sentence_names_a_lowest_system_only_below_every_other() -> None:
    answers = three_systems(seed=3, offsets={"base": 0.5, "a": 0.0, "b": 0.8}, noise=0.05)
    text = heldout_loss_sentence(heldout_loss_comparison(answers, SYSTEMS))
    assert "`a` has the lowest loss, below every other system's." in text
    assert "(`b` higher)" in text and text.count("(`a` lower)") == 2
    assert "no difference shown" not in text


def test_under_no_effect_the_sentence_rarely_claims_a_difference() -> None:
    """Same layout as the demo (10 prompts, base + 2 variants), no true difference: the
    sentence says "lower"/"higher" or names a lowest system in at most ~5% of runs."""
    rng = np.random.default_rng(4)
    reps, claims = 600, 0
    for _ in range(reps):
        tokens = rng.integers(5, 120, 10)
        text = heldout_loss_sentence(
            heldout_loss_comparison(scored(no_effect(rng, 10), tokens), SYSTEMS)
        )
        claims += " lower)" in text or " higher)" in text or "has the lowest" in text
    assert claims / reps <= 0.065


def test_the_report_section_renders_the_loss_tables() -> None:
    """sft_eval.md.j2's held-out loss block, rendered alone (the judge section around it has
    its own tests) with the report's filters."""
    import jinja2

    from llmlab.tables import FILTERS

    rng = np.random.default_rng(5)
    answers = scored(no_effect(rng, 8), rng.integers(5, 50, 8))
    h = heldout_loss_comparison(answers, SYSTEMS)
    source = (ROOT / "src/llmlab/templates/sft_eval.md.j2").read_text(encoding="utf-8")
    block = source[source.index("{% if format_metrics.heldout_loss is defined %}") :]
    block = block[: block.index("{% endif %}") + len("{% endif %}")]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    context = {"format_metrics": {"heldout_loss": h}, "files": {"format_metrics": "f.json"}}
    text = env.from_string(block).render(**context)
    assert "**Loss on the reference answers** (`f.json`: `heldout_loss`)" in text
    assert "same 8 held-out prompts" in text
    m = h["systems"]["a"]
    assert f"| a | {m['loss']:.3f} | {m['perplexity']:.2f} | {m['mean_loss']:.3f} |" in text
    for p in h["pairs"]:
        low, high = p["difference_ci"]
        verdict = "no difference shown"
        if p["significant"]:
            verdict = p["first"] + (" lower" if p["difference"] < 0 else " higher")
        assert (
            f"| {p['first']} − {p['second']} | {p['difference']:+.3f} [{low:+.3f}, {high:+.3f}] "
            f"| {p['p_adjusted']:.3g} | {verdict} |" in text
        )
    assert "paired t interval at 98.3%, Bonferroni over\n3 pairs" in text
    assert env.from_string(block).render(format_metrics={}, files={}).strip() == ""
