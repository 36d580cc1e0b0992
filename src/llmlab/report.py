"""report: reports/report.md from the results, through a Jinja template.

Every number in the report is read from a results file named next to it; the conclusions
are computed from those numbers (best system, few-shot effect, LLM vs baselines, calibration,
SFT variants), never written by hand. Figures are linked by paths relative to the report, so
it renders on GitHub and in any markdown viewer.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from llmlab.config import Config
from llmlab.errors import UserError
from llmlab.io import read_json, read_parquet, write_text
from llmlab.run_metadata import git_state, hardware, package_versions, rule_durations
from llmlab.schemas import BASE_SYSTEM, GENERATIONS_SCHEMA
from llmlab.tables import (
    FILTERS,
    draws_table,
    errors_tables,
    eval_tables,
    generations_table,
    loss_table,
    p_value,
    pct,
    probability_tables,
    pts,
    sensitivity_table,
)

log = logging.getLogger(__name__)

TEMPLATE = "report.md.j2"
# The evaluation's analysis tables: each has its section in the report, and all of them
# follow the systems tables in reports/tables/eval.md.
EVAL_ANALYSIS_TABLES = ("probability_table", "draws_table", "sensitivity_table", "errors_table")
# Files of the package this module reads: the report stage depends on them (llmlab.stages).
PACKAGE_DATA = (
    "templates/report.md.j2",
    "templates/eval_analysis.md.j2",
    "templates/sft_eval.md.j2",
)


# --------------------------------------------------------------------------- formatting


def to_json(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text readable (Russian regexes, topics)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# --------------------------------------------------------------------------- conclusions


def level_label(level: float) -> str:
    """A confidence level as printed: 0.95 -> "95%", 1 - 0.05/12 -> "99.6%"."""
    text = f"{100 * level:.1f}".removesuffix(".0")
    return f"{text}%"


def test_phrase(test: dict[str, Any]) -> str:
    """A paired difference with its interval and p-value; in a family of m > 1 tests, the
    interval is at the Bonferroni level and the p-value is the corrected one."""
    low, high = test["difference_ci"]
    m = test.get("family_size", 1)
    p = p_value(test["p_adjusted"] if m > 1 else test["p_value"])
    corrected = f", Bonferroni over {m}" if m > 1 else ""
    return (
        f"{pts(test['difference'])} ({level_label(test['level'])} CI {100 * low:+.1f} to "
        f"{100 * high:+.1f}; McNemar {p}{corrected})"
    )


def family_sentence(tests: list[dict[str, Any]], what: str, gain: str, loss: str) -> str:
    """How many tests of one Bonferroni family are significant, in which direction."""
    m = len(tests)
    ups = sum(bool(t["significant"]) and t["difference"] > 0 for t in tests)
    downs = sum(bool(t["significant"]) and t["difference"] < 0 for t in tests)
    level = level_label(tests[0]["level"]) if tests else "95%"
    if not ups and not downs:
        verdict = f"none of the {m} differs significantly"
    else:
        verdict = f"{ups} {gain} and {downs} {loss} significantly"
    return (
        f"{what}: {verdict} (McNemar, Bonferroni over the {m}; each interval at {level}, "
        "excluding 0 exactly when its test rejects)"
    )


def eval_conclusions(summary: dict[str, Any]) -> list[str]:
    """Sentences computed from results/eval/summary.json. "Significantly" only ever comes
    from a Bonferroni-corrected test of a pre-specified family; comparisons of systems picked
    as the best on these same reviews are descriptive."""
    by_name = {s["system"]: s for s in summary["systems"]}
    out: list[str] = []
    best = by_name.get(summary.get("best_system") or "")
    if best:
        out.append(
            f"Highest accuracy: `{best['system']}` with {pct(best['accuracy'])} "
            f"(95% Wilson CI {pct(best['ci_low'])}–{pct(best['ci_high'])}) on "
            f"{summary['n_reviews']:,} validation reviews."
        )
    best_llm = by_name.get(summary.get("best_llm") or "")
    if best_llm:
        out.append(
            f"Best LLM setting: `{best_llm['system']}`, {pct(best_llm['accuracy'])} "
            f"({best_llm['prompts_per_second'] or 0:.1f} prompts/s, invalid outputs "
            f"{pct(best_llm['invalid_rate'])})."
        )
    fewshot = summary.get("fewshot_effect") or {}
    pairs = [p["test"] for p in fewshot.get("pairs", [])]
    if pairs:
        out.append(
            family_sentence(
                pairs,
                "Few-shot vs zero-shot, each few-shot system against its zero-shot twin "
                "(same model, prompt and calibration)",
                "gain",
                "lose",
            )
            + "."
        )
    for model, by_shots in fewshot.get("best", {}).items():
        for shots, entry in by_shots.items():
            test = (entry or {}).get("uncalibrated")
            if test:
                out.append(
                    f"Few-shot, `{model}`: the best {shots} setting against the best zero-shot "
                    f"setting (uncalibrated) is {_pts_ci(test)}; both were picked on these "
                    "reviews, so this is descriptive."
                )
    test = summary.get("llm_vs_baseline")
    if test:
        out.append(
            f"LLM vs baselines: the best LLM setting (`{test['a']}`) against the best baseline "
            f"(`{test['b']}`) is {_pts_ci(test)}; both were picked on these reviews, so this "
            "is descriptive."
        )
    gains = summary.get("calibration_gains") or []
    if gains:
        out.append(
            family_sentence(
                [g["test"] for g in gains],
                "Calibration, each calibrated system against its uncalibrated twin (both "
                "read as the argmax of their label scores)",
                "gain",
                "lose",
            )
            + f"; gains range from {pts(min(g['gain'] for g in gains))} to "
            f"{pts(max(g['gain'] for g in gains))}."
        )
    bias = label_bias_sentence(summary.get("label_bias"))
    if bias:
        out.append(bias)
    quality = calibration_quality_sentence(summary.get("calibration_quality"))
    if quality:
        out.append(quality)
    draws = draw_sentence(summary.get("draw_spread"))
    if draws:
        out.append(draws)
    sens = summary.get("sensitivity")
    if sens:
        out.append(f"Prompt sensitivity: {sens['conclusion']}")
    return out


def _pts_ci(test: dict[str, Any]) -> str:
    low, high = test["difference_ci"]
    return f"{pts(test['difference'])} (95% CI {100 * low:+.1f} to {100 * high:+.1f})"


def label_bias_sentence(bias: dict[str, Any] | None) -> str | None:
    """Do the uncalibrated LLM systems prefer one label, whatever the review says?"""
    if not bias or not bias["systems"]:
        return None
    rows = bias["systems"]
    m = bias["family_size"]
    rates = [r["difference"] + r["gold_positive_rate"] for r in rows]
    gold = rows[0]["gold_positive_rate"]
    towards = bias["towards_positive"]
    away = bias["biased"] - towards
    positive = bias["positive"]
    if bias["biased"]:
        verdict = (
            f"{towards} of the {m} uncalibrated LLM systems predict `{positive}` significantly "
            f"more often than the reviews carry it and {away} significantly less often"
        )
    else:
        verdict = (
            f"none of the {m} uncalibrated LLM systems predicts `{positive}` significantly more "
            "or less often than the reviews carry it"
        )
    return (
        f"Label preference: {verdict} (predicted minus actual share of `{positive}` on the "
        f"same reviews, McNemar, Bonferroni over the {m}); their predicted-{positive} rates "
        f"range from {pct(min(rates))} to {pct(max(rates))}, against {pct(gold)} of the reviews."
    )


def _score(x: float) -> str:
    return f"{x:.3f}"


def _score_ci(ci: list[float]) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}"


def _level(level: float) -> str:
    """A confidence level as a percentage: 0.95 -> "95%", 1 - 0.05/12 -> "99.58%"."""
    return f"{100 * level:.2f}".rstrip("0").rstrip(".") + "%"


def calibration_quality_sentence(q: dict[str, Any] | None) -> str | None:
    """Does calibration change the calibration error of the best LLM setting? The verdict is
    the paired, Bonferroni-corrected CI of the change in debiased squared calibration error
    (summary `calibration_quality`): "lowers"/"raises" only when it excludes 0."""
    if not q:
        return None
    change, (low, high) = q["ce_squared_change"], q["ce_squared_change_ci"]
    method, m = q["calibration"], q["family_size"]
    if high < 0 or low > 0:
        verdict = (
            f"the CI excludes 0, so {method} calibration "
            f"{'lowers' if high < 0 else 'raises'} the calibration error"
        )
    else:
        verdict = "the CI includes 0: not distinguishable from no change on these reviews"
    family = f", Bonferroni over {m} calibration changes" if m > 1 else ""
    setting = q["uncalibrated_system"].removesuffix("/none")
    before = f"{_score(q['ce_l2_uncalibrated'])} (95% CI {_score_ci(q['ce_l2_uncalibrated_ci'])})"
    after = f"{_score(q['ce_l2_calibrated'])} (95% CI {_score_ci(q['ce_l2_calibrated_ci'])})"
    return (
        f"Calibration quality: for the best LLM setting (`{setting}`), the debiased L2 "
        f"calibration error of {q['view']} (Kumar et al. 2019; {q['bins']} equal-width bins) "
        f"is {before} uncalibrated and {after} with {method} calibration; the change in "
        f"squared calibration error is {change:+.4f} (paired {_level(q['ce_level'])} CI "
        f"{low:+.4f} to {high:+.4f}{family}): {verdict}. Brier {q['brier_uncalibrated']:.3f} "
        f"→ {q['brier_calibrated']:.3f}, log loss {q['log_loss_uncalibrated']:.3f} → "
        f"{q['log_loss_calibrated']:.3f}. Over all {q['systems_compared']} {method}-calibrated "
        f"systems, {q['systems_lower_ce']} {_have(q['systems_lower_ce'])} a lower estimate "
        f"(descriptive); {q['systems_lower_ce_significant']} "
        f"{_are(q['systems_lower_ce_significant'])} significantly lower and "
        f"{q['systems_higher_ce_significant']} significantly higher (the same corrected CIs)."
    )


def _have(n: int) -> str:
    return "has" if n == 1 else "have"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def draw_sentence(spread: dict[str, Any] | None) -> str | None:
    """How much accuracy moves over few-shot draws, against the single-draw CI width."""
    if not spread or not spread["settings"]:
        return None
    if not spread["multi_draw_settings"]:
        return (
            "Few-shot draws: one draw per example set (`eval.fewshot.draws: 1`): the variance "
            "over draws was not measured."
        )
    n = spread["multi_draw_settings"]
    sig = spread["draw_effect_significant"]
    verdict = (
        f"the draw changes accuracy significantly in {sig} of {n} settings: there, one draw "
        "understates the uncertainty of a few-shot result"
        if sig
        else f"in none of the {n} settings does the draw change accuracy significantly"
    )
    return (
        f"Few-shot draws: over {spread['draws']} draws of each fixed example set, accuracy "
        f"has a standard deviation of {100 * spread['mean_sd']:.1f} pts on average over {n} "
        f"settings (largest min–max range {100 * spread['max_range']:.1f} pts, "
        f"`{spread['max_range_system']}`; mean single-draw 95% CI width "
        f"{100 * spread['mean_ci_width']:.1f} pts); {verdict} (Cochran's Q over the draws on "
        f"the same reviews, Bonferroni over the {n})."
    )


def split_sentence(split: dict[str, Any]) -> str:
    """How many train rows split_imdb dropped as twins of scored reviews (data/imdb/split.json)."""
    dropped, scored = split["dropped_train_rows"], split["val_rows"]
    twins = len(split["scored_reviews_with_a_train_twin"])
    if dropped == 0:
        return (
            f"No train review has the normalized text of one of the {scored:,} scored reviews, "
            f"so all {split['train_rows']:,} train rows are used."
        )
    rows = "row" if dropped == 1 else "rows"
    have = "has" if twins == 1 else "have"
    return (
        f"{dropped:,} train {rows} whose normalized text equals a scored review's ({twins:,} of "
        f"the {scored:,} scored reviews {have} such a twin) were dropped before any example, "
        f"threshold or baseline training row was drawn: {split['train_rows_kept']:,} of the "
        f"{split['train_rows']:,} train rows remain."
    )


def _system_name(system: str) -> str:
    return "the base model" if system == BASE_SYSTEM else f"`{system}`"


def heldout_loss_sentence(h: dict[str, Any]) -> str:
    """The SFT loss conclusion from format_metrics' `heldout_loss` (llmlab.sft_eval): every
    system on one common held-out set, each pair's paired difference with its corrected
    interval; "lower"/"higher" only where that interval excludes 0."""
    losses = {s: m["mean_loss"] for s, m in h["systems"].items()}
    text = (
        f"SFT loss on one common held-out set ({h['prompts']:,} prompts no variant trained "
        "on; mean per-token loss of their reference answers, nats): "
        + ", ".join(f"{_system_name(s)} {loss:.3f}" for s, loss in losses.items())
        + "."
    )
    lowest = h["lowest"]
    against = [p for p in h["pairs"] if lowest in (p["first"], p["second"])]
    below = [p["significant"] and (p["difference"] < 0) == (p["first"] == lowest) for p in against]
    name = _system_name(lowest)
    if against and all(below):
        text += f" {name[0].upper() + name[1:]} has the lowest loss, below every other system's."
    elif against:
        unshown = [
            _system_name(p["second"] if p["first"] == lowest else p["first"]) + "'s"
            for p, ok in zip(against, below, strict=True)
            if not ok
        ]
        text += f" The lowest is {name}'s, but it is not shown below {' or '.join(unshown)}."
    if h["pairs"]:
        parts = []
        for p in h["pairs"]:
            low, high = p["difference_ci"]
            verdict = "no difference shown"
            if p["significant"]:
                verdict = _system_name(p["first"])
                verdict += " lower" if p["difference"] < 0 else " higher"
            parts.append(
                f"{_system_name(p['first'])} − {_system_name(p['second'])} "
                f"{p['difference']:+.3f} [{low:+.3f}, {high:+.3f}] ({verdict})"
            )
        text += (
            f" Paired differences over prompts, {100 * h['level']:.1f}% intervals "
            f"(paired t, Bonferroni over {h['family_size']} pairs): " + "; ".join(parts) + "."
        )
    return text


def sft_conclusions(
    sft_metrics: dict[str, dict[str, Any]],
    funnels: dict[str, dict[str, Any]],
    heldout_loss: dict[str, Any] | None = None,
) -> list[str]:
    """The SFT conclusions: each variant's data funnel, and the systems' losses compared on
    one common held-out set (`heldout_loss`, format_metrics'). train_lora's eval_loss is on
    each variant's own eval split (other filters, other dialogues): it ranks nothing."""
    out: list[str] = []
    for variant, funnel in funnels.items():
        steps = funnel["steps"]
        kept = steps[-1]["rows"] if steps else funnel["input_rows"]
        before = steps[-2]["rows"] if len(steps) > 1 else funnel["input_rows"]
        biggest = max(
            (s for s in steps[:-1] if s["enabled"]), key=lambda s: s["removed"], default=None
        )
        text = (
            f"SFT data, variant `{variant}`: {before:,} of {funnel['input_rows']:,} dialogues "
            f"pass the filters, {kept:,} are sampled"
        )
        if biggest:
            text += f"; the strictest step is `{biggest['step']}` (−{biggest['removed']:,} rows)"
        out.append(text + ".")
    if heldout_loss:
        out.append(heldout_loss_sentence(heldout_loss))
        return out
    losses = {
        v: m.get("eval_loss") for v, m in sft_metrics.items() if m.get("eval_loss") is not None
    }
    if losses:
        out.append(
            "SFT: train_lora's loss of each variant on its own eval split (the splits passed "
            "different filters, so these do not rank the variants): "
            + ", ".join(f"`{v}` {loss:.3f}" for v, loss in losses.items())
            + "."
        )
    return out


# --------------------------------------------------------------------------- context


def figure_links(
    folder: Path, report_dir: Path, names: list[str] | None = None
) -> list[dict[str, str]]:
    """PNG files of `folder` (in `names` order when given) as links relative to the report."""
    paths = sorted(folder.glob("*.png"))
    if names:
        order = {name: i for i, name in enumerate(names)}
        paths.sort(key=lambda p: (order.get(p.stem, len(order)), p.name))
    return [
        {"name": p.stem, "title": p.stem.replace("_", " "), "path": os.path.relpath(p, report_dir)}
        for p in paths
    ]


def by_variant(paths: list[Path], variants: list[str]) -> dict[str, dict[str, Any]]:
    """Per-variant JSON documents (funnel, metrics, train log) keyed by the `variant` each one
    records, checked to be exactly `variants` (sft.variants)."""
    docs = {}
    for path in paths:
        doc = read_json(path)
        name = doc.get("variant") if isinstance(doc, dict) else None
        if name not in variants or name in docs:
            raise UserError(f"{path}: records variant {name!r}; expected one of {variants}, once")
        docs[name] = doc
    if set(docs) != set(variants):
        raise UserError(f"no file for variant(s) {sorted(set(variants) - set(docs))}")
    return {v: docs[v] for v in variants}


def per_variant_files(paths: list[Path], variants: list[str], what: str) -> dict[str, Path]:
    """Per-variant files, one per sft.variants entry in its order (the rules expand them so)."""
    if len(paths) != len(variants):
        raise UserError(f"--{what}: {len(paths)} files for {len(variants)} variants {variants}")
    for path, variant in zip(paths, variants, strict=True):
        if variant not in Path(path).stem:
            raise UserError(
                f"--{what}: {path} does not name variant {variant!r} (order: {variants})"
            )
    return dict(zip(variants, paths, strict=True))


def _need(paths: dict[str, Path | list[Path]]) -> None:
    missing = [
        str(p)
        for value in paths.values()
        for p in (value if isinstance(value, list) else [value])
        if not Path(p).exists()
    ]
    if missing:
        raise UserError(f"report inputs missing: {', '.join(missing)} (run their stages first)")


def durations_by_rule(durations: pl.DataFrame) -> list[dict[str, Any]]:
    """Per-job durations -> one row per rule (jobs, total seconds), slowest first."""
    return (
        durations.group_by("rule")
        .agg(jobs=pl.len(), seconds=pl.col("seconds").sum())
        .sort("seconds", "rule", descending=[True, False])
        .to_dicts()
    )


def render_tables(
    cfg: Config, summary: dict[str, Any], sft_metrics: dict[str, dict[str, Any]], generations: Path
) -> dict[str, str]:
    """Every table of the report, from the evaluation summary, the per-variant SFT metrics
    and the generations file."""
    variants = list(cfg.sft.variants)
    answers = read_parquet(generations, GENERATIONS_SCHEMA)
    return {
        "eval_table": eval_tables(summary),
        "probability_table": probability_tables(summary),
        "draws_table": draws_table(summary),
        "sensitivity_table": sensitivity_table(summary),
        "errors_table": errors_tables(summary),
        "loss_table": loss_table([sft_metrics[v] for v in variants]),
        "generations_table": generations_table(
            answers, [BASE_SYSTEM, *variants], cfg.sft.generation
        ),
    }


def eval_table_file(tables: dict[str, str]) -> str:
    """reports/tables/eval.md: the systems tables, then every analysis table."""
    parts = (tables["eval_table"], *(tables[name] for name in EVAL_ANALYSIS_TABLES))
    return "\n".join(part.strip() + "\n" for part in parts if part.strip())


def build_context(
    cfg: Config, inputs: dict[str, Any], out: Path, files: dict[str, Path]
) -> tuple[dict[str, Any], dict[str, str]]:
    """What the template renders, and the tables (also written to `files`, their paths)."""
    report_dir = out.parent
    rel = lambda p: os.path.relpath(p, report_dir)  # noqa: E731
    variants = list(cfg.sft.variants)
    summary = read_json(inputs["eval_summary"])
    funnels = by_variant(inputs["funnels"], variants)
    sft_metrics = by_variant(inputs["sft_metrics"], variants)
    train_logs = by_variant(inputs["train_logs"], variants)
    tables = render_tables(cfg, summary, sft_metrics, inputs["generations"])
    durations = rule_durations(inputs.get("benchmarks"))
    per_rule = durations_by_rule(durations)
    summary_fig = summary.get("figures", {})
    context = {
        "title": cfg.report.title,
        "preset": cfg.preset,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_state(),
        "packages": package_versions(),
        "hardware": hardware(),
        "models": {
            key: {
                "source": source_label(m.source.model_dump(mode="json")),
                "prompt_format": m.prompt_format,
                "meta": _model_meta(Path("models/pretrained") / key),
            }
            for key, m in cfg.models.items()
        },
        "durations": per_rule,
        "total_seconds": float(durations["seconds"].sum()) if durations.height else None,
        "data_sources": {
            "imdb": source_label(cfg.imdb.source.model_dump(mode="json")),
            "saiga": source_label(cfg.saiga.source.model_dump(mode="json")),
        },
        "imdb": read_json(inputs["imdb_stats"]),
        "imdb_figures": figure_links(inputs["imdb_figures"], report_dir),
        "split_sentence": split_sentence(read_json(inputs["imdb_split"])),
        "saiga": read_json(inputs["saiga_stats"]),
        "saiga_figures": figure_links(inputs["saiga_figures"], report_dir),
        "eval": summary,
        **{name: text.strip() for name, text in tables.items()},
        "rnn_figure": rel(inputs["rnn_figure"]),
        "eval_figures": {
            name: rel(Path(inputs["eval_figures"]) / file) for name, file in summary_fig.items()
        },
        "eval_conclusions": eval_conclusions(summary),
        "label_bias_sentence": label_bias_sentence(summary.get("label_bias")),
        "funnels": funnels,
        "funnel_figures": {
            v: rel(p)
            for v, p in per_variant_files(
                inputs["funnel_figures"], variants, "funnel-figures"
            ).items()
        },
        "sft_model": cfg.sft.model,
        "sft_metrics": sft_metrics,
        "train_logs": train_logs,
        "loss_curves": {
            v: rel(p)
            for v, p in per_variant_files(inputs["loss_curves"], variants, "loss-curves").items()
        },
        "sft_conclusions": sft_conclusions(
            sft_metrics, funnels, read_json(inputs["format_metrics"]).get("heldout_loss")
        ),
        "format_metrics": read_json(inputs["format_metrics"]),
        "judge": read_json(inputs["judge"]),
        "merges": by_variant(inputs["merges"], variants),
        "merged_dirs": {v: f"models/merged/{v}" for v in variants},
        "files": {
            k: rel(v) if not isinstance(v, list) else [rel(x) for x in v]
            for k, v in {**inputs, **files}.items()
            if v is not None
        },
    }
    return context, tables


def source_label(source: dict[str, Any]) -> str:
    """A data or model source as one markdown cell: hub id @ revision, path, wheel, synthetic."""
    if source.get("hub"):
        return f"`{source['hub']}` @ `{str(source.get('revision') or 'main')[:12]}`"
    if source.get("path"):
        return f"`{source['path']}`"
    if source.get("synthetic"):
        settings = ", ".join(f"{k} {v}" for k, v in source["synthetic"].items())
        return f"synthetic, generated offline in the real schema ({settings})"
    parts = source.get("gguf") or []
    if parts:
        name = f"`{parts[0].split('/')[-1]}`"
        return name + (f" ({len(parts)} parts)" if len(parts) > 1 else "")
    return f"`{source}`"


def _model_meta(folder: Path) -> dict[str, Any]:
    meta = folder / "llmlab_model.json"
    return read_json(meta) if meta.exists() else {}


def render(context: dict[str, Any], template: str = TEMPLATE) -> str:
    """The report (or one of the templates it includes) rendered from `context`."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: files("llmlab.templates").joinpath(name).read_text(encoding="utf-8")
        ),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS, p=p_value, md=FILTERS["md_cell"], json=to_json)
    return env.get_template(template).render(**context)


# --------------------------------------------------------------------------- stage


def run_report(
    cfg: Config,
    *,
    out: Path,
    eval_table: Path,
    generations_table: Path,
    loss_table: Path,
    benchmarks: Path | None = None,
    **inputs: Any,
) -> None:
    """Stage report: read every result, render reports/report.md and its tables."""
    _need({k: v for k, v in inputs.items() if v is not None})
    files = {"eval_table": eval_table, "generations_table": generations_table}
    files["loss_table"] = loss_table
    context, tables = build_context(cfg, {**inputs, "benchmarks": benchmarks}, out, files)
    text = render(context)
    # Everything is rendered before anything is written: a failure leaves no partial output.
    contents = {name: tables[name] for name in files} | {"eval_table": eval_table_file(tables)}
    for name, path in files.items():
        write_text(contents[name], path)
    write_text(text, out)
    log.info("report: %s (%d lines)", out, text.count("\n"))
