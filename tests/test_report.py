"""The report's formatting, computed conclusions and run metadata, on hand-made results."""

from __future__ import annotations

from pathlib import Path

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


def _system(name, acc, kind="llm"):
    return {
        "system": name, "kind": kind, "accuracy": acc, "ci_low": acc - 0.05,
        "ci_high": acc + 0.05, "prompts_per_second": 5.0, "invalid_rate": 0.0,
    }  # fmt: skip


def _test(a, b, diff, p):
    return {"a": a, "b": b, "difference": diff, "difference_ci": [diff - 0.1, diff + 0.1],
            "mcnemar": {"p_value": p}}  # fmt: skip


def test_eval_conclusions_follow_the_numbers():
    summary = {
        "n_reviews": 100,
        "systems": [_system("m/system/0shot", 0.7), _system("tfidf", 0.9, "baseline")],
        "best_system": "tfidf",
        "best_llm": "m/system/0shot",
        "fewshot_effect": {"best": {"m": {"5shot": {"uncalibrated": _test("x", "y", 0.1, 0.01)}}}},
        "llm_vs_baseline": _test("m/system/0shot", "tfidf", -0.2, 0.2),
        "calibration_gains": [],
    }
    lines = eval_conclusions(summary)
    assert lines[0].startswith("Best system overall: `tfidf` with 90.0% accuracy")
    assert "a significant gain" in lines[2]
    assert "not significantly worse than the best baseline (`tfidf`)" in lines[3]


def test_sft_conclusions_name_the_strictest_step_and_best_variant():
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
    assert lines[1].startswith("SFT: variant `b` has the lowest held-out loss (1.500")
    assert "base model without an adapter has 2.500" in lines[1]


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
    assert "contextual calibration lowers the expected calibration error" in quality
    assert "`instruct_lm/system/5shot/balanced/vllm`) from 0.400" in quality
    assert "to 0.050" in quality and "a change of -0.350" in quality
    assert "the paired CI excludes 0" in quality
    draws = next(line for line in lines if line.startswith("Few-shot draws:"))
    assert "over 3 draws of each fixed example set" in draws
    assert "standard deviation of 3.7 pts on average over 2 settings" in draws
    assert "within the single-draw CI in every setting" in draws
    sens = next(line for line in lines if line.startswith("Prompt sensitivity:"))
    assert "worth more than the choice of model" in sens
    assert "worth less than the choice of calibration" in sens


def test_draw_sentence_with_one_draw_and_a_wide_spread():
    from llmlab.report import draw_sentence

    one = {"draws": 1, "settings": [{"n_draws": 1}], "multi_draw_settings": 0}
    assert "variance over draws was not measured" in draw_sentence(one)
    wide = {"draws": 3, "settings": [{}], "multi_draw_settings": 2, "mean_sd": 0.04,
            "max_range": 0.12, "max_range_system": "s", "mean_ci_width": 0.1,
            "range_exceeds_ci": 1}  # fmt: skip
    assert "wider than the single-draw CI in 1 of 2 settings" in draw_sentence(wide)
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
