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
