"""Calibrating label scores: every method subtracts a per-label log bias before the argmax.

Scores are log-probabilities of the labels normalized over the label set (`label_scores`).
- `contextual` (Zhao et al., 2021, "Calibrate Before Use"): the bias is the log of the mean
  label distribution the model gives content-free inputs ("N/A", "", a placeholder) under the
  same prompt and examples, i.e. its prior; dividing the prior out is subtracting its log.
- `threshold` (two labels): the bias moves the decision point of positive-minus-negative
  score to the threshold that maximizes accuracy on a held-out train slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp


def normalize(scores: np.ndarray) -> np.ndarray:
    """Log-softmax over the label axis (last), so rows are log-probabilities over the labels."""
    return log_softmax(np.asarray(scores, dtype=np.float64), axis=-1)


def contextual_bias(content_free_scores: np.ndarray) -> np.ndarray:
    """Log prior of the labels: log of the mean normalized probability over content-free rows.

    `content_free_scores` is (inputs, labels), or (queries, inputs, labels) when each query
    has its own examples (`similar`), giving one bias per query.
    """
    logp = normalize(content_free_scores)
    n = logp.shape[-2]
    return normalize(logsumexp(logp, axis=-2) - np.log(n))


def fit_threshold_bias(scores: np.ndarray, gold: Sequence[int]) -> np.ndarray:
    """Bias [0, t] for two labels: predict label 1 when score1 - score0 > t.

    `t` maximizes accuracy on the given (held-out) rows; it is a midpoint between adjacent
    distinct score differences, and among equally good ones the one nearest 0 (the smallest
    change from the uncalibrated decision).
    """
    logp = normalize(scores)
    if logp.shape[-1] != 2:
        raise ValueError(f"fit_threshold_bias: needs two labels, got {logp.shape[-1]}")
    gold = np.asarray(gold)
    diff = logp[:, 1] - logp[:, 0]
    order = np.argsort(diff, kind="stable")
    d, g = diff[order], gold[order]
    # Cut i: rows [0, i) predicted 0, rows [i, n) predicted 1.
    zeros_before = np.concatenate([[0], np.cumsum(g == 0)])
    ones_from = np.concatenate([np.cumsum((g == 1)[::-1])[::-1], [0]])
    correct = zeros_before + ones_from
    n = d.size
    cuts = np.arange(n + 1)
    # A cut between two equal differences cannot be realized by a threshold.
    realizable = np.ones(n + 1, dtype=bool)
    realizable[1:n] = d[1:] > d[:-1]
    lower = np.concatenate([[d[0] - 1.0], d]) if n else np.array([-1.0])
    upper = np.concatenate([d, [d[-1] + 1.0]]) if n else np.array([1.0])
    thresholds = (lower + upper) / 2.0
    best = correct[realizable].max()
    candidates = cuts[realizable & (correct == best)]
    t = thresholds[candidates[np.argmin(np.abs(thresholds[candidates]))]]
    return np.array([0.0, float(t)])


def apply_bias(scores: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Calibrated, renormalized label log-scores: normalize(normalize(scores) - bias)."""
    return normalize(normalize(scores) - bias)


def argmax_labels(scores: np.ndarray, labels: Sequence[str]) -> list[str]:
    """The label with the highest score per row (the first one on exact ties)."""
    return [labels[i] for i in np.argmax(np.asarray(scores), axis=-1)]
