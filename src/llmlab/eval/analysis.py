"""Variance, sensitivity and error analysis of the predictions tables (PREDICTIONS_SCHEMA).

- spread over few-shot draws: how much one setting's accuracy moves when only the in-context
  examples are redrawn;
- prompt sensitivity: accuracy spread across prompts x strategies x draws per (model, shots,
  calibration), and which choice (prompt, model, calibration) moves accuracy most;
- error analysis: accuracy by review length and by truncation, the reviews most systems get
  wrong, and Cohen's kappa between systems.

As in `llmlab.eval.metrics`, an invalid prediction counts as wrong and, in agreement
statistics, as its own category "<invalid>" (never mapped to a label).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from llmlab.errors import UserError
from llmlab.eval.metrics import INVALID, bootstrap_ci

# The columns that identify a system's setting (the `system` id is built from them).
SETTING_KEYS = ("model", "prompt", "shots", "strategy", "backend", "calibration")
# Factors of the sensitivity analysis. `backend` is not one: a model is run with one backend,
# so it counts as part of the model (keeping it would leave no two models to compare when
# they use different backends).
FACTOR_KEYS = ("model", "prompt", "shots", "strategy", "calibration")
NO_PROMPT = "-"  # the `prompt` of baseline rows
DEFAULT_LENGTH_EDGES = (0, 128, 256, 512, 1024)
# How each factor is named in the generated conclusion.
FACTOR_NAMES = {
    "prompt": "prompts",
    "model": "models",
    "calibration": "calibration methods",
    "strategy": "few-shot strategies",
    "shots": "shot counts",
    "draw": "few-shot draws",
}

_CORRECT = (pl.col("valid").fill_null(False) & (pl.col("prediction") == pl.col("gold"))).fill_null(
    False
)
_PREDICTED = (
    pl.when(pl.col("valid").fill_null(False)).then(pl.col("prediction")).otherwise(pl.lit(INVALID))
)
_WS = re.compile(r"\s+")
_BR = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)


# --------------------------------------------------------------------------- accuracies


def system_accuracy(predictions: pl.DataFrame, *, extra_keys: Sequence[str] = ()) -> pl.DataFrame:
    """One row per system: system, SETTING_KEYS..., `extra_keys` (e.g. "draw"), n, accuracy.

    Invalid predictions are wrong. The input of `draw_spread_table` and `prompt_sensitivity`.
    """
    keys = ["system", *SETTING_KEYS, *extra_keys]
    return (
        predictions.with_columns(_correct=_CORRECT)
        .group_by(keys, maintain_order=True)
        .agg(n=pl.len().cast(pl.Int64), accuracy=pl.col("_correct").mean())
        .sort(keys)
    )


def draw_spread(accuracies: Sequence[float]) -> dict[str, Any]:
    """n_draws, mean, sd (sample sd, ddof=1; None for one draw), min, max, range of one
    setting's per-draw accuracies."""
    x = np.asarray(accuracies, dtype=np.float64)
    if x.size == 0:
        raise ValueError("draw_spread: no accuracies")
    return {
        "n_draws": int(x.size),
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if x.size > 1 else None,
        "min": float(x.min()),
        "max": float(x.max()),
        "range": float(x.max() - x.min()),
    }


def draw_spread_table(
    accuracies: pl.DataFrame,
    *,
    setting: Sequence[str] = SETTING_KEYS,
    value: str = "accuracy",
) -> pl.DataFrame:
    """Per setting (the `setting` columns): n_draws, mean, sd (ddof=1, null for one draw), min,
    max, range of `value` over its rows, one row per few-shot draw. Sorted by setting."""
    setting = list(setting)
    v = pl.col(value)
    return (
        accuracies.group_by(setting)
        .agg(
            n_draws=pl.len().cast(pl.Int64),
            mean=v.mean(),
            sd=v.std(ddof=1),
            min=v.min(),
            max=v.max(),
            range=v.max() - v.min(),
        )
        .with_columns(sd=pl.when(pl.col("n_draws") > 1).then(pl.col("sd")))
        .sort(setting)
    )


# --------------------------------------------------------------------------- sensitivity


