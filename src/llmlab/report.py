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


def _significant(test: dict[str, Any] | None, alpha: float = 0.05) -> bool:
    return bool(test) and test["mcnemar"]["p_value"] < alpha


def _test_phrase(test: dict[str, Any]) -> str:
    low, high = test["difference_ci"]
    return (
        f"{pts(test['difference'])} (95% CI {100 * low:+.1f} to {100 * high:+.1f}; "
        f"McNemar {p_value(test['mcnemar']['p_value'])})"
    )


def eval_conclusions(summary: dict[str, Any]) -> list[str]:
    """Sentences computed from results/eval/summary.json."""
    by_name = {s["system"]: s for s in summary["systems"]}
    out: list[str] = []
    best = by_name.get(summary.get("best_system") or "")
    if best:
        out.append(
            f"Best system overall: `{best['system']}` with {pct(best['accuracy'])} accuracy "
            f"(95% CI {pct(best['ci_low'])}–{pct(best['ci_high'])}) on "
            f"{summary['n_reviews']:,} validation reviews."
        )
    best_llm = by_name.get(summary.get("best_llm") or "")
    if best_llm:
        out.append(
            f"Best LLM setting: `{best_llm['system']}`, {pct(best_llm['accuracy'])} "
            f"({best_llm['prompts_per_second'] or 0:.1f} prompts/s, invalid outputs "
            f"{pct(best_llm['invalid_rate'])})."
        )
    for model, by_shots in (summary.get("fewshot_effect") or {}).get("best", {}).items():
        for shots, entry in by_shots.items():
            test = (entry or {}).get("uncalibrated")
            if not test:
                continue
            verdict = "a significant" if _significant(test) else "no significant"
            direction = (
                "gain"
                if test["difference"] > 0
                else "change"
                if test["difference"] == 0
                else "loss"
            )
            out.append(
                f"Few-shot, `{model}`: the best {shots} setting vs the best zero-shot setting "
                f"(uncalibrated) is {_test_phrase(test)}: {verdict} {direction}."
            )
    test = summary.get("llm_vs_baseline")
    if test:
        better = "better" if test["difference"] > 0 else "worse"
        verdict = "significantly" if _significant(test) else "not significantly"
        out.append(
            f"LLM vs baselines: the best LLM setting (`{test['a']}`) is {verdict} {better} than "
            f"the best baseline (`{test['b']}`): {_test_phrase(test)}."
        )
    gains = summary.get("calibration_gains") or []
    if gains:
        top = max(gains, key=lambda g: g["gain"])
        worst = min(gains, key=lambda g: g["gain"])
        out.append(
            f"Calibration: {sum(g['gain'] > 0 for g in gains)} of {len(gains)} calibrated "
            f"systems beat their uncalibrated twin; the largest gain is {pts(top['gain'])} "
            f"(`{top['system']}`, predicted-positive rate "
            f"{pct(top['predicted_positive_rate_uncalibrated'])} → "
            f"{pct(top['predicted_positive_rate_calibrated'])}, "
            f"McNemar {p_value(top['mcnemar']['p_value'])}); the largest loss is "
            f"{pts(worst['gain'])} (`{worst['system']}`)."
        )
    quality = calibration_quality_sentence(summary.get("calibration_quality"))
    if quality:
        out.append(quality)
    draws = draw_sentence(summary.get("draw_spread"))
    if draws:
        out.append(draws)
    sens = summary.get("sensitivity")
    if sens:
        text = f"Prompt sensitivity: {sens['conclusion']}"
        if sens.get("comparisons"):
            comparisons = "; ".join(sens["comparisons"])
            text += f" So {comparisons}."
        out.append(text)
    return out


def _score(x: float) -> str:
    return f"{x:.3f}"


def _score_ci(ci: list[float]) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}"


