"""The report's formatting, computed conclusions and run metadata, on hand-made results."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from llmlab.report import durations_by_rule, eval_conclusions, sft_conclusions, source_label
from llmlab.run_metadata import hardware, rule_durations
from llmlab.tables import num, pct, pts


def test_number_formats():
    assert pct(0.8567) == "85.7%"
    assert pct(None) == "–"
    assert pts(-0.05) == "-5.0 pts"
    assert num(12345) == "12,345"
    assert num(2.0) == "2"
    assert num(3.14159, 3) == "3.142"


@pytest.mark.parametrize(
    ("source", "label"),
    [
        (
            {"hub": "Qwen/Qwen2.5-3B", "revision": "3aab1f1954e9cc"},
            "`Qwen/Qwen2.5-3B` @ `3aab1f1954e9`",
        ),
        ({"path": "data/imdb.csv.gz"}, "`data/imdb.csv.gz`"),
        (
            {"gguf": ["pkg/a.gguf.part00", "pkg/a.gguf.part01"], "sha256": None},
            "`a.gguf.part00` (2 parts)",
        ),
        (
            {"synthetic": {"rows": 10, "seed": 1}},
            "synthetic, generated offline in the real schema (rows 10, seed 1)",
        ),
    ],
)
def test_source_label(source, label):
    assert source_label(source) == label


def test_durations_sum_per_rule_from_benchmark_files(tmp_path: Path):
    header = "s\th:m:s\tmax_rss\n"
    (tmp_path / "eval_llm" / "a").mkdir(parents=True)
    (tmp_path / "eval_llm" / "a" / "0shot.tsv").write_text(header + "10.0\t0:00:10\t100\n")
    (tmp_path / "eval_llm" / "a" / "5shot.tsv").write_text(header + "20.5\t0:00:20\t100\n")
    (tmp_path / "report.tsv").write_text(header + "1.0\t0:00:01\t-\n")
    rows = durations_by_rule(rule_durations(tmp_path))
    assert rows == [
        {"rule": "eval_llm", "jobs": 2, "seconds": 30.5},
        {"rule": "report", "jobs": 1, "seconds": 1.0},
    ]
    assert durations_by_rule(rule_durations(tmp_path / "absent")) == []


def test_hardware_always_has_the_keys_the_template_reads():
    info = hardware()
    assert {"platform", "python", "cpu_count", "memory_gib", "gpus"} <= set(info)


def test_eval_conclusions_follow_the_numbers():
    from llmlab.config import load_params
    from llmlab.eval.summary import summarize
    from tests.test_eval_summary import PARAMS, right, system

    predictions = pl.concat(
        [
            system("instruct_lm", "system", 0, "-", "vllm", "none", right(24)),
            system("instruct_lm", "system", 0, "-", "vllm", "contextual", right(30)),
            system("instruct_lm", "system", 5, "balanced", "vllm", "none", right(28)),
            system("instruct_lm", "system", 5, "balanced", "vllm", "contextual", right(32)),
            system("tfidf", "-", 0, "-", "tfidf", "-", right(36)),
        ]
    )
    doc, _ = summarize(predictions, load_params(PARAMS, preset="demo").eval)
    lines = eval_conclusions(doc)
    assert lines[0].startswith("Highest accuracy: `tfidf` with 90.0% (95% Wilson CI 76.9%–96.0%)")
    # Few-shot twins: 28 vs 24 and 32 vs 30 right (4 and 2 discordant reviews, one way):
    # McNemar p = 0.046 and 0.157, doubled by Bonferroni: neither is significant.
    few = next(line for line in lines if line.startswith("Few-shot vs zero-shot"))
    assert "none of the 2 differs significantly (McNemar, Bonferroni over the 2" in few
    best = next(line for line in lines if line.startswith("Few-shot, `instruct_lm`"))
    assert "+10.0 pts" in best and "descriptive" in best and "signific" not in best
    llm = next(line for line in lines if line.startswith("LLM vs baselines"))
    assert "`instruct_lm/system/5shot/balanced/vllm/contextual`" in llm
    assert "-10.0 pts" in llm and "descriptive" in llm and "signific" not in llm
    # Calibration twins: 30 vs 24 (p = 0.014 x 2 = 0.029: significant) and 32 vs 28
    # (p = 0.046 x 2 = 0.091: not), each interval at 97.5%.
    cal = next(line for line in lines if line.startswith("Calibration, each"))
    assert "1 gain and 0 lose significantly" in cal and "each interval at 97.5%" in cal
    assert "gains range from +10.0 pts to +15.0 pts" in cal
    assert not any("dominat" in line for line in lines)


def test_label_bias_sentence_counts_corrected_tests_only():
    from llmlab.report import label_bias_sentence

    rows = [
        {"difference": 0.3, "gold_positive_rate": 0.5, "significant": True},
        {"difference": -0.05, "gold_positive_rate": 0.5, "significant": False},
    ]
    doc = {"positive": "positive", "systems": rows, "family_size": 2, "biased": 1,
           "towards_positive": 1}  # fmt: skip
    text = label_bias_sentence(doc)
    assert text.startswith(
        "Label preference: 1 of the 2 uncalibrated LLM systems predict `positive` "
        "significantly more often than the reviews carry it and 0 significantly less often"
    )
    assert "range from 45.0% to 80.0%, against 50.0% of the reviews" in text
    none = label_bias_sentence(doc | {"biased": 0, "towards_positive": 0})
    assert "none of the 2 uncalibrated LLM systems" in none


def test_sft_conclusions_name_the_strictest_step_and_rank_no_variant_by_own_splits():
    funnel = {
        "input_rows": 100,
        "steps": [
            {"step": "language", "enabled": True, "rows": 80, "removed": 20},
            {"step": "opus_score", "enabled": True, "rows": 30, "removed": 50},
            {"step": "sample", "enabled": True, "rows": 25, "removed": 5},
        ],
    }
    metrics = {
        "a": {"eval_loss": 2.0, "perplexity": 7.39, "base_eval_loss": 2.5},
        "b": {"eval_loss": 1.5, "perplexity": 4.48, "base_eval_loss": 2.5},
    }
    lines = sft_conclusions(metrics, {"a": funnel})
    assert "30 of 100 dialogues pass the filters, 25 are sampled" in lines[0]
    assert "`opus_score` (−50 rows)" in lines[0]
    # Each variant's eval_loss is on its own eval split (other filters): no ranking from it.
    # The comparison on one common held-out set: tests/test_heldout_loss.py.
    assert "on its own eval split" in lines[1] and "do not rank the variants" in lines[1]
    assert "`a` 2.000, `b` 1.500" in lines[1]
    assert "lowest" not in lines[1] and "base model" not in lines[1]


# --------------------------------------------------------------------------- evaluation analysis


@pytest.fixture(scope="module")
def analysed():
    """The summary of the eval_summary tests' toy: draws, probabilities, baselines, reviews."""
    from llmlab.config import load_params
    from llmlab.eval.summary import summarize
    from tests.test_eval_summary import PARAMS, REVIEWS, toy_with_draws

    doc, _ = summarize(toy_with_draws(), load_params(PARAMS, preset="demo").eval, REVIEWS)
    return doc