def factor_spread(
    accuracies: pl.DataFrame,
    factor: str,
    *,
    keys: Sequence[str],
    value: str = "accuracy",
) -> dict[str, Any]:
    """Spread of `value` attributable to `factor`: rows are grouped by every other key, the
    range (max - min) across the factor's levels is taken in each group with at least two
    levels, and `spread` is the mean of those ranges (None when no group varies the factor).

    Returns factor, spread, groups (groups averaged), levels (distinct values overall).
    """
    others = [k for k in keys if k != factor and k in accuracies.columns]
    levels = accuracies[factor].n_unique() if factor in accuracies.columns else 0
    if levels < 2:
        return {"factor": factor, "spread": None, "groups": 0, "levels": levels}
    aggs = {
        "levels": pl.col(factor).n_unique(),
        "range": pl.col(value).max() - pl.col(value).min(),
    }
    # With no other key the whole table is one group.
    grouped = accuracies.group_by(others).agg(**aggs) if others else accuracies.select(**aggs)
    grouped = grouped.filter(pl.col("levels") >= 2)
    spread = float(grouped["range"].mean()) if grouped.height else None
    return {"factor": factor, "spread": spread, "groups": grouped.height, "levels": levels}


def _pp(x: float) -> str:
    return f"{100 * x:.1f} percentage points"


def sensitivity_conclusion(spreads: Sequence[dict[str, Any]], *, dominance: float = 1.5) -> str:
    """One sentence from `factor_spread` results: the factor whose spread is at least
    `dominance` times every other one "dominates"; otherwise none does."""
    measured = sorted(
        (s for s in spreads if s["spread"] is not None), key=lambda s: -s["spread"]
    )  # sorted() is stable: equal spreads keep the order of `spreads`
    unmeasured = [
        FACTOR_NAMES.get(s["factor"], s["factor"]) for s in spreads if s["spread"] is None
    ]
    note = f" ({' and '.join(unmeasured)} not varied)" if unmeasured else ""
    if not measured:
        return "No factor was varied on otherwise equal settings; no sensitivity can be measured."

    def across(s: dict[str, Any]) -> str:
        return f"{_pp(s['spread'])} across {FACTOR_NAMES.get(s['factor'], s['factor'])}"

    top = measured[0]
    if len(measured) == 1:
        return (
            f"Only the {top['factor']} choice could be compared: accuracy moves by "
            f"{across(top)} on average{note}."
        )
    if top["spread"] == 0:
        return f"No choice moves accuracy: every spread is 0{note}."
    rest = measured[1:]
    if top["spread"] >= dominance * rest[0]["spread"]:
        return (
            f"The {top['factor']} choice dominates: accuracy moves by {across(top)} on average, "
            f"against {' and '.join(across(s) for s in rest)}{note}."
        )
    return (
        f"No single choice dominates (the largest spread is under {dominance:g}x the next): "
        f"{', '.join(across(s) for s in measured)}{note}."
    )


def dominant_factor(spreads: Sequence[dict[str, Any]], *, dominance: float = 1.5) -> str | None:
    """The factor `sensitivity_conclusion` says dominates, or None."""
    measured = sorted((s for s in spreads if s["spread"] is not None), key=lambda s: -s["spread"])
    if len(measured) < 2 or measured[0]["spread"] == 0:
        return None
    ok = measured[0]["spread"] >= dominance * measured[1]["spread"]
    return measured[0]["factor"] if ok else None


def prompt_sensitivity(
    accuracies: pl.DataFrame,
    *,
    by: Sequence[str] = ("model", "shots", "calibration"),
    factors: Sequence[str] = ("prompt", "model", "calibration"),
    keys: Sequence[str] = (*FACTOR_KEYS, "draw"),
    value: str = "accuracy",
    dominance: float = 1.5,
) -> dict[str, Any]:
    """Accuracy spread across prompts x strategies x draws, and which choice matters most.

    `accuracies`: one row per system (and draw), e.g. `system_accuracy`; baseline rows
    (prompt "-") are dropped. Few-shot draws must be told apart by a column in `keys` (e.g.
    "draw"), otherwise their rows are pooled into the factor ranges. Calibration is in `by`
    because it is a factor of its own; pass by=("model", "shots") to pool over it.

    Returns:
      table: per `by` group: n_systems, n_prompts, n_strategies, min, max, mean, sd (ddof=1,
        null for one row), range of `value`;
      factors: factor, spread, groups, levels (see `factor_spread`: mean over the settings of
        the other keys of the range across the factor's levels);
      dominant: the factor with spread >= `dominance` x every other, or None;
      conclusion: one sentence generated from `factors`.
    """
    llm = accuracies.filter(pl.col("prompt") != NO_PROMPT)
    if llm.is_empty():
        raise UserError("prompt_sensitivity: no LLM rows (every row has prompt '-')")
    v = pl.col(value)
    table = (
        llm.group_by(list(by))
        .agg(
            n_systems=pl.len().cast(pl.Int64),
            n_prompts=pl.col("prompt").n_unique().cast(pl.Int64),
            n_strategies=pl.col("strategy").n_unique().cast(pl.Int64),
            min=v.min(),
            max=v.max(),
            mean=v.mean(),
            sd=v.std(ddof=1),
            range=v.max() - v.min(),
        )
        .sort(list(by))
    )
    present = [k for k in keys if k in llm.columns]
    spreads = [factor_spread(llm, f, keys=present, value=value) for f in factors]
    return {
        "table": table,
        "factors": pl.DataFrame(
            spreads,
            schema={
                "factor": pl.Utf8,
                "spread": pl.Float64,
                "groups": pl.Int64,
                "levels": pl.Int64,
            },
        ),
        "dominant": dominant_factor(spreads, dominance=dominance),
        "conclusion": sensitivity_conclusion(spreads, dominance=dominance),
    }