def calibration_quality_sentence(q: dict[str, Any] | None) -> str | None:
    """Does calibration lower the ECE of the best LLM setting (paired CI of the change)?"""
    if not q:
        return None
    change, (low, high) = q["ece_width_change"], q["ece_width_change_ci"]
    if high < 0 or low > 0:
        verdict = "lowers" if high < 0 else "raises"
        strength = "the paired CI excludes 0"
    else:
        verdict = "lowers" if change < 0 else "raises" if change > 0 else "does not change"
        strength = "not distinguishable from no change on these reviews (the CI includes 0)"
    setting = q["uncalibrated_system"].removesuffix("/none")
    ci_before = _score_ci(q["ece_width_uncalibrated_ci"])
    before = f"{_score(q['ece_width_uncalibrated'])} (95% CI {ci_before})"
    after = f"{_score(q['ece_width_calibrated'])} ({_score_ci(q['ece_width_calibrated_ci'])})"
    return (
        f"Calibration quality: {q['calibration']} calibration {verdict} the expected "
        f"calibration error (10 equal-width bins) of the best LLM setting (`{setting}`) from "
        f"{before} to {after}, a change of {change:+.3f} (paired 95% CI {low:+.3f} to "
        f"{high:+.3f}): {strength}; Brier {q['brier_uncalibrated']:.3f} → "
        f"{q['brier_calibrated']:.3f}, log loss {q['log_loss_uncalibrated']:.3f} → "
        f"{q['log_loss_calibrated']:.3f}. Over all {q['systems_compared']} "
        f"{q['calibration']}-calibrated systems, {q['systems_lower_ece']} lower their ECE "
        f"({q['systems_lower_ece_significant']} with a CI below 0)."
    )


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
    exceeds = spread["range_exceeds_ci"]
    verdict = (
        "within the single-draw CI in every setting"
        if exceeds == 0
        else f"wider than the single-draw CI in {exceeds} of {n} settings: one draw "
        "understates the uncertainty of a few-shot result"
    )
    return (
        f"Few-shot draws: over {spread['draws']} draws of each fixed example set, accuracy "
        f"has a standard deviation of {100 * spread['mean_sd']:.1f} pts on average over {n} "
        f"settings (largest min–max range {100 * spread['max_range']:.1f} pts, "
        f"`{spread['max_range_system']}`), against a mean single-draw 95% CI width of "
        f"{100 * spread['mean_ci_width']:.1f} pts; the range over draws is {verdict}."
    )


def sft_conclusions(
    sft_metrics: dict[str, dict[str, Any]], funnels: dict[str, dict[str, Any]]
) -> list[str]:
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
    losses = {
        v: m.get("eval_loss") for v, m in sft_metrics.items() if m.get("eval_loss") is not None
    }
    if losses:
        best = min(losses, key=losses.get)
        base = next(
            (m.get("base_eval_loss") for m in sft_metrics.values() if m.get("base_eval_loss")),
            None,
        )
        text = (
            f"SFT: variant `{best}` has the lowest held-out loss ({losses[best]:.3f}, "
            f"perplexity {sft_metrics[best].get('perplexity', float('nan')):.2f})"
        )
        others = [f"`{v}` {loss:.3f}" for v, loss in losses.items() if v != best]
        if others:
            text += "; " + ", ".join(others)
        if base is not None:
            text += f"; the base model without an adapter has {base:.3f}"
        out.append(text + ".")
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
        "saiga": read_json(inputs["saiga_stats"]),
        "saiga_figures": figure_links(inputs["saiga_figures"], report_dir),
        "eval": summary,
        **{name: text.strip() for name, text in tables.items()},
        "rnn_figure": rel(inputs["rnn_figure"]),
        "eval_figures": {
            name: rel(Path(inputs["eval_figures"]) / file) for name, file in summary_fig.items()
        },
        "eval_conclusions": eval_conclusions(summary),
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
        "sft_conclusions": sft_conclusions(sft_metrics, funnels),
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
