"""Calibration math on hand-made scores, and a biased toy scorer corrected end to end."""

from __future__ import annotations

import numpy as np
import pytest

from llmlab.eval.calibration import (
    apply_bias,
    argmax_labels,
    contextual_bias,
    fit_threshold_bias,
    normalize,
)

LABELS = ["negative", "positive"]


def test_contextual_bias_is_log_of_mean_content_free_probability():
    cf = np.log([[0.8, 0.2], [0.6, 0.4]])
    np.testing.assert_allclose(np.exp(contextual_bias(cf)), [0.7, 0.3])
    # Unnormalized scores give the same prior (only differences between labels matter).
    np.testing.assert_allclose(contextual_bias(cf + 5.0), contextual_bias(cf))
    # A query scored 0.6/0.4 is negative before and positive after dividing out 0.7/0.3.
    query = np.log([[0.6, 0.4]])
    calibrated = apply_bias(query, contextual_bias(cf))
    expected = np.array([0.6 / 0.7, 0.4 / 0.3])
    np.testing.assert_allclose(np.exp(calibrated[0]), expected / expected.sum())
    assert argmax_labels(query, LABELS) == ["negative"]
    assert argmax_labels(calibrated, LABELS) == ["positive"]


def test_contextual_bias_per_query():
    cf = np.log([[[0.9, 0.1], [0.9, 0.1]], [[0.5, 0.5], [0.3, 0.7]]])  # 2 queries x 2 inputs
    bias = contextual_bias(cf)
    assert bias.shape == (2, 2)
    np.testing.assert_allclose(np.exp(bias), [[0.9, 0.1], [0.4, 0.6]])


def test_threshold_fit_hand_computed():
    # positive-minus-negative differences and gold labels: the best cut is between -2 and -1
    diffs = np.array([-3.0, -2.0, -1.0, 0.5, 1.0])
    scores = np.stack([np.zeros(5), diffs], axis=1)
    bias = fit_threshold_bias(scores, [0, 0, 1, 1, 1])
    np.testing.assert_allclose(bias, [0.0, -1.5])
    assert argmax_labels(apply_bias(scores, bias), LABELS) == LABELS[:1] * 2 + LABELS[1:] * 3


def test_threshold_prefers_the_smallest_change_and_ignores_unrealizable_cuts():
    # Perfectly separated at 0 already: every cut in (-1, 1) is optimal, t = 0 is kept.
    scores = np.stack([np.zeros(4), np.array([-2.0, -1.0, 1.0, 2.0])], axis=1)
    np.testing.assert_allclose(fit_threshold_bias(scores, [0, 0, 1, 1]), [0.0, 0.0])
    # Equal differences with different gold labels cannot be split by any threshold.
    scores = np.stack([np.zeros(3), np.array([1.0, 1.0, 3.0])], axis=1)
    t = fit_threshold_bias(scores, [0, 1, 1])[1]
    assert t < 1.0  # both tied rows predicted positive (2 of 3 right), not split between them


def test_biased_toy_scorer_is_corrected():
    """A scorer that favours `negative` by a constant gets its accuracy back."""
    rng = np.random.default_rng(0)
    evidence = rng.normal(size=400)  # > 0 means positive
    gold = (evidence > 0).astype(int)

    def scorer(x: np.ndarray) -> np.ndarray:  # log-odds x, plus a strong pull to negative
        return np.stack([np.full_like(x, 2.5), x], axis=-1)

    raw = scorer(evidence)
    raw_pred = np.argmax(raw, axis=1)
    assert raw_pred.mean() < 0.1  # almost always "negative"
    prior = contextual_bias(scorer(np.zeros(3)))  # content-free inputs carry no evidence
    calibrated = np.argmax(apply_bias(raw, prior), axis=1)
    assert (calibrated == gold).mean() == 1.0
    held_out = rng.normal(size=200)
    bias = fit_threshold_bias(scorer(held_out), (held_out > 0).astype(int))
    assert (np.argmax(apply_bias(raw, bias), axis=1) == gold).mean() > 0.97


def test_normalize_rows_sum_to_one():
    p = np.exp(normalize(np.array([[1.0, 3.0], [-np.inf, 0.0]])))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[1, 0] == 0.0
    with pytest.raises(ValueError):
        fit_threshold_bias(np.zeros((2, 3)), [0, 1])