# --------------------------------------------------------------------------- errors


def _with_reviews(
    predictions: pl.DataFrame, reviews: pl.DataFrame, column: str, where: str
) -> pl.DataFrame:
    """Predictions (system, review_id, correct) joined with `reviews[column]`; every scored
    review must be in `reviews` exactly once and have a value."""
    if column not in reviews.columns:
        raise UserError(f"{where}: the reviews table has no column {column!r}")
    if reviews["review_id"].is_duplicated().any():
        raise UserError(f"{where}: the reviews table has duplicate review_id values")
    joined = predictions.select("system", "review_id", correct=_CORRECT).join(
        reviews.select("review_id", column), on="review_id", how="left"
    )
    missing = joined.filter(pl.col(column).is_null())
    if missing.height:
        raise UserError(
            f"{where}: {missing['review_id'].n_unique()} scored reviews have no {column!r} "
            f"(e.g. review_id {missing['review_id'][0]})"
        )
    return joined


def _with_ci(
    joined: pl.DataFrame, keys: Sequence[str], resamples: int | None, seed: int
) -> pl.DataFrame:
    """Per `keys` group: n, accuracy and, with `resamples`, its bootstrap 95% CI (ci_low,
    ci_high; the resamples of `llmlab.eval.metrics.bootstrap_ci` with this seed)."""
    keys = list(keys)
    grouped = joined.group_by(keys).agg(
        n=pl.len().cast(pl.Int64), accuracy=pl.col("correct").mean(), _c=pl.col("correct")
    )
    if resamples is None:
        return grouped.drop("_c")
    cis = [
        bootstrap_ci(np.asarray(c, dtype=np.float64), resamples=resamples, seed=seed)
        for c in grouped["_c"].to_list()
    ]
    return grouped.drop("_c").with_columns(
        ci_low=pl.Series([c[0] for c in cis], dtype=pl.Float64),
        ci_high=pl.Series([c[1] for c in cis], dtype=pl.Float64),
    )


