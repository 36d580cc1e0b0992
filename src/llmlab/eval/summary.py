"""eval_summary: every system's metrics in one table, paired tests, and the figures.

Reads only predictions tables (PREDICTIONS_SCHEMA), LLM and baseline alike, and the
validation reviews (their text, for length buckets and snippets). A system is an LLM system
when its `model` is in eval.models, a baseline otherwise. Everything the report needs is in
the summary JSON:
- `systems`, `best_*`, `llm_vs_baseline`, `fewshot_effect`, `calibration_gains`: accuracy
  with CIs and paired tests, on the first few-shot draw (draw 0) of every setting;
- `probability`: calibration error (debiased L2, Kumar et al. 2019; equal-width bins, fewer
  on few reviews), Brier score and log loss of every system's label probabilities, and
  their paired change under each calibration method (one Bonferroni family);
  `calibration_quality`: that change for the best LLM setting; `reliability`: the systems of
  each model's reliability diagram (its best setting, uncalibrated vs calibrated);
- `draw_spread`: per few-shot setting, accuracy over the K draws of its example set next to
  the single-draw CI; `sensitivity`: the spread across prompts x strategies x draws per
  (model, shots, calibration) and which choice (prompt, model, calibration) matters most;
- `errors`: accuracy by review length and by truncation, the hardest reviews, and Cohen's
  kappa between the best systems.

Caveat (stated in the JSON too): "best" systems are picked on the same reviews they are then
tested on, which favours the picked system; the paired tests are descriptive.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns

from llmlab.config import Config, EvalConfig
from llmlab.errors import UserError
from llmlab.eval import analysis, probability
from llmlab.eval.fewshot import FIXED_STRATEGIES
from llmlab.eval.metrics import paired_comparison, system_metrics
from llmlab.io import atomic_dir, read_parquet, write_json
from llmlab.plots import save_figure, setup_theme
from llmlab.schemas import PREDICTIONS_SCHEMA, SPLIT_SCHEMA
from llmlab.stats import ALPHA, bonferroni, paired_difference

log = logging.getLogger(__name__)

SYSTEM_KEYS = ("model", "prompt", "shots", "strategy", "backend", "calibration")
SELECTION_NOTE = (
    "Tests: McNemar's score test with Tango's score interval of the paired difference, so an "
    "interval excludes 0 exactly when its test rejects. Each family of tests (few-shot vs "
    "zero-shot twins, calibrated vs uncalibrated twins, label preference, prompt "
    "sensitivity, draws) is Bonferroni-corrected: its intervals are at level 1 − 0.05/m and "
    '"significant" means significant after the correction. The best systems are selected '
    "on the same validation reviews they are compared on, which favours them: those "
    "comparisons are descriptive and never called significant."
)
DRAW_NOTE = (
    "Few-shot draws: the systems table, the best systems, the paired tests, the few-shot "
    "effect and the calibration gains use the first draw (draw 0) of each fixed example set, "
    "a single concrete prompt someone could deploy; a per-review majority over the draws "
    "would be an ensemble costing K times the compute, another system. The spread over "
    "draws and the prompt sensitivity use every draw."
)
PROBABILITY_NOTE = (
    "Probability quality: P(label) is the softmax of each system's label scores (baselines: "
    "their predicted probabilities); every review is scored, invalid outputs included. The "
    "calibration error compares the predicted P({positive}) with the observed share of "
    "{positive} reviews in {bins} equal-width bins [a, b) (min(10, floor(sqrt(n))) bins, the "
    "last closed): the debiased L2 calibration error of Kumar, Liang & Ma (2019), the square "
    "root of their debiased squared error, with a bias-corrected bootstrap CI; the plug-in "
    "ECE on the same bins is biased upward and printed without CI. Changes are calibrated "
    "minus uncalibrated on the same reviews (negative is better); the change in squared "
    "calibration error has a paired, bias-corrected bootstrap CI, Bonferroni-corrected over "
    "all calibration changes."
)
BINS = 10  # most equal-width calibration bins (fewer on few reviews: calibration_bins)
# Per-system probability metrics copied next to each calibration change (ece_plugin: no CI).
_PROB_METRICS = ("ce_l2", "ce_squared", "ece_plugin", "brier", "log_loss")
_PROB_CIS = ("ce_l2", "ce_squared", "brier", "log_loss")
HARDEST = 10  # reviews listed in the error analysis
SNIPPET_CHARS = 200
# Word-count buckets of the model-independent length analysis (IMDB: median ~174 words).
WORD_EDGES = (0, 100, 200, 400)


# --------------------------------------------------------------------------- loading


def load_predictions(paths: Sequence[Path]) -> pl.DataFrame:
    """Concatenate predictions files; a system may appear in one file only."""
    frames, seen = [], {}
    for path in paths:
        df = read_parquet(path, PREDICTIONS_SCHEMA).select(list(PREDICTIONS_SCHEMA))
        if df.is_empty():
            raise UserError(f"{path}: no prediction rows")
        for system in df["system"].unique().to_list():
            if system in seen:
                raise UserError(f"{path}: system {system!r} is also in {seen[system]}")
            seen[system] = path
        frames.append(df)
    return pl.concat(frames)


def check_same_reviews(predictions: pl.DataFrame) -> int:
    """Every system must score the same reviews once each (paired tests rely on it)."""
    dupes = predictions.group_by("system").agg(pl.col("review_id").is_duplicated().any())
    bad = dupes.filter(pl.col("review_id"))["system"].to_list()
    if bad:
        raise UserError(f"predictions: system {bad[0]!r} has more than one row per review_id")
    sets = predictions.group_by("system").agg(pl.col("review_id").sort())
    reference = sets.row(0, named=True)
    for row in sets.iter_rows(named=True):
        if row["review_id"] != reference["review_id"]:
            raise UserError(
                f"predictions: systems {reference['system']!r} and {row['system']!r} scored "
                "different reviews; all systems must score the same validation rows"
            )
    return len(reference["review_id"])


# --------------------------------------------------------------------------- analysis


def systems_table(
    predictions: pl.DataFrame, eval_cfg: EvalConfig
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One row per system (flat metrics) and the full metrics per system id."""
    metrics: dict[str, Any] = {}
    rows = []
    for (system,), part in predictions.group_by("system", maintain_order=True):
        first = part.row(0, named=True)
        m = system_metrics(part, eval_cfg.labels)
        metrics[system] = m
        rows.append(
            {"system": system}
            | {k: first[k] for k in SYSTEM_KEYS}
            | {
                "kind": "llm" if first["model"] in eval_cfg.models else "baseline",
                "n": m["n"],
                "accuracy": m["accuracy"],
                "ci_low": m["accuracy_ci"][0],
                "ci_high": m["accuracy_ci"][1],
                "macro_f1": m["macro_f1"],
                "invalid_rate": m["invalid_rate"],
                "predicted_positive_rate": m["predicted_positive_rate"],
                "prompts_per_second": m["prompts_per_second"],
            }
        )
    # "baseline" < "llm": baselines first
    table = pl.DataFrame(rows).sort(["kind", "model", "shots", "prompt", "strategy", "calibration"])
    return table, metrics


