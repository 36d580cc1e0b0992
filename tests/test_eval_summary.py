"""eval_summary on hand-made predictions: systems table, tests, markdown, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmlab.config import load_params
from llmlab.errors import UserError
from llmlab.eval.run import system_id
from llmlab.eval.summary import check_same_reviews, summarize, write_figures
from llmlab.schemas import PREDICTIONS_SCHEMA
from llmlab.tables import eval_tables

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

N = 40
GOLD = ["negative", "positive"] * (N // 2)


@pytest.fixture(scope="module")
def eval_cfg():
    return load_params(PARAMS, preset="demo").eval


def system(model, prompt, shots, strategy, backend, calibration, correct: np.ndarray, ppr=None):
    """Rows of one system that is right exactly where `correct` is True."""
    flip = {"negative": "positive", "positive": "negative"}
    pred = [g if ok else flip[g] for g, ok in zip(GOLD, correct, strict=True)]
    sid = (
        system_id(model, prompt, shots, strategy, backend, calibration) if prompt != "-" else model
    )
    return pl.DataFrame(
        {
            "system": [sid] * N,
            "model": [model] * N,
            "prompt": [prompt] * N,
            "shots": [shots] * N,
            "strategy": [strategy] * N,
            "backend": [backend] * N,
            "calibration": [calibration] * N,
            "review_id": list(range(N)),
            "gold": GOLD,
            "prediction": pred,
            "valid": [True] * N,
            "raw_output": pred,
            "label_scores": [[-0.5, -1.0]] * N,
            "seconds": [0.1] * N,
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
    assert (t["mcnemar"]["only_a"], t["mcnemar"]["only_b"]) == (0, 4)
    gains = {g["system"]: g for g in doc["calibration_gains"]}
    g0 = gains["instruct_lm/system/0shot/vllm/contextual"]
    assert g0["uncalibrated_system"] == "instruct_lm/system/0shot/vllm/none"
    assert g0["gain"] == pytest.approx(6 / N)
    assert g0["mcnemar"]["method"] == "exact" and g0["mcnemar"]["only_a"] == 6
    assert "predicted_positive_rate_calibrated" in g0
    best = doc["fewshot_effect"]["best"]["instruct_lm"]["5shot"]
    assert best["uncalibrated"]["difference"] == pytest.approx(4 / N)
    assert best["any"]["a"].endswith("5shot/balanced/vllm/contextual")
    assert len(doc["fewshot_effect"]["pairs"]) == 2
    # The report renders the tables from the summary (compute stages write no markdown).
    md = eval_tables(doc)
    assert "| tfidf | - | 0 |" in md and "Calibration" in md and "best LLM vs best baseline" in md
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
