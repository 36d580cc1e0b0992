"""Variance, sensitivity and error analysis of the predictions tables (PREDICTIONS_SCHEMA).

- spread over few-shot draws: how much one setting's accuracy moves when only the in-context
  examples are redrawn;
- prompt sensitivity: accuracy spread across prompts x strategies x draws per (model, shots,
  calibration), and which choices (prompt, model, calibration) change accuracy beyond
  sampling noise (Cochran's Q on the same reviews, Bonferroni over every test);
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
from llmlab.eval.metrics import INVALID
from llmlab.stats import ALPHA, bonferroni, cochran_q, wilson_ci

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


def factor_tests(
    predictions: pl.DataFrame,
    factor: str,
    *,
    keys: Sequence[str],
) -> list[dict[str, Any]]:
    """Does `factor` change accuracy? One Cochran's Q test per group of otherwise equal
    settings (every other key fixed) that has at least two of the factor's levels: are the
    levels' accuracies equal on the same reviews? (Q generalizes McNemar to k systems.)

    `predictions`: review-level rows (system, review_id, valid, prediction, gold and the
    `keys` columns). Returns per group: factor, group (the other keys' values), levels,
    n (reviews), accuracies {level: accuracy}, range, statistic, df, p_value.
    """
    others = [k for k in keys if k != factor and k in predictions.columns]
    if factor not in predictions.columns:
        return []
    rows = predictions.select(*others, factor, "review_id", correct=_CORRECT)
    groups = rows.group_by(others, maintain_order=True) if others else [((), rows)]
    out = []
    for values, group in groups:
        levels = sorted(group[factor].unique().to_list(), key=str)
        if len(levels) < 2:
            continue
        wide = group.pivot(on=factor, index="review_id", values="correct", aggregate_function=None)
        names = [str(v) for v in levels]
        wide = wide.drop_nulls().sort("review_id")
        matrix = wide.select(names).to_numpy().astype(np.float64)
        test = cochran_q(matrix)
        acc = dict(zip(names, matrix.mean(axis=0).tolist(), strict=True))
        out.append(
            {
                "factor": factor,
                "group": dict(zip(others, values, strict=True)),
                "levels": len(levels),
                "n": int(matrix.shape[0]),
                "accuracies": acc,
                "range": float(max(acc.values()) - min(acc.values())),
                "statistic": test["statistic"],
                "df": test["df"],
                "p_value": test["p_value"],
            }
        )
    return out


def factor_effects(
    predictions: pl.DataFrame,
    factors: Sequence[str],
    *,
    keys: Sequence[str],
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """`factor_tests` of every factor, Bonferroni-corrected over all of their tests together
    (one family: any "this choice changes accuracy" claim is then wrong with probability at
    most `alpha` when no choice changes anything). Adds p_adjusted and significant."""
    tests = [t for f in factors for t in factor_tests(predictions, f, keys=keys)]
    return [
        t | adj
        for t, adj in zip(tests, bonferroni([t["p_value"] for t in tests], alpha), strict=True)
    ]


def sensitivity_conclusion(
    spreads: Sequence[dict[str, Any]], tests: Sequence[dict[str, Any]], *, alpha: float = ALPHA
) -> str:
    """One sentence from `factor_spread` results and the corrected `factor_effects` tests.

    A choice is said to change accuracy only where its corrected test rejects; the mean
    spreads are printed as descriptions and never ranked against each other: the range of k
    noisy accuracies grows with k (about 1.13, 1.69, 2.06 standard errors for k = 2, 3, 4
    with no effect at all), so a larger spread is no evidence of a larger effect.
    """
    measured = [s for s in spreads if s["spread"] is not None]
    unmeasured = [
        FACTOR_NAMES.get(s["factor"], s["factor"]) for s in spreads if s["spread"] is None
    ]
    note = f" ({' and '.join(unmeasured)} not varied)" if unmeasured else ""
    if not measured or not tests:
        return "No factor was varied on otherwise equal settings; no sensitivity can be measured."
    m = len(tests)
    parts = []
    for s in measured:
        mine = [t for t in tests if t["factor"] == s["factor"]]
        sig = sum(t["significant"] for t in mine)
        parts.append(
            f"{FACTOR_NAMES.get(s['factor'], s['factor'])} {sig} of {len(mine)} "
            f"(mean range {100 * s['spread']:.1f} pts)"
        )
    method = (
        f"Cochran's Q per group of otherwise equal settings, Bonferroni over all {m} tests at "
        f"α = {alpha:g}"
    )
    if not any(t["significant"] for t in tests):
        return (
            f"No choice changes accuracy detectably on these reviews: significant differences "
            f"in {', '.join(parts)} ({method}); the ranges are within sampling noise and are "
            f"not ranked, since the range of more options is wider by chance alone{note}."
        )
    return (
        f"Settings whose accuracy differs significantly across the options of one choice: "
        f"{', '.join(parts)} ({method}); the ranges are descriptive and not ranked against "
        f"each other, since the range of more options is wider by chance alone{note}."
    )


def prompt_sensitivity(
    predictions: pl.DataFrame,
    *,
    by: Sequence[str] = ("model", "shots", "calibration"),
    factors: Sequence[str] = ("prompt", "model", "calibration"),
    keys: Sequence[str] = (*FACTOR_KEYS, "draw"),
    value: str = "accuracy",
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Accuracy spread across prompts x strategies x draws, and which choices change it.

    `predictions`: review-level rows of LLM systems (baseline rows, prompt "-", are dropped).
    Few-shot draws must be told apart by a column in `keys` (e.g. "draw"), otherwise their
    rows are pooled. Calibration is in `by` because it is a factor of its own.

    Returns:
      table: per `by` group: n_systems, n_prompts, n_strategies, min, max, mean, sd (ddof=1,
        null for one row), range of accuracy over its systems and draws;
      factors: factor, spread, groups, levels (see `factor_spread`), tests, significant
        (the factor's tests whose corrected p < alpha);
      tests: every `factor_effects` test (Cochran's Q, Bonferroni over all of them);
      conclusion: one sentence generated from those.
    """
    llm = predictions.filter(pl.col("prompt") != NO_PROMPT)
    if llm.is_empty():
        raise UserError("prompt_sensitivity: no LLM rows (every row has prompt '-')")
    present = [k for k in keys if k in llm.columns]
    accuracies = system_accuracy(llm, extra_keys=[k for k in present if k not in SETTING_KEYS])
    v = pl.col(value)
    table = (
        accuracies.group_by(list(by))
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
    spreads = [factor_spread(accuracies, f, keys=present, value=value) for f in factors]
    tests = factor_effects(llm, factors, keys=present, alpha=alpha)
    for s in spreads:
        mine = [t for t in tests if t["factor"] == s["factor"]]
        s["tests"] = len(mine)
        s["significant"] = sum(t["significant"] for t in mine)
    return {
        "table": table,
        "factors": pl.DataFrame(
            spreads,
            schema={
                "factor": pl.Utf8,
                "spread": pl.Float64,
                "groups": pl.Int64,
                "levels": pl.Int64,
                "tests": pl.Int64,
                "significant": pl.Int64,
            },
        ),
        "tests": tests,
        "conclusion": sensitivity_conclusion(spreads, tests, alpha=alpha),
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


def _with_ci(joined: pl.DataFrame, keys: Sequence[str], ci: bool) -> pl.DataFrame:
    """Per `keys` group: n, accuracy and, with `ci`, its Wilson 95% interval (ci_low,
    ci_high)."""
    keys = list(keys)
    grouped = joined.group_by(keys).agg(
        n=pl.len().cast(pl.Int64),
        accuracy=pl.col("correct").mean(),
        _k=pl.col("correct").sum().cast(pl.Int64),
    )
    if not ci:
        return grouped.drop("_k")
    cis = [wilson_ci(k, n) for k, n in zip(grouped["_k"], grouped["n"], strict=True)]
    return grouped.drop("_k").with_columns(
        ci_low=pl.Series([c[0] for c in cis], dtype=pl.Float64),
        ci_high=pl.Series([c[1] for c in cis], dtype=pl.Float64),
    )


def accuracy_by_length(
    predictions: pl.DataFrame,
    reviews: pl.DataFrame,
    *,
    length_col: str = "tokens",
    edges: Sequence[int] = DEFAULT_LENGTH_EDGES,
    ci: bool = False,
) -> pl.DataFrame:
    """Per system and length bucket: system, bucket (0-based), lower, upper (null for the last,
    open bucket), label ("[lower, upper)" / "[lower, inf)"), n, accuracy, and with `ci` its
    Wilson 95% interval (ci_low, ci_high).

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
    grouped = _with_ci(
        joined.with_columns(bucket=pl.Series(bucket, dtype=pl.Int64)), ["system", "bucket"], ci
    )
    ci_cols = ["ci_low", "ci_high"] if ci else []
    return (
        grouped.join(buckets, on="bucket")
        .select("system", "bucket", "lower", "upper", "label", "n", "accuracy", *ci_cols)
        .sort("system", "bucket")
    )


def accuracy_by_truncation(
    predictions: pl.DataFrame,
    reviews: pl.DataFrame,
    *,
    truncated_col: str = "truncated",
    ci: bool = False,
) -> pl.DataFrame:
    """Per system: system, truncated (bool), n, accuracy, and with `ci` its Wilson 95%
    interval (ci_low, ci_high); `reviews` has review_id and the boolean `truncated_col` (the
    review was cut to fit the prompt budget)."""
    joined = _with_reviews(predictions, reviews, truncated_col, "accuracy_by_truncation")
    ci_cols = ["ci_low", "ci_high"] if ci else []
    return (
        _with_ci(joined, ["system", truncated_col], ci)
        .rename({truncated_col: "truncated"})
        .select("system", "truncated", "n", "accuracy", *ci_cols)
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