def best_system(table: pl.DataFrame, **where: Any) -> str | None:
    """Highest accuracy (then macro-F1, then name) among rows matching `where`."""
    rows = table
    for key, value in where.items():
        rows = rows.filter(pl.col(key) == value)
    if rows.is_empty():
        return None
    return rows.sort(["accuracy", "macro_f1", "system"], descending=[True, True, False])["system"][
        0
    ]


def _rows(predictions: pl.DataFrame, system: str) -> pl.DataFrame:
    return predictions.filter(pl.col("system") == system)


def compare(
    predictions: pl.DataFrame,
    a: str,
    b: str,
    *,
    family_size: int = 1,
    selected: bool = False,
    b_rows: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Paired comparison of systems `a` and `b` (accuracy A - B, Tango CI, McNemar), one of a
    Bonferroni family of `family_size` tests. `selected`: a or b was picked as the best on
    these same reviews, so the test is optimistic and the result is descriptive (never
    called significant). `b_rows`: B's rows when they are not the table's (a derived system).
    """
    test = paired_comparison(
        _rows(predictions, a),
        _rows(predictions, b) if b_rows is None else b_rows,
        family_size=family_size,
    )
    if selected:
        test["significant"] = None
    return {"a": a, "b": b, "selected": selected} | test


def argmax_rows(rows: pl.DataFrame, labels: Sequence[str]) -> pl.DataFrame:
    """An uncalibrated system's rows with the decision rule of the calibrated ones: the argmax
    of its label scores (calibrated predictions are argmaxes of shifted scores, while vLLM's
    uncalibrated prediction is its generated choice; comparing the two would mix the effect of
    the bias with that of the decision rule). Rows without scores keep their prediction."""
    scores = rows["label_scores"].to_list()
    argmax = [labels[int(np.argmax(x))] if x else None for x in scores]
    return rows.with_columns(
        prediction=pl.when(pl.Series(argmax).is_not_null())
        .then(pl.Series(argmax, dtype=pl.Utf8))
        .otherwise(pl.col("prediction")),
        valid=pl.when(pl.Series(argmax).is_not_null())
        .then(pl.lit(True))
        .otherwise(pl.col("valid")),
    )


def calibration_gains(
    predictions: pl.DataFrame, table: pl.DataFrame, eval_cfg: EvalConfig
) -> list[dict[str, Any]]:
    """Each calibrated LLM system against the same system uncalibrated, both read by the
    argmax of their label scores (`argmax_rows`); one Bonferroni family over all of them."""
    llm = table.filter(pl.col("kind") == "llm")
    keys = ["model", "prompt", "shots", "strategy", "backend"]
    pairs = []
    for row in llm.filter(pl.col("calibration") != "none").iter_rows(named=True):
        base = llm.filter(
            pl.all_horizontal([pl.col(k) == row[k] for k in keys])
            & (pl.col("calibration") == "none")
        )
        if not base.is_empty():
            pairs.append((row, base.row(0, named=True)))
    out = []
    for row, base_row in pairs:
        twin = argmax_rows(_rows(predictions, base_row["system"]), eval_cfg.labels)
        rule = system_metrics(twin, eval_cfg.labels)
        test = compare(
            predictions, row["system"], base_row["system"], family_size=len(pairs), b_rows=twin
        )
        out.append(
            {k: row[k] for k in (*keys, "calibration")}
            | {
                "system": row["system"],
                "uncalibrated_system": base_row["system"],
                # The twin's own accuracy (its table row) can differ on vLLM: see argmax_rows.
                "accuracy_uncalibrated": rule["accuracy"],
                "accuracy_uncalibrated_ci": rule["accuracy_ci"],
                "accuracy_calibrated": row["accuracy"],
                "accuracy_calibrated_ci": [row["ci_low"], row["ci_high"]],
                "predicted_positive_rate_uncalibrated": rule["predicted_positive_rate"],
                "predicted_positive_rate_calibrated": row["predicted_positive_rate"],
                "gain": test["difference"],
                "gain_ci": test["difference_ci"],
                "test": test,
            }
        )
    return out


def fewshot_effect(
    predictions: pl.DataFrame, table: pl.DataFrame, eval_cfg: EvalConfig
) -> dict[str, Any]:
    """Per model, every few-shot system against its zero-shot twin (same prompt and
    calibration): one Bonferroni family over all of these pairs. `best`: the best few-shot
    system against the best zero-shot one (uncalibrated, and with any calibration), both
    selected on these reviews: descriptive."""
    llm = table.filter(pl.col("kind") == "llm")
    per_model: dict[str, Any] = {}
    planned = []
    for model in eval_cfg.models:
        rows = llm.filter(pl.col("model") == model)
        if rows.is_empty():
            continue
        shots_values = sorted(set(rows["shots"].to_list()))
        zero = 0 if 0 in shots_values else shots_values[0]
        per_model[model] = {}
        for shots in (s for s in shots_values if s != zero):
            entry = {}
            for label, where in (("uncalibrated", {"calibration": "none"}), ("any", {})):
                a = best_system(rows, shots=shots, **where)
                b = best_system(rows, shots=zero, **where)
                entry[label] = compare(predictions, a, b, selected=True) if a and b else None
            per_model[model][f"{shots}shot"] = entry
            for row in rows.filter(pl.col("shots") == shots).iter_rows(named=True):
                base = rows.filter(
                    (pl.col("shots") == zero)
                    & (pl.col("prompt") == row["prompt"])
                    & (pl.col("calibration") == row["calibration"])
                )
                if not base.is_empty():
                    planned.append((row, base.row(0, named=True)))
    pairs = []
    for row, base in planned:
        test = compare(predictions, row["system"], base["system"], family_size=len(planned))
        pairs.append(
            {k: row[k] for k in ("model", "prompt", "shots", "strategy", "calibration")}
            | {
                "system": row["system"],
                "zero_shot_system": base["system"],
                "accuracy_zero_shot": base["accuracy"],
                "accuracy_few_shot": row["accuracy"],
                "difference": test["difference"],
                "difference_ci": test["difference_ci"],
                "test": test,
            }
        )
    return {"best": per_model, "pairs": pairs}


def label_bias(
    predictions: pl.DataFrame, table: pl.DataFrame, eval_cfg: EvalConfig
) -> dict[str, Any] | None:
    """Does each uncalibrated LLM system predict the positive label more (or less) often than
    the reviews carry it? Per system: predicted-positive rate minus the positive share of
    the same reviews, a paired difference (McNemar's test, Tango's interval; an invalid
    output is not a positive prediction), Bonferroni over the systems. Two labels only."""
    if len(eval_cfg.labels) != 2:
        return None
    positive = eval_cfg.labels[-1]
    systems = table.filter((pl.col("kind") == "llm") & (pl.col("calibration") == "none"))
    if systems.is_empty():
        return None
    m = systems.height
    rows = []
    for system in systems["system"]:
        part = _rows(predictions, system).sort("review_id")
        predicted = (part["valid"].fill_null(False) & (part["prediction"] == positive)).to_numpy()
        gold = (part["gold"] == positive).to_numpy()
        test = paired_difference(predicted, gold, family_size=m)
        rows.append({"system": system, "gold_positive_rate": float(gold.mean())} | test)
    return {
        "positive": positive,
        "systems": rows,
        "family_size": m,
        "biased": sum(bool(r["significant"]) for r in rows),
        "towards_positive": sum(bool(r["significant"]) and r["difference"] > 0 for r in rows),
    }


# --------------------------------------------------------------------------- probabilities


def _finite(value: Any) -> Any:
    """NaN -> None, recursively (the summary is strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _positive(eval_cfg: EvalConfig) -> int | None:
    return len(eval_cfg.labels) - 1 if len(eval_cfg.labels) == 2 else None


def probability_section(
    predictions: pl.DataFrame, table: pl.DataFrame, eval_cfg: EvalConfig
) -> dict[str, Any]:
    """Calibration error, Brier, log loss with CIs of every system in `table`, and the paired
    change of each calibrated LLM system against its uncalibrated twin; the changes in
    calibration error form one Bonferroni family (their CIs at level 1 - 0.05/m)."""
    labels = list(eval_cfg.labels)
    boot = {"resamples": eval_cfg.bootstrap.resamples, "seed": eval_cfg.bootstrap.seed}
    per_system = probability.probability_metrics(predictions, labels, bins=BINS, **boot)
    keys = ("system", *SYSTEM_KEYS, "kind")
    systems = [
        {k: row[k] for k in keys} | per_system[row["system"]] for row in table.iter_rows(named=True)
    ]
    probs = {
        s: probability.probabilities_and_gold(predictions.filter(pl.col("system") == s), labels)
        for s in table["system"]
    }
    llm = table.filter(pl.col("kind") == "llm")
    twin_keys = ["model", "prompt", "shots", "strategy", "backend"]
    pairs = []
    for row in llm.filter(pl.col("calibration") != "none").iter_rows(named=True):
        base = llm.filter(
            pl.all_horizontal([pl.col(k) == row[k] for k in twin_keys])
            & (pl.col("calibration") == "none")
        )
        if not base.is_empty():
            pairs.append((row, base["system"][0]))
    changes = []
    for row, before in pairs:
        after = row["system"]
        (p_before, gold), (p_after, _) = probs[before], probs[after]
        change = probability.calibration_change(
            p_before,
            p_after,
            gold,
            bins=BINS,
            positive=_positive(eval_cfg),
            family_size=len(pairs),
            **boot,
        )
        changes.append(
            {k: row[k] for k in (*twin_keys, "calibration")}
            | {"system": after, "uncalibrated_system": before}
            | {f"{m}_uncalibrated": per_system[before][m] for m in _PROB_METRICS}
            | {f"{m}_uncalibrated_ci": per_system[before][f"{m}_ci"] for m in _PROB_CIS}
            | {f"{m}_calibrated": per_system[after][m] for m in _PROB_METRICS}
            | {f"{m}_calibrated_ci": per_system[after][f"{m}_ci"] for m in _PROB_CIS}
            | {f"{m}_change": change[m] for m in _PROB_METRICS}
            | {f"{m}_change_ci": change[f"{m}_ci"] for m in ("ce_squared", "brier", "log_loss")}
            | {
                "ce_squared_change_se": change["ce_squared_se"],
                "ce_level": change["ce_level"],
                "family_size": change["family_size"],
            }
        )
    # Every system is scored on the same reviews (check_same_reviews), hence the same bins.
    first = per_system[systems[0]["system"]] if systems else {"n": None, "bins": BINS}
    return {
        "view": probability.view_name(labels),
        "bins": first["bins"],
        "bins_max": BINS,
        "n": first["n"],
        "systems": systems,
        "calibration_changes": changes,
    }


def calibration_quality(
    prob: dict[str, Any], table: pl.DataFrame, best_llm: str | None
) -> dict[str, Any] | None:
    """The probability change of the best LLM setting under calibration (contextual if
    configured, else the first calibrated method), and over the systems of that method how
    many have a lower calibration error estimate (descriptive) and how many a significantly
    lower one (Bonferroni-corrected CI of the change in squared error below 0; the family is
    every calibration change, so the best setting's own verdict is counted the same way)."""
    changes = prob["calibration_changes"]
    if not best_llm or not changes:
        return None
    row = table.filter(pl.col("system") == best_llm).row(0, named=True)
    keys = ("model", "prompt", "shots", "strategy", "backend")
    mine = [c for c in changes if all(c[k] == row[k] for k in keys)]
    if not mine:
        return None
    pick = next((c for c in mine if c["calibration"] == "contextual"), mine[0])
    lower = [c for c in changes if c["calibration"] == pick["calibration"]]
    return pick | {
        "best_llm": best_llm,
        "view": prob["view"],
        "bins": prob["bins"],
        "systems_compared": len(lower),
        "systems_lower_ce": sum(c["ce_squared_change"] < 0 for c in lower),
        "systems_lower_ce_significant": sum(c["ce_squared_change_ci"][1] < 0 for c in lower),
        "systems_higher_ce_significant": sum(c["ce_squared_change_ci"][0] > 0 for c in lower),
    }


def reliability_plan(table: pl.DataFrame, eval_cfg: EvalConfig) -> list[dict[str, Any]]:
    """Per LLM model: its best system (draw 0) and the calibration twins of its setting, the
    curves of its reliability diagram."""
    out = []
    llm = table.filter(pl.col("kind") == "llm")
    keys = ["model", "prompt", "shots", "strategy", "backend"]
    for model in eval_cfg.models:
        best = best_system(llm, model=model)
        if best is None:
            continue
        row = llm.filter(pl.col("system") == best).row(0, named=True)
        twins = llm.filter(pl.all_horizontal([pl.col(k) == row[k] for k in keys]))
        order = {m: i for i, m in enumerate(eval_cfg.calibration.methods)}
        twins = twins.sort(pl.col("calibration").replace_strict(order, default=len(order)))
        out.append(
            {
                "model": model,
                "best_system": best,
                "setting": {k: row[k] for k in keys},
                "systems": twins["system"].to_list(),
                "calibrations": twins["calibration"].to_list(),
                "figure": f"reliability_{model}",
            }
        )
    return out


# --------------------------------------------------------------------------- draws, sensitivity


def draw_section(
    predictions: pl.DataFrame, table: pl.DataFrame, eval_cfg: EvalConfig
) -> dict[str, Any]:
    """Per few-shot setting with a fixed example set: accuracy over its draws (mean, sd,
    min-max) next to the first draw's accuracy and Wilson CI, and a Cochran's Q test of a
    draw effect (Bonferroni over the settings)."""
    llm = predictions.filter(
        pl.col("model").is_in(list(eval_cfg.models))
        & (pl.col("shots") > 0)
        & pl.col("strategy").is_in(list(FIXED_STRATEGIES))
    )
    rows: list[dict[str, Any]] = []
    if not llm.is_empty():
        acc = analysis.system_accuracy(llm, extra_keys=("draw",))
        spread = analysis.draw_spread_table(acc)
        first = table.select("system", *analysis.SETTING_KEYS, "accuracy", "ci_low", "ci_high")
        joined = spread.join(first, on=list(analysis.SETTING_KEYS), how="left")
        for r in joined.iter_rows(named=True):
            low, high = r["ci_low"], r["ci_high"]
            width = high - low if low is not None and high is not None else None
            rows.append(
                {k: r[k] for k in analysis.SETTING_KEYS}
                | {k: r[k] for k in ("system", "n_draws", "mean", "sd", "min", "max", "range")}
                | {
                    "accuracy_draw0": r["accuracy"],
                    "ci_low": low,
                    "ci_high": high,
                    "ci_width": width,
                    "range_exceeds_ci": bool(width is not None and r["range"] > width),
                }
            )
    # Does the draw change accuracy? Cochran's Q over the draws of each setting on the same
    # reviews, one Bonferroni family; the range next to the CI alone is no test.
    # (the draw is one more factor of analysis.factor_tests: its groups are the settings).
    multi = [r for r in rows if r["n_draws"] > 1]
    tests = {
        tuple(t["group"][k] for k in analysis.SETTING_KEYS): t
        for t in analysis.factor_tests(llm, "draw", keys=(*analysis.SETTING_KEYS, "draw"))
    }
    for r in multi:
        t = tests[tuple(r[k] for k in analysis.SETTING_KEYS)]
        r |= {"k": t["levels"]} | {key: t[key] for key in ("statistic", "df", "p_value")}
    for r, adj in zip(multi, bonferroni([r["p_value"] for r in multi]), strict=True):
        r |= adj
    sds = [r["sd"] for r in rows if r["sd"] is not None]
    widths = [r["ci_width"] for r in rows if r["ci_width"] is not None and r["n_draws"] > 1]
    widest = max((r for r in rows if r["n_draws"] > 1), key=lambda r: r["range"], default=None)
    return {
        # Draws found in the predictions (eval.fewshot.draws made them; `similar` has one).
        "draws": max((r["n_draws"] for r in rows), default=eval_cfg.fewshot.draws),
        "configured_draws": eval_cfg.fewshot.draws,
        "settings": rows,
        "multi_draw_settings": sum(r["n_draws"] > 1 for r in rows),
        "mean_sd": float(np.mean(sds)) if sds else None,
        "max_sd": float(np.max(sds)) if sds else None,
        "max_range": widest["range"] if widest else None,
        "max_range_system": widest["system"] if widest else None,
        "mean_ci_width": float(np.mean(widths)) if widths else None,
        "range_exceeds_ci": sum(r["range_exceeds_ci"] for r in rows if r["n_draws"] > 1),
        "draw_effect_tests": len(multi),
        "draw_effect_significant": sum(r["significant"] for r in multi),
    }


def sensitivity_section(predictions: pl.DataFrame, eval_cfg: EvalConfig) -> dict[str, Any] | None:
    """analysis.prompt_sensitivity over every LLM system and draw, as JSON."""
    llm = predictions.filter(pl.col("model").is_in(list(eval_cfg.models)))
    if llm.is_empty():
        return None
    sens = analysis.prompt_sensitivity(llm)
    return {
        "table": sens["table"].to_dicts(),
        "factors": sens["factors"].to_dicts(),
        "tests": sens["tests"],
        "conclusion": sens["conclusion"],
    }


# --------------------------------------------------------------------------- errors


def focus_systems(table: pl.DataFrame, eval_cfg: EvalConfig) -> list[str]:
    """The best system (draw 0) of each LLM model, then each baseline's."""
    picked = [best_system(table, model=m) for m in eval_cfg.models]
    baselines = table.filter(pl.col("kind") == "baseline")["model"].unique(maintain_order=True)
    picked += [best_system(table, model=b) for b in baselines]
    return [s for s in picked if s]


def token_edges(review_tokens: int) -> list[int]:
    """Token-length buckets around the truncation budget r: [0, r/2), [r/2, r), [r, 2r),
    [2r, inf); reviews from r + 1 tokens on were cut."""
    return sorted({0, review_tokens // 2, review_tokens, 2 * review_tokens})


def error_section(
    predictions: pl.DataFrame,
    table: pl.DataFrame,
    eval_cfg: EvalConfig,
    reviews: pl.DataFrame | None,
) -> dict[str, Any]:
    """Accuracy by length (model tokens for LLMs, words for all) and by truncation of the
    focus systems, the hardest reviews over every system (draw 0), kappa between the best
    systems."""
    focus = focus_systems(table, eval_cfg)
    kind = dict(zip(table["system"], table["kind"], strict=True))
    budget = eval_cfg.review_tokens
    by_tokens, by_truncation, truncated_share = [], [], {}
    for system in focus:
        rows = predictions.filter(pl.col("system") == system)
        if kind[system] != "llm" or rows["review_tokens"].null_count():
            continue
        model = rows["model"][0]
        lengths = rows.select("review_id", tokens="review_tokens").with_columns(
            truncated=pl.col("tokens") > budget
        )
        truncated_share[model] = float(lengths["truncated"].mean())
        by_tokens += analysis.accuracy_by_length(
            rows, lengths, length_col="tokens", edges=token_edges(budget), ci=True
        ).to_dicts()
        by_truncation += analysis.accuracy_by_truncation(rows, lengths, ci=True).to_dicts()
    by_words: list[dict[str, Any]] = []
    words = None
    if reviews is not None:
        words = reviews.select(
            "review_id",
            words=pl.col("review")
            .str.replace_all(r"(?i)<br\s*/?>", " ")
            .str.count_matches(r"\S+")
            .cast(pl.Int64),
        )
        focus_rows = predictions.filter(pl.col("system").is_in(focus))
        by_words = analysis.accuracy_by_length(
            focus_rows, words, length_col="words", edges=WORD_EDGES, ci=True
        ).to_dicts()
        order = {s: i for i, s in enumerate(focus)}
        by_words.sort(key=lambda r: (order[r["system"]], r["bucket"]))
    hardest = analysis.hardest_reviews(
        predictions, reviews, k=HARDEST, snippet_chars=SNIPPET_CHARS
    ).to_dicts()
    return {
        "focus_systems": focus,
        "review_tokens": budget,
        "truncated_share": truncated_share,
        "by_tokens": by_tokens,
        "by_words": by_words,
        "by_truncation": by_truncation,
        "hardest": hardest,
        "hardest_systems": int(predictions["system"].n_unique()),
        "kappa": kappa_pairs(predictions, table, eval_cfg),
    }


def kappa_pairs(
    predictions: pl.DataFrame, table: pl.DataFrame, eval_cfg: EvalConfig
) -> list[dict[str, Any]]:
    """Cohen's kappa of the LLMs' best systems with each other and with TF-IDF (the best
    baseline when there is no TF-IDF)."""
    llm = [s for m in eval_cfg.models if (s := best_system(table, model=m, kind="llm"))]
    tfidf = best_system(table, model="tfidf", kind="baseline") or best_system(
        table, kind="baseline"
    )
    pairs = [(a, b, "llm vs llm") for a, b in itertools.combinations(llm, 2)]
    if tfidf:
        pairs += [(a, tfidf, "llm vs baseline") for a in llm]
    return [{"pair": what} | analysis.system_kappa(predictions, a, b) for a, b, what in pairs]


# --------------------------------------------------------------------------- summary


def summarize(
    predictions: pl.DataFrame, eval_cfg: EvalConfig, reviews: pl.DataFrame | None = None
) -> tuple[dict[str, Any], pl.DataFrame]:
    """The summary document (the report renders its tables) and the systems table of the
    first draw (for the figures). `reviews`: the validation split (review_id, review), for
    word-count buckets and snippets of the hardest reviews."""
    n_reviews = check_same_reviews(predictions)
    every_draw = predictions
    predictions = predictions.filter(pl.col("draw") == 0)
    table, metrics = systems_table(predictions, eval_cfg)
    best = best_system(table)
    best_llm = best_system(table, kind="llm")
    best_baseline = best_system(table, kind="baseline")
    llm_vs_baseline = (
        compare(predictions, best_llm, best_baseline, selected=True)
        if best_llm and best_baseline
        else None
    )
    systems = [
        row | {"confusion": metrics[row["system"]]["confusion"]}
        for row in table.iter_rows(named=True)
    ]
    summary = {
        "labels": list(eval_cfg.labels),
        "n_reviews": n_reviews,
        "systems": systems,
        "best_system": best,
        "best_llm": best_llm,
        "best_baseline": best_baseline,
        "llm_vs_baseline": llm_vs_baseline,
        "fewshot_effect": fewshot_effect(predictions, table, eval_cfg),
        "calibration_gains": calibration_gains(predictions, table, eval_cfg),
        "label_bias": label_bias(predictions, table, eval_cfg),
        "alpha": ALPHA,
    }
    prob = probability_section(predictions, table, eval_cfg)
    positive = eval_cfg.labels[-1] if len(eval_cfg.labels) == 2 else "the top label"
    summary |= {
        "probability": prob,
        "calibration_quality": calibration_quality(prob, table, best_llm),
        "reliability": reliability_plan(table, eval_cfg),
        "draw_spread": draw_section(every_draw, table, eval_cfg),
        "sensitivity": sensitivity_section(every_draw, eval_cfg),
        "errors": error_section(predictions, table, eval_cfg, reviews),
        "notes": [
            SELECTION_NOTE,
            DRAW_NOTE,
            PROBABILITY_NOTE.format(positive=positive, bins=prob["bins"]),
        ],
    }
    return _finite(summary), table


# --------------------------------------------------------------------------- figures


def plot_accuracy(table: pl.DataFrame, path: Path) -> None:
    """Every system's accuracy with its 95% CI, best at the top, coloured by model."""
    df = table.sort("accuracy", descending=True)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * df.height))
    models = df["model"].unique(maintain_order=True).to_list()
    palette = dict(zip(models, sns.color_palette("deep", len(models)), strict=True))
    y = np.arange(df.height)
    acc = df["accuracy"].to_numpy()
    err = np.vstack([acc - df["ci_low"].to_numpy(), df["ci_high"].to_numpy() - acc])
    ax.barh(y, acc, color=[palette[m] for m in df["model"]], alpha=0.85)
    ax.errorbar(acc, y, xerr=err, fmt="none", ecolor="black", capsize=2, lw=1)
    ax.set_yticks(y, df["system"].to_list(), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (95% bootstrap CI)")
    ax.set_ylabel("system")
    ax.set_title("Accuracy on the validation reviews")
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[m]) for m in models]
    ax.legend(handles, models, title="model", loc="lower right", fontsize=8)
    save_figure(fig, path)


def plot_confusions(summary: dict[str, Any], systems: Sequence[str], path: Path) -> None:
    """Confusion matrices (rows: gold, columns: predicted or invalid) of selected systems."""
    by_id = {s["system"]: s for s in summary["systems"]}
    cols = min(3, len(systems))
    rows = -(-len(systems) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    for ax, system in zip(axes.flat, systems, strict=False):
        conf = by_id[system]["confusion"]
        sns.heatmap(
            np.array(conf["counts"]),
            annot=True,
            fmt="d",
            cmap="Blues",
            cbar=False,
            xticklabels=conf["columns"],
            yticklabels=conf["labels"],
            ax=ax,
        )
        ax.set_title(system, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.tick_params(axis="y", rotation=0)
    for ax in axes.flat[len(systems) :]:
        ax.axis("off")
    fig.suptitle("Confusion matrices", fontweight="bold")
    save_figure(fig, path)


def _setting(row: dict[str, Any]) -> str:
    return "0-shot" if row["shots"] == 0 else f"{row['shots']}-shot {row['strategy']}"


def _point_plot(df: pl.DataFrame, x: str, hue: str, title: str, path: Path) -> None:
    """Accuracy with CI per `x`, one panel per model, one colour per `hue`."""
    models = df["model"].unique(maintain_order=True).to_list()
    hues = sorted(df[hue].unique().to_list())
    xs = sorted(df[x].unique().to_list())
    fig, axes = plt.subplots(
        1,
        len(models),
        figsize=(1.5 + max(3.5, 1.6 * len(xs)) * len(models), 4.2),
        sharey=True,
        squeeze=False,
    )
    colors = dict(zip(hues, sns.color_palette("deep", len(hues)), strict=True))
    width = 0.8 / len(hues)
    for ax, model in zip(axes.flat, models, strict=True):
        part = df.filter(pl.col("model") == model)
        for j, h in enumerate(hues):
            sub = part.filter(pl.col(hue) == h)
            pos = np.array([xs.index(v) for v in sub[x]]) - 0.4 + width * (j + 0.5)
            acc = sub["accuracy"].to_numpy()
            err = np.vstack([acc - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - acc])
            ax.errorbar(pos, acc, yerr=err, fmt="o", color=colors[h], capsize=3, label=h)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_title(model)
        ax.set_xlabel(x)
    axes.flat[0].set_ylabel("accuracy (95% CI)")
    axes.flat[-1].legend(title=hue, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title, fontweight="bold")
    save_figure(fig, path)


def plot_prompts(table: pl.DataFrame, path: Path) -> None:
    df = table.filter((pl.col("kind") == "llm") & (pl.col("calibration") == "none"))
    df = df.with_columns(
        setting=pl.struct("shots", "strategy").map_elements(_setting, return_dtype=pl.Utf8)
    )
    _point_plot(df, "prompt", "setting", "Accuracy by prompt (uncalibrated)", path)


def plot_strategies(table: pl.DataFrame, path: Path) -> bool:
    df = table.filter(
        (pl.col("kind") == "llm") & (pl.col("calibration") == "none") & (pl.col("shots") > 0)
    )
    if df.is_empty():
        return False
    _point_plot(df, "strategy", "prompt", "Accuracy by few-shot strategy (uncalibrated)", path)
    return True


def plot_calibration(summary: dict[str, Any], path: Path) -> bool:
    """Accuracy and predicted-positive rate, uncalibrated vs calibrated, per LLM system."""
    gains = summary["calibration_gains"]
    if not gains:
        return False
    df = pl.DataFrame(
        [
            {
                "system": g["uncalibrated_system"].removesuffix("/none"),
                "calibration": g["calibration"],
                "accuracy": g["accuracy_calibrated"],
                "uncalibrated": g["accuracy_uncalibrated"],
                "ppr": g["predicted_positive_rate_calibrated"],
                "ppr_uncalibrated": g["predicted_positive_rate_uncalibrated"],
            }
            for g in gains
        ]
    )
    systems = df["system"].unique(maintain_order=True).to_list()
    methods = ["none", *df["calibration"].unique(maintain_order=True).to_list()]
    colors = dict(zip(methods, sns.color_palette("deep", len(methods)), strict=True))
    y = np.arange(len(systems))
    fig, (ax_acc, ax_ppr) = plt.subplots(
        1, 2, figsize=(12, max(3.2, 1.6 + 0.35 * len(systems))), sharey=True
    )
    first = df.unique("system", keep="first", maintain_order=True)
    panels = ((ax_acc, "accuracy", "uncalibrated"), (ax_ppr, "ppr", "ppr_uncalibrated"))
    # Methods side by side within a system's row, so equal values stay visible.
    offset = {m: 0.6 * (i / max(1, len(methods) - 1) - 0.5) for i, m in enumerate(methods)}
    for ax, col, base_col in panels:
        ax.scatter(
            first[base_col], y + offset["none"], color=colors["none"], label="none", zorder=3
        )
        for method in methods[1:]:
            sub = df.filter(pl.col("calibration") == method)
            pos = np.array([systems.index(s) for s in sub["system"]]) + offset[method]
            ax.scatter(sub[col], pos, color=colors[method], label=method, zorder=3, marker="D")
        ax.set_xlim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    ax_ppr.axvline(0.5, color="grey", ls="--", lw=1)
    ax_acc.set_yticks(y, systems, fontsize=8)
    ax_acc.invert_yaxis()
    ax_acc.set_xlabel("accuracy")
    ax_acc.set_ylabel("system")
    ax_ppr.set_xlabel("predicted-positive rate (balanced data: 0.5)")
    ax_acc.set_title("Accuracy")
    ax_ppr.set_title("Predicted-positive rate")
    ax_ppr.legend(title="calibration", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Calibration: uncalibrated vs calibrated", fontweight="bold")
    save_figure(fig, path)
    return True


def confusion_systems(summary: dict[str, Any], table: pl.DataFrame) -> list[str]:
    """The best system per model and shot count, and each baseline."""
    picked = []
    for key, rows in table.group_by(["model", "shots"], maintain_order=True):
        del key
        picked.append(best_system(rows))
    return [s for s in picked if s]


def plot_reliability_of(
    predictions: pl.DataFrame, entry: dict[str, Any], labels: Sequence[str], path: Path
) -> None:
    """One model's reliability diagram: its best setting, uncalibrated vs calibrated."""
    rows = predictions.filter(pl.col("system").is_in(entry["systems"]))
    setting = entry["systems"][0].rsplit("/", 1)[0]
    # The bins of the reported calibration error (fewer on few reviews).
    bins = probability.calibration_bins(
        rows.filter(pl.col("system") == entry["systems"][0]).height, BINS
    )
    probability.plot_reliability(
        rows, labels, path, bins=bins, title=f"Reliability of {setting}: uncalibrated vs calibrated"
    )


def write_figures(
    summary: dict[str, Any],
    table: pl.DataFrame,
    folder: Path,
    predictions: pl.DataFrame | None = None,
) -> dict[str, str]:
    """Every figure into `folder`; returns figure name -> file name. The reliability
    diagrams need the (draw 0) `predictions`."""
    setup_theme()
    made = {}
    plot_accuracy(table, folder / "accuracy.png")
    made["accuracy"] = "accuracy.png"
    plot_confusions(summary, confusion_systems(summary, table), folder / "confusion.png")
    made["confusion"] = "confusion.png"
    if not table.filter(pl.col("kind") == "llm").is_empty():
        plot_prompts(table, folder / "prompts.png")
        made["prompts"] = "prompts.png"
    if plot_strategies(table, folder / "strategies.png"):
        made["strategies"] = "strategies.png"
    if plot_calibration(summary, folder / "calibration.png"):
        made["calibration"] = "calibration.png"
    if predictions is not None:
        for entry in summary.get("reliability", []):
            name = entry["figure"]
            plot_reliability_of(predictions, entry, summary["labels"], folder / f"{name}.png")
            made[name] = f"{name}.png"
    return made


# --------------------------------------------------------------------------- stage


def run_eval_summary(
    cfg: Config, *, predictions: list[Path], val: Path, summary: Path, figures: Path
) -> None:
    """CLI layer of eval-summary: read every predictions file and the validation reviews,
    write the JSON and figures."""
    preds = load_predictions(predictions)
    unknown = sorted(set(preds["gold"].unique().to_list()) - set(cfg.eval.labels))
    if unknown:
        raise UserError(f"predictions: gold labels {unknown} are not in eval.labels")
    reviews = read_parquet(val, SPLIT_SCHEMA)
    missing = set(preds["review_id"].unique().to_list()) - set(reviews["review_id"].to_list())
    if missing:
        raise UserError(
            f"{val}: {len(missing)} scored reviews are not in the validation split "
            f"(e.g. review_id {min(missing)}); were the predictions made from another split?"
        )
    doc, systems = summarize(preds, cfg.eval, reviews)
    log.info(
        "%d systems (%d with every draw) on %d reviews; best %s",
        systems.height,
        preds["system"].n_unique(),
        doc["n_reviews"],
        doc["best_system"],
    )
    with atomic_dir(figures) as tmp:
        doc["figures"] = write_figures(doc, systems, tmp, preds.filter(pl.col("draw") == 0))
    write_json(doc, summary)