def test_conclusions_include_calibration_quality_and_draw_variance(analysed):
    lines = eval_conclusions(analysed)
    quality = next(line for line in lines if line.startswith("Calibration quality:"))
    assert "best LLM setting (`instruct_lm/system/5shot/balanced/vllm`)" in quality
    assert (
        "debiased L2 calibration error of P(positive) (Kumar et al. 2019; 6 equal-width" in quality
    )
    assert "is 0.392 (95% CI " in quality and "and 0.000 (95% CI 0.000–" in quality
    assert "squared calibration error is -0.1595 (paired 98.75% CI " in quality
    assert "Bonferroni over 4 calibration changes" in quality
    assert "the CI excludes 0, so contextual calibration lowers the calibration error" in quality
    assert "4 have a lower estimate (descriptive); 2 are significantly lower and 0" in quality
    draws = next(line for line in lines if line.startswith("Few-shot draws:"))
    assert "over 3 draws of each fixed example set" in draws
    assert "standard deviation of 3.7 pts on average over 2 settings" in draws
    assert "in none of the 2 settings does the draw change accuracy significantly" in draws
    assert "(Cochran's Q over the draws on the same reviews, Bonferroni over the 2)" in draws
    sens = next(line for line in lines if line.startswith("Prompt sensitivity:"))
    assert "not ranked" in sens and "dominat" not in sens


