"""Metrics and paired tests against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from statsmodels.stats.proportion import proportion_confint

from llmlab.errors import UserError
from llmlab.eval.metrics import (
    INVALID,
    bootstrap_ci,
    paired_comparison,
    system_metrics,
)
from llmlab.schemas import PREDICTIONS_SCHEMA

LABELS = ["negative", "positive"]


def frame(gold: list[str], pred: list[str | None], seconds: float = 0.5) -> pl.DataFrame:
    n = len(gold)
    return pl.DataFrame(
        {
            "system": ["s"] * n,
            "model": ["m"] * n,
            "prompt": ["p"] * n,
            "shots": [0] * n,
            "strategy": ["-"] * n,
            "draw": [0] * n,
            "backend": ["vllm"] * n,
            "calibration": ["none"] * n,
            "review_id": list(range(n)),
            "gold": gold,
            "prediction": pred,
            "valid": [p is not None for p in pred],
            "raw_output": [p or "maybe" for p in pred],
            "label_scores": [[-0.7, -0.7]] * n,
            "seconds": [seconds] * n,
            "review_tokens": [None] * n,
        },
        schema=PREDICTIONS_SCHEMA,
    )


def test_system_metrics_hand_computed():
    gold = ["negative", "negative", "positive", "positive", "positive"]
    pred = ["negative", "positive", "positive", None, "positive"]
    m = system_metrics(frame(gold, pred), LABELS)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(0.6)  # the invalid row counts as wrong
    # negative: P=1/1, R=1/2 -> F1=2/3; positive: P=2/3, R=2/3 -> F1=2/3
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["invalid"] == 1 and m["invalid_rate"] == pytest.approx(0.2)
    assert m["predicted_positive_rate"] == pytest.approx(0.6)
    assert m["predicted_rates"] == {"negative": pytest.approx(0.2), "positive": pytest.approx(0.6)}
    assert m["confusion"]["columns"] == [*LABELS, INVALID]
    assert m["confusion"]["counts"] == [[1, 1, 0], [0, 2, 1]]
    assert m["seconds"] == pytest.approx(2.5)
    assert m["prompts_per_second"] == pytest.approx(2.0)
    # Wilson's interval (statsmodels as the independent reference), not a bootstrap.
    assert m["accuracy_ci"] == pytest.approx(list(proportion_confint(3, 5, method="wilson")))


def test_system_metrics_rejects_bad_rows():
    with pytest.raises(UserError, match="gold labels"):
        system_metrics(frame(["neutral"], ["positive"]), LABELS)
    bad = frame(["positive"], ["positive"]).with_columns(prediction=pl.lit("Positive"))
    with pytest.raises(UserError, match="marked valid"):
        system_metrics(bad, LABELS)


def test_bootstrap_ci_is_seeded_and_degenerate_when_constant():
    values = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1], dtype=float)
    a = bootstrap_ci(values, resamples=1000, seed=7)
    assert a == bootstrap_ci(values, resamples=1000, seed=7)
    assert a[0] < values.mean() < a[1]
    assert bootstrap_ci(np.ones(50), resamples=200, seed=0) == (1.0, 1.0)
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([]), resamples=10, seed=0))


def test_paired_comparison_joins_on_review_id():
    gold = ["negative", "positive", "positive", "negative"]
    a = frame(gold, ["negative", "positive", "positive", "negative"])
    b = frame(gold, ["negative", "negative", None, "negative"]).reverse()  # order must not matter
    r = paired_comparison(a, b)
    assert r["accuracy_a"] == 1.0 and r["accuracy_b"] == 0.5
    assert r["difference"] == pytest.approx(0.5)
    assert (r["only_a"], r["only_b"]) == (2, 0)
    # McNemar's score test: (2 - 0)^2 / 2 = 2 -> p = 0.157; the interval agrees (contains 0).
    assert r["p_value"] == pytest.approx(0.1573, abs=1e-4) and not r["significant"]
    assert r["difference_ci"][0] < 0 < r["difference_ci"][1]
    with pytest.raises(UserError, match="differ on"):
        paired_comparison(a, b.head(3))