def accuracy_by_length(
    predictions: pl.DataFrame,
    reviews: pl.DataFrame,
    *,
    length_col: str = "tokens",
    edges: Sequence[int] = DEFAULT_LENGTH_EDGES,
    resamples: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Per system and length bucket: system, bucket (0-based), lower, upper (null for the last,
    open bucket), label ("[lower, upper)" / "[lower, inf)"), n, accuracy, and with
    `resamples` its bootstrap 95% CI (ci_low, ci_high).

    Buckets are [edges[i], edges[i+1]) plus [edges[-1], inf); a length below edges[0] is an
    error. `reviews` has review_id and `length_col` (token or word count). Buckets no review
    falls in are absent.
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.size == 0 or (np.diff(e) <= 0).any():
        raise ValueError(f"accuracy_by_length: edges must be strictly increasing, got {edges}")
    joined = _with_reviews(predictions, reviews, length_col, "accuracy_by_length")
    lengths = joined[length_col].to_numpy().astype(np.float64)
    if (lengths < e[0]).any():
        raise UserError(f"accuracy_by_length: a {length_col!r} value is below edges[0]={e[0]:g}")
    bucket = np.searchsorted(e, lengths, side="right") - 1
    lower = [int(x) if float(x).is_integer() else float(x) for x in edges]
    labels = [
        f"[{lower[i]}, {lower[i + 1]})" if i + 1 < len(lower) else f"[{lower[i]}, inf)"
        for i in range(len(lower))
    ]
    buckets = pl.DataFrame(
        {
            "bucket": np.arange(e.size, dtype=np.int64),
            "lower": e,
            "upper": [*e[1:].tolist(), None],
            "label": labels,
        },
        schema={"bucket": pl.Int64, "lower": pl.Float64, "upper": pl.Float64, "label": pl.Utf8},
    )
    ci = ["ci_low", "ci_high"] if resamples is not None else []
    grouped = _with_ci(
        joined.with_columns(bucket=pl.Series(bucket, dtype=pl.Int64)),
        ["system", "bucket"],
        resamples,
        seed,
    )
    return (
        grouped.join(buckets, on="bucket")
        .select("system", "bucket", "lower", "upper", "label", "n", "accuracy", *ci)
        .sort("system", "bucket")
    )


def accuracy_by_truncation(
    predictions: pl.DataFrame,
    reviews: pl.DataFrame,
    *,
    truncated_col: str = "truncated",
    resamples: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Per system: system, truncated (bool), n, accuracy, and with `resamples` its bootstrap
    95% CI (ci_low, ci_high); `reviews` has review_id and the boolean `truncated_col` (the
    review was cut to fit the prompt budget)."""
    joined = _with_reviews(predictions, reviews, truncated_col, "accuracy_by_truncation")
    ci = ["ci_low", "ci_high"] if resamples is not None else []
    return (
        _with_ci(joined, ["system", truncated_col], resamples, seed)
        .rename({truncated_col: "truncated"})
        .select("system", "truncated", "n", "accuracy", *ci)
        .sort("system", "truncated")
    )


def snippet(text: str | None, chars: int) -> str | None:
    """The first `chars` characters of a review, HTML breaks and whitespace collapsed to one
    space, with "…" when cut."""
    if text is None:
        return None
    flat = _WS.sub(" ", _BR.sub(" ", text)).strip()
    return flat if len(flat) <= chars else flat[: max(0, chars - 1)].rstrip() + "…"


def hardest_reviews(
    predictions: pl.DataFrame,
    reviews: pl.DataFrame | None = None,
    *,
    k: int = 10,
    text_col: str = "review",
    snippet_chars: int = 200,
) -> pl.DataFrame:
    """The k reviews the most systems get wrong (invalid = wrong), among those at least one
    system got wrong.

    Ranked by `wrong` descending, ties broken by review_id ascending (stable and independent
    of row order). A system's *family* is its `model` (the LLM model key, or the baseline name).

    Columns: rank (1-based), review_id, gold, wrong (systems wrong), systems (systems that
    scored it), wrong_share, votes (readable: "family w/s wrong (label n, ...)" per family,
    families and predictions sorted by name, "<invalid>" last), family_votes
    (list of {family, prediction, count}, same order), snippet (first `snippet_chars`
    characters of `reviews[text_col]`; null without `reviews`).
    """
    rows = predictions.select(
        "review_id", "gold", family=pl.col("model"), predicted=_PREDICTED, correct=_CORRECT
    )
    golds = rows.group_by("review_id").agg(pl.col("gold").n_unique())
    if (golds["gold"] > 1).any():
        raise UserError("hardest_reviews: systems disagree on the gold label of a review")
    per_review = (
        rows.group_by("review_id")
        .agg(
            gold=pl.col("gold").first(),
            wrong=(~pl.col("correct")).sum().cast(pl.Int64),
            systems=pl.len().cast(pl.Int64),
        )
        .filter(pl.col("wrong") > 0)
        .sort(["wrong", "review_id"], descending=[True, False])
        .head(k)
        .with_columns(
            rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
            wrong_share=pl.col("wrong") / pl.col("systems"),
        )
    )
    picked = rows.filter(pl.col("review_id").is_in(per_review["review_id"].implode()))
    votes = (
        picked.group_by("review_id", "family", "predicted")
        .agg(count=pl.len().cast(pl.Int64), wrong=(~pl.col("correct")).sum().cast(pl.Int64))
        .with_columns(_last=pl.col("predicted") == INVALID)
        .sort("review_id", "family", "_last", "predicted")
    )
    text: dict[int, str] = {}
    for review_id, group in votes.group_by("review_id", maintain_order=True):
        parts = []
        for (family,), fam in group.group_by("family", maintain_order=True):
            counts = ", ".join(
                f"{p} {c}" for p, c in zip(fam["predicted"], fam["count"], strict=True)
            )
            parts.append(f"{family} {fam['wrong'].sum()}/{fam['count'].sum()} wrong ({counts})")
        text[review_id[0]] = "; ".join(parts)
    structs = votes.group_by("review_id", maintain_order=True).agg(
        family_votes=pl.struct(pl.col("family"), prediction=pl.col("predicted"), count="count")
    )
    out = per_review.join(structs, on="review_id", how="left").with_columns(
        votes=pl.col("review_id").replace_strict(text, return_dtype=pl.Utf8)
    )
    if reviews is not None:
        if text_col not in reviews.columns:
            raise UserError(f"hardest_reviews: the reviews table has no column {text_col!r}")
        # Filter first: only k texts go through the Python-level snippet function.
        snippets = reviews.filter(pl.col("review_id").is_in(out["review_id"].implode())).select(
            "review_id",
            snippet=pl.col(text_col).map_elements(
                lambda t: snippet(t, snippet_chars), return_dtype=pl.Utf8
            ),
        )
        out = out.join(snippets, on="review_id", how="left")
    else:
        out = out.with_columns(snippet=pl.lit(None, dtype=pl.Utf8))
    return out.sort("rank").select(
        "rank",
        "review_id",
        "gold",
        "wrong",
        "systems",
        "wrong_share",
        "votes",
        "family_votes",
        "snippet",
    )


# --------------------------------------------------------------------------- agreement


def cohen_kappa(a: Sequence[str | None], b: Sequence[str | None]) -> float:
    """Cohen's kappa (po - pe) / (1 - pe) of two raters over the same items; None (an invalid
    prediction) is the category "<invalid>". NaN when pe = 1 (both constant on one category),
    as sklearn.metrics.cohen_kappa_score."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} vs {len(b)} ratings")
    if not a:
        raise ValueError("cohen_kappa: no ratings")
    xa = np.array([INVALID if x is None else x for x in a], dtype=object)
    xb = np.array([INVALID if x is None else x for x in b], dtype=object)
    cats = sorted(set(xa) | set(xb))
    po = float(np.mean(xa == xb))
    pe = float(sum(np.mean(xa == c) * np.mean(xb == c) for c in cats))
    if math.isclose(pe, 1.0):
        return math.nan
    return (po - pe) / (1.0 - pe)