def test_calibration_quality_sentence_follows_its_ci():
    from llmlab.report import calibration_quality_sentence

    q = {"calibration": "contextual", "uncalibrated_system": "m/p/0shot/vllm/none",
         "view": "P(positive)", "bins": 6, "ce_l2_uncalibrated": 0.2,
         "ce_l2_uncalibrated_ci": [0.1, 0.3], "ce_l2_calibrated": 0.15,
         "ce_l2_calibrated_ci": [0.0, 0.25], "ce_squared_change": -0.0175,
         "ce_squared_change_ci": [-0.04, 0.005], "ce_level": 1 - 0.05 / 12, "family_size": 12,
         "brier_uncalibrated": 0.2, "brier_calibrated": 0.19, "log_loss_uncalibrated": 0.6,
         "log_loss_calibrated": 0.58, "systems_compared": 12, "systems_lower_ce": 9,
         "systems_lower_ce_significant": 0, "systems_higher_ce_significant": 0}  # fmt: skip
    text = calibration_quality_sentence(q)
    # A CI that includes 0 never reads as a change, whatever the sign of the estimate.
    assert "the CI includes 0: not distinguishable from no change" in text
    assert "lowers" not in text and "raises" not in text and "excludes" not in text
    assert "(paired 99.58% CI -0.0400 to +0.0050, Bonferroni over 12 calibration changes)" in text
    assert "9 have a lower estimate (descriptive); 0 are significantly lower and 0" in text
    above = calibration_quality_sentence(q | {"ce_squared_change": 0.02,
                                             "ce_squared_change_ci": [0.001, 0.04],
                                             "family_size": 1, "ce_level": 0.95})  # fmt: skip
    assert "the CI excludes 0, so contextual calibration raises the calibration error" in above
    assert "(paired 95% CI +0.0010 to +0.0400)" in above and "Bonferroni" not in above
    assert calibration_quality_sentence(None) is None


def test_draw_sentence_with_one_draw_and_a_wide_spread():
    from llmlab.report import draw_sentence

    one = {"draws": 1, "settings": [{"n_draws": 1}], "multi_draw_settings": 0}
    assert "variance over draws was not measured" in draw_sentence(one)
    wide = {"draws": 3, "settings": [{}], "multi_draw_settings": 2, "mean_sd": 0.04,
            "max_range": 0.12, "max_range_system": "s", "mean_ci_width": 0.1,
            "range_exceeds_ci": 1, "draw_effect_significant": 1}  # fmt: skip
    assert "the draw changes accuracy significantly in 1 of 2 settings" in draw_sentence(wide)
    assert draw_sentence(None) is None


def test_report_renders_the_analysis_sections(analysed):
    from llmlab.report import eval_table_file, render
    from llmlab.tables import draws_table, errors_tables, probability_tables, sensitivity_table

    tables = {
        "eval_table": "### All systems\n",
        "probability_table": probability_tables(analysed),
        "draws_table": draws_table(analysed),
        "sensitivity_table": sensitivity_table(analysed),
        "errors_table": errors_tables(analysed),
    }
    figures = {r["figure"]: f"figures/eval/{r['figure']}.png" for r in analysed["reliability"]}
    text = render(
        {"eval": analysed, "eval_figures": figures,
         "files": {"eval_summary": "../results/eval/summary.json"}, **tables},
        "eval_analysis.md.j2",
    )  # fmt: skip
    for heading in ("### Do the label probabilities mean anything?", "### Probability quality",
                    "## Variance over few-shot draws", "## Prompt sensitivity",
                    "## Error analysis", "### The 10 reviews most systems get wrong",
                    "Cohen's kappa"):  # fmt: skip
        assert heading in text, heading
    for model in ("instruct_lm", "base_lm"):
        assert f"![Reliability diagram of {model}](figures/eval/reliability_{model}.png)" in text
    assert "*Figure: reliability of `instruct_lm` at its best setting " in text
    assert "(`instruct_lm/system/5shot/balanced/vllm`), none vs contextual" in text
    assert "`eval.fewshot.draws` = 3 times" in text
    report = (Path(__file__).parents[1] / "src/llmlab/templates/report.md.j2").read_text()
    assert '{% include "eval_analysis.md.j2" %}' in report
    # reports/tables/eval.md holds the systems tables and then every analysis table.
    md = eval_table_file(tables)
    assert md.index("### All systems") < md.index("### Probability quality")
    assert md.index("### Probability quality") < md.index("### Variance over few-shot draws")
    assert md.rstrip().endswith("|")  # the kappa table closes it
