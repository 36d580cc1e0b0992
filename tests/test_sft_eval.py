"""Held-out prompts, format-following metrics and the judged pairwise comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmlab.config import load_params
from llmlab.errors import UserError
from llmlab.io import write_parquet
from llmlab.schemas import HELDOUT_ANSWERS
from llmlab.sft_eval import (
    answer_features,
    distinct_n,
    format_metrics,
    heldout_prompts,
    judge_requests,
    judge_summary,
    read_answers,
    repeated_ngram_rate,
    script,
    unswap,
)

ROOT = Path(__file__).resolve().parents[1]


def dialogues(*pairs: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "messages": [
                [{"content": q, "role": "user"}, {"content": a, "role": "assistant"}]
                for q, a in pairs
            ]
        }
    )


def test_heldout_prompts_skip_what_any_variant_trained_on():
    train_a = dialogues(("q1", "a1"), ("q2", "a2"))
    train_b = dialogues(("q3", "a3"))
    eval_a = dialogues(("q3", "a3"), ("q4", "a4"), ("q5", "a5"))  # q3: in b's train split
    eval_b = dialogues(("q4", "a4 again"), ("q6", "a6"))
    held = heldout_prompts([train_a, train_b], [eval_a, eval_b], count=10, seed=0)
    assert sorted(held["prompt"]) == ["q4", "q5", "q6"]
    assert dict(zip(held["prompt"], held["reference"], strict=True))["q4"] == "a4"  # first seen
    assert held["prompt_id"].to_list() == [0, 1, 2]
    # Seeded and stable: the same `count` prompts whatever the order of the inputs.
    two = heldout_prompts([train_b, train_a], [eval_b, eval_a], count=2, seed=0)
    assert two["prompt"].to_list() == held["prompt"].to_list()[:2]
    assert heldout_prompts([train_a], [eval_a], count=2, seed=1)["prompt"].to_list() != []
    with pytest.raises(UserError, match="no held-out prompt"):
        heldout_prompts([eval_a], [eval_a], count=2, seed=0)


def test_answer_features_on_hand_made_answers():
    assert script("Привет, как дела?") == "cyrillic" and script("Hello there") == "latin"
    assert script("123 ...") is None
    tokens = ["a", "b", "a", "b", "a", "b"]
    assert distinct_n(tokens, 2) == pytest.approx(2 / 5)  # ab, ba, ab, ba, ab
    # 4-grams: abab, baba, abab(repeat): 1 of 3
    assert repeated_ngram_rate(tokens, 4) == pytest.approx(1 / 3)
    assert repeated_ngram_rate(["a", "b"], 4) is None

    good = answer_features("Что такое логистическая регрессия?", "Это модель классификации.", True)
    assert good["stopped"] and good["same_script"] and not good["leaked_marker"]
    assert good["words"] == 3 and good["distinct_2"] == 1.0
    english = answer_features("Что такое регрессия?", "It is a model.", True)
    assert english["same_script"] is False
    leak = answer_features("Вопрос", "Ответ<|start_header_id|>user<|end_header_id|>", False)
    assert leak["leaked_marker"] and not leak["stopped"]
    assert answer_features("Вопрос", "   ", True)["empty"]


def _answers(systems: dict[str, list[tuple[str, bool]]], prompts: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for system, answers in systems.items():
        for (pid, prompt, ref), (answer, finished) in zip(
            prompts.iter_rows(), answers, strict=True
        ):
            rows.append(
                {
                    "prompt_id": pid,
                    "prompt": prompt,
                    "reference": ref,
                    "system": system,
                    "answer": answer,
                    "new_tokens": len(answer.split()),
                    "finished": finished,
                }
            )
    return pl.DataFrame(rows).select(HELDOUT_ANSWERS)


PROMPTS = pl.DataFrame(
    {
        "prompt_id": [0, 1, 2, 3],
        "prompt": ["Вопрос один?", "Вопрос два?", "Вопрос три?", "Вопрос четыре?"],
        "reference": ["один два три", "четыре пять шесть", "семь восемь", "девять"],
    }
)


def test_format_metrics_per_system_with_cis():
    answers = _answers(
        {
            "base": [
                ("go go go go go go", False),
                ("user: hi", False),
                ("Ответ", True),
                ("", False),
            ],
            "a": [("Ответ один", True), ("Ответ два", True), ("Ответ три", True), ("x", False)],
        },
        PROMPTS,
    )
    out = format_metrics(answers, PROMPTS, resamples=200, seed=0)
    base, a = out["systems"]["base"], out["systems"]["a"]
    assert base["stopped"] == 0.25 and a["stopped"] == 0.75
    assert a["same_script"] == 0.75  # "x" is Latin
    assert base["empty"] == 0.25
    # One answer has four words or more: 3 identical 4-grams, the last two repeats.
    assert base["repeated_4gram_rate"] == pytest.approx(2 / 3)
    lo, hi = a["stopped_ci"]
    assert lo <= a["stopped"] <= hi
    assert out["reference"]["median_words"] == 2.5
    assert a["median_words"] == 2.0 and a["length_ratio_to_reference"] == pytest.approx(0.8)


def test_both_orders_are_requested_and_unswapped():
    answers = _answers(
        {s: [(f"{s}{i}", True) for i in range(4)] for s in ("base", "a", "b")}, PROMPTS
    )
    req = judge_requests(answers, PROMPTS, ["base", "a", "b"])
    assert req.height == 3 * 4 * 2
    assert req["pair"].unique(maintain_order=True).to_list() == ["base vs a", "base vs b", "a vs b"]
    swapped = req.filter(pl.col("swapped") & (pl.col("pair") == "base vs a")).row(0, named=True)
    assert swapped["system_a"] == "a" and swapped["answer_a"] == "a0"
    assert swapped["system_b"] == "base" and swapped["answer_b"] == "base0"
    assert [unswap(v, True) for v in ("A", "B", "tie", None)] == ["B", "A", "tie", None]
    assert unswap("A", False) == "A"


def _judged(plain: list[str], swap: list[str]) -> pl.DataFrame:
    n = len(plain)
    return pl.DataFrame(
        {
            "pair": ["base vs a"] * 2 * n,
            "first": ["base"] * 2 * n,
            "second": ["a"] * 2 * n,
            "prompt_id": list(range(n)) * 2,
            "swapped": [False] * n + [True] * n,
            "verdict": plain + swap,
        }
    )


def test_judge_summary_win_rate_and_position_consistency():
    # Prompt 0: base wins in both orders (A, then B once swapped); prompt 1: a wins in both;
    # prompt 2: the judge always says A (position bias): inconsistent, 1/2; prompt 3: tie.
    judged = _judged(["A", "B", "A", "tie"], ["B", "A", "A", "tie"])
    (pair,) = judge_summary(judged, resamples=200, seed=0, min_consistency=0.6)["pairs"]
    assert pair["win_rate"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert pair["position_consistency"] == pytest.approx(3 / 4) and pair["trusted"]
    assert pair["verdicts"] == {"A": 3, "B": 3, "tie": 2}
    lo, hi = pair["win_rate_ci"]
    assert lo <= pair["win_rate"] <= hi
    # A judge that always answers "A" agrees with itself never: not trusted.
    biased = judge_summary(
        _judged(["A"] * 4, ["A"] * 4), resamples=200, seed=0, min_consistency=0.6
    )
    assert biased["pairs"][0]["position_consistency"] == 0 and not biased["pairs"][0]["trusted"]
    assert biased["pairs"][0]["win_rate"] == 0.5


def test_read_answers_names_what_is_wrong(tmp_path):
    cfg = load_params(ROOT / "params.yaml", "demo")
    good = _answers({s: [("x", True)] * 4 for s in ("base", "a")}, PROMPTS)
    write_parquet(good, tmp_path / "ok.parquet")
    _, prompts, systems = read_answers(tmp_path / "ok.parquet", cfg)
    assert systems == ["base", "a"] and prompts.height == 4
    write_parquet(good.filter(pl.col("system") == "a"), tmp_path / "one.parquet")
    with pytest.raises(UserError, match="a comparison needs two systems"):
        read_answers(tmp_path / "one.parquet", cfg)
    write_parquet(good.head(6), tmp_path / "gap.parquet")
    with pytest.raises(UserError, match="did not answer every held-out prompt"):
        read_answers(tmp_path / "gap.parquet", cfg)


def test_judge_stage_on_a_tiny_model(tmp_path, tiny_llama_dir):
    """The real stage with the transformers backend: every request judged, valid verdicts."""
    from llmlab.judge import run_judge_generations

    cfg = load_params(ROOT / "params.yaml", "demo")
    answers = _answers(
        {s: [(f"Ответ {s} {i}", True) for i in range(4)] for s in ("base", "a", "b")}, PROMPTS
    )
    write_parquet(answers, tmp_path / "heldout.parquet")
    run_judge_generations(
        cfg,
        model_dir=tiny_llama_dir,
        heldout=tmp_path / "heldout.parquet",
        judgements=tmp_path / "judgements.parquet",
        judge=tmp_path / "judge.json",
    )
    judged = pl.read_parquet(tmp_path / "judgements.parquet")
    assert judged.height == 24 and set(judged["verdict"]) <= {"A", "B", "tie"}
    summary = json.loads((tmp_path / "judge.json").read_text())
    assert [p["pair"] for p in summary["pairs"]] == ["base vs a", "base vs b", "a vs b"]
    for pair in summary["pairs"]:
        assert 0 <= pair["win_rate"] <= 1 and 0 <= pair["position_consistency"] <= 1
        assert np.isclose(sum(pair["verdicts"].values()), 8)


def test_report_section_renders_the_tables_and_says_when_the_judge_is_weak():
    from llmlab.report import render

    answers = _answers(
        {s: [(f"Ответ {s} {i}", True) for i in range(4)] for s in ("base", "a")}, PROMPTS
    )
    fm = format_metrics(answers, PROMPTS, resamples=100, seed=0) | {"max_new_tokens": 64}
    weak = judge_summary(_judged(["A"] * 4, ["A"] * 4), resamples=100, seed=0, min_consistency=0.6)
    merge = {
        "dtype": "float32",
        "base": "full precision",
        "parameters": 134515008,
        "size_bytes": 538 << 20,
        "logits": {"max_abs_diff": 1.2e-5, "tolerance": {"max_abs_diff": 1e-4}},
    }
    context = {
        "format_metrics": fm,
        "judge": weak | {"judge_model": "judge_lm", "backend": "transformers"},
        "merges": {"a": merge},
        "merged_dirs": {"a": "models/merged/a"},
        "files": {"format_metrics": "f.json", "judge": "j.json"},
    }
    text = render(context, "sft_eval.md.j2")
    assert "| base | 100.0% [100.0%, 100.0%] |" in text
    assert "| base vs a | 4 | 50.0% [50.0%, 50.0%] | 4 / 4 / 0 | 0.0% | **no** |" in text
    assert "**The judge is too weak to trust here**: on base vs a" in text
    assert (
        "| a | `models/merged/a` | float32 | full precision | 134,515,008 | 538 MiB "
        "| 1.2e-05 (1e-04) |" in text
    )
    trusted = judge_summary(
        _judged(["A", "B"], ["B", "A"]), resamples=100, seed=0, min_consistency=0.6
    )
    context["judge"] = trusted | {"judge_model": "judge_lm", "backend": "transformers"}
    assert "too weak" not in render(context, "sft_eval.md.j2")