def _predicted_by_review(predictions: pl.DataFrame, system: str) -> pl.DataFrame:
    rows = predictions.filter(pl.col("system") == system)
    if rows.is_empty():
        raise UserError(f"kappa: no rows of system {system!r}")
    if rows["review_id"].is_duplicated().any():
        raise UserError(f"kappa: system {system!r} has more than one row per review_id")
    return rows.select("review_id", predicted=_PREDICTED)


def system_kappa(predictions: pl.DataFrame, system_a: str, system_b: str) -> dict[str, Any]:
    """Agreement of two systems' predictions on the same reviews: system_a, system_b, n,
    agreement (share of equal predictions, "<invalid>" included), kappa (Cohen's)."""
    pa = _predicted_by_review(predictions, system_a)
    pb = _predicted_by_review(predictions, system_b)
    joined = pa.join(pb, on="review_id", how="full", suffix="_b", coalesce=True)
    missing = joined.filter(pl.col("predicted").is_null() | pl.col("predicted_b").is_null())
    if missing.height:
        raise UserError(
            f"kappa: {system_a!r} and {system_b!r} differ on {missing.height} reviews; "
            "agreement needs the same reviews"
        )
    joined = joined.sort("review_id")
    a, b = joined["predicted"].to_list(), joined["predicted_b"].to_list()
    return {
        "system_a": system_a,
        "system_b": system_b,
        "n": joined.height,
        "agreement": float(np.mean([x == y for x, y in zip(a, b, strict=True)])),
        "kappa": cohen_kappa(a, b),
    }


def pairwise_kappa(predictions: pl.DataFrame, systems: Sequence[str] | None = None) -> pl.DataFrame:
    """`system_kappa` of every pair (i < j in `systems` order, default first appearance):
    columns system_a, system_b, n, agreement, kappa."""
    if systems is None:
        systems = predictions["system"].unique(maintain_order=True).to_list()
    rows = [
        system_kappa(predictions, a, b) for i, a in enumerate(systems) for b in systems[i + 1 :]
    ]
    return pl.DataFrame(
        rows,
        schema={
            "system_a": pl.Utf8,
            "system_b": pl.Utf8,
            "n": pl.Int64,
            "agreement": pl.Float64,
            "kappa": pl.Float64,
        },
    )
