"""The report's tables and the one set of formatting filters every number goes through.

Compute stages write data (JSON, parquet); the report stage renders every table from it with
these functions, embeds them in reports/report.md and also writes them to reports/tables/ for
readers who want a table alone. The same filters are the Jinja filters of the report template,
so a percentage, a difference or a p-value reads the same everywhere.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from llmlab.config import GenerationConfig
from llmlab.schemas import BASE_SYSTEM as BASE

DASH = "–"  # a missing value


# --------------------------------------------------------------------------- filters


def pct(x: float | None, digits: int = 1) -> str:
    """A proportion as a percentage: 0.612 -> "61.2%"."""
    return DASH if x is None else f"{100 * x:.{digits}f}%"


def pts(x: float | None) -> str:
    """A difference of two proportions, in percentage points: 0.032 -> "+3.2 pts"."""
    return DASH if x is None else f"{100 * x:+.1f} pts"


def with_ci(value: str, low: str, high: str) -> str:
    return f"{value} [{low}, {high}]"


def p_value(p: float | None) -> str:
    if p is None:
        return DASH
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def signed(x: float | None, digits: int = 3) -> str:
    """A signed difference of two scores (ECE, Brier, log loss): -0.0412 -> "-0.041"."""
    return DASH if x is None else f"{x:+.{digits}f}"


def num(x: float | int | None, digits: int = 2) -> str:
    if x is None:
        return DASH
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def md_cell(text: Any) -> str:
    """Any value as one GitHub table cell that renders as written: HTML-escaped (model output
    may hold tags or `<|eot_id|>`-like markers), pipes escaped, newlines as <br>."""
    text = html.escape(str(text).strip(), quote=False).replace("|", "\\|")
    return "<br>".join(line.rstrip() for line in text.splitlines()) or "*(empty)*"


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()
) -> str:
    """A GitHub table; columns whose index is in `numeric` are right-aligned."""
    align = ["---:" if i in numeric else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


FILTERS = {
    "pct": pct,
    "pts": pts,
    "p_value": p_value,
    "num": num,
    "signed": signed,
    "md_cell": md_cell,
}


# --------------------------------------------------------------------------- evaluation


def _ci(value: float | None, ci: Sequence[float | None]) -> str:
    return with_ci(pct(value), pct(ci[0]), pct(ci[1]))


def _diff_ci(value: float, ci: Sequence[float]) -> str:
    return with_ci(pts(value), pts(ci[0]), pts(ci[1]))


def _level(level: float) -> str:
    return f"{100 * level:.1f}".removesuffix(".0") + "%"


def _verdict(test: Mapping[str, Any]) -> str:
    """A corrected p-value, in bold when significant."""
    text = p_value(test["p_adjusted"])
    return f"**{text}**" if test["significant"] else text


def eval_tables(summary: Mapping[str, Any]) -> str:
    """All systems, calibration gains and paired tests of results/eval/summary.json."""
    n = summary["n_reviews"]
    systems = [
        [
            s["model"],
            s["prompt"],
            s["shots"],
            s["strategy"],
            s["backend"],
            s["calibration"],
            _ci(s["accuracy"], (s["ci_low"], s["ci_high"])),
            pct(s["macro_f1"]),
            pct(s["predicted_positive_rate"]),
            pct(s["invalid_rate"]),
            num(s["prompts_per_second"], 1),
        ]
        for s in summary["systems"]
    ]
    headers = ["Model", "Prompt", "Shots", "Strategy", "Backend", "Calibration"]
    headers += ["Accuracy [95% CI]", "Macro-F1", "Pred. positive", "Invalid", "Prompts/s"]
    parts = [
        f"### All systems ({n} validation reviews; 95% Wilson CI)",
        "",
        markdown_table(headers, systems, numeric=range(6, 11)),
    ]
    gains = summary["calibration_gains"]
    if gains:
        rows = [
            [
                g["model"],
                g["prompt"],
                g["shots"],
                g["strategy"],
                g["calibration"],
                _ci(g["accuracy_uncalibrated"], g["accuracy_uncalibrated_ci"]),
                _ci(g["accuracy_calibrated"], g["accuracy_calibrated_ci"]),
                _diff_ci(g["gain"], g["gain_ci"]),
                f"{pct(g['predicted_positive_rate_uncalibrated'])} → "
                f"{pct(g['predicted_positive_rate_calibrated'])}",
                _verdict(g["test"]),
            ]
            for g in gains
        ]
        level = _level(gains[0]["test"]["level"])
        headers = ["Model", "Prompt", "Shots", "Strategy", "Calibration", "Accuracy uncal."]
        headers += ["Accuracy cal.", f"Gain [{level} CI]", "Pred. positive uncal. → cal."]
        headers += ["McNemar p (corrected)"]
        parts += [
            "",
            "### Calibration (the same system, uncalibrated vs calibrated)",
            "",
            f"Both read as the argmax of their label scores; Bonferroni over the {len(gains)} "
            f"pairs: intervals at {level}, p-values multiplied by {len(gains)}.",
            "",
            markdown_table(headers, rows, numeric=range(5, 10)),
        ]
    pairs = summary["fewshot_effect"].get("pairs", [])
    if pairs:
        rows = [
            [
                p["model"],
                p["prompt"],
                f"{p['shots']} {p['strategy']}",
                p["calibration"],
                pct(p["accuracy_zero_shot"]),
                pct(p["accuracy_few_shot"]),
                _diff_ci(p["difference"], p["difference_ci"]),
                _verdict(p["test"]),
            ]
            for p in pairs
        ]
        level = _level(pairs[0]["test"]["level"])
        headers = ["Model", "Prompt", "Few-shot", "Calibration", "Accuracy 0-shot"]
        headers += ["Accuracy few-shot", f"Difference [{level} CI]", "McNemar p (corrected)"]
        parts += [
            "",
            "### Few-shot vs zero-shot (the same prompt and calibration)",
            "",
            f"Bonferroni over the {len(pairs)} pairs: intervals at {level}, p-values "
            f"multiplied by {len(pairs)}.",
            "",
            markdown_table(headers, rows, numeric=range(4, 8)),
        ]
    tests = []
    for model, by_shots in summary["fewshot_effect"]["best"].items():
        for shots, entry in by_shots.items():
            for label, t in entry.items():
                if t:
                    tests.append([f"{model}: best {shots} vs best 0-shot ({label})", t])
    if summary["llm_vs_baseline"]:
        tests.append(["best LLM vs best baseline", summary["llm_vs_baseline"]])
    if tests:
        rows = [
            [
                name,
                t["a"],
                t["b"],
                _diff_ci(t["difference"], t["difference_ci"]),
                f"{t['only_a']} / {t['only_b']}",
                p_value(t["p_value"]),
            ]
            for name, t in tests
        ]
        headers = ["Comparison", "A", "B", "Difference [95% CI]", "A only / B only", "McNemar"]
        parts += [
            "",
            "### Best against best (accuracy difference A − B; descriptive)",
            "",
            "A and B were picked as the best on these same reviews, which favours them: the "
            "intervals and p-values ignore that selection and are not read as tests.",
            "",
            markdown_table(headers, rows, numeric=(3, 4)),
        ]
    parts += ["", *(f"Note: {note}" for note in summary.get("notes", [])), ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- probability, draws


def _score_ci(value: float | None, ci: Sequence[float | None], digits: int = 3) -> str:
    return with_ci(num(value, digits), num(ci[0], digits), num(ci[1], digits))


def _change_ci(value: float | None, ci: Sequence[float | None], digits: int = 3) -> str:
    return with_ci(signed(value, digits), signed(ci[0], digits), signed(ci[1], digits))


def _fixed(x: float | None, digits: int = 3) -> str:
    """A score with a fixed number of decimals (num() drops them for whole numbers)."""
    return DASH if x is None else f"{x:.{digits}f}"


def probability_tables(summary: Mapping[str, Any]) -> str:
    """Calibration error / Brier / log loss per system and their change under calibration
    (summary `probability`)."""
    prob = summary.get("probability")
    if not prob:
        return ""
    view, bins = prob["view"], prob["bins"]

    def ci(s: Mapping[str, Any], key: str) -> str:
        low, high = s[f"{key}_ci"]
        return with_ci(_fixed(s[key]), _fixed(low), _fixed(high))

    rows = [
        [
            md_cell(s["system"]),
            s["calibration"],
            ci(s, "ce_l2"),
            _fixed(s["ece_plugin"]),
            ci(s, "brier"),
            ci(s, "log_loss"),
        ]
        for s in prob["systems"]
    ]
    headers = ["System", "Calibration", "L2 calibration error, debiased", "Plug-in ECE (no CI)"]
    headers += ["Brier", "Log loss (nats)"]
    parts = [
        f"### Probability quality ({view}; {bins} equal-width bins; 95% CI; lower is better)",
        "",
        "L2 calibration error: the square root of Kumar et al.'s (2019) debiased squared "
        "calibration error, with a bias-corrected bootstrap CI. Plug-in ECE: the classic "
        "binned mean |gap| on the same bins, biased upward on few reviews per bin.",
        "",
        markdown_table(headers, rows, numeric=range(2, 6)),
    ]
    changes = prob.get("calibration_changes") or []
    if changes:
        level = changes[0]["ce_level"]
        rows = [
            [
                md_cell(c["uncalibrated_system"]),
                c["calibration"],
                f"{_fixed(c['ce_l2_uncalibrated'])} → {_fixed(c['ce_l2_calibrated'])}",
                _change_ci(c["ce_squared_change"], c["ce_squared_change_ci"], 4),
                _change_ci(c["brier_change"], c["brier_change_ci"]),
                _change_ci(c["log_loss_change"], c["log_loss_change_ci"]),
            ]
            for c in changes
        ]
        pct_level = f"{100 * level:.2f}".rstrip("0").rstrip(".")
        headers = ["Uncalibrated system", "Calibration", "L2 cal. error uncal. → cal."]
        headers += [f"Δ squared cal. error [{pct_level}% CI]", "Δ Brier [95% CI]"]
        headers += ["Δ log loss [95% CI]"]
        method = "paired bootstrap, bias-corrected percentile"
        family = (
            f" The Δ squared calibration error CIs ({method}) are Bonferroni-corrected over "
            f"these {len(changes)} changes (level 1 − 0.05/{len(changes)})."
            if len(changes) > 1
            else f" The Δ squared calibration error CI: {method}."
        )
        parts += [
            "",
            "### Probability quality under calibration (calibrated − uncalibrated, paired)",
            "",
            "Negative is better." + family,
            "",
            markdown_table(headers, rows, numeric=range(2, 6)),
        ]
    return "\n".join(parts) + "\n"


def draws_table(summary: Mapping[str, Any]) -> str:
    """Accuracy over the few-shot draws of each setting next to the single-draw CI (summary
    `draw_spread`)."""
    spread = summary.get("draw_spread")
    if not spread or not spread["settings"]:
        return ""
    rows = [
        [
            r["model"],
            r["prompt"],
            r["shots"],
            r["strategy"],
            r["calibration"],
            r["n_draws"],
            pct(r["mean"]),
            pts(r["sd"]).removeprefix("+") if r["sd"] is not None else DASH,
            f"{pct(r['min'])} – {pct(r['max'])}",
            pts(r["range"]).removeprefix("+"),
            _ci(r["accuracy_draw0"], (r["ci_low"], r["ci_high"])),
            pts(r["ci_width"]).removeprefix("+"),
            _verdict(r) if "p_adjusted" in r else DASH,
        ]
        for r in spread["settings"]
    ]
    headers = ["Model", "Prompt", "Shots", "Strategy", "Calibration", "Draws", "Mean accuracy"]
    headers += ["SD", "Min – max", "Range", "Draw 0 [95% CI]", "CI width"]
    headers += ["Cochran's Q p (corrected)"]
    k = spread["draws"]
    title = (
        f"### Variance over few-shot draws ({k} draw{'s' if k != 1 else ''} of each fixed "
        "example set; draw 0 is the system of the tables above)"
    )
    return "\n".join([title, "", markdown_table(headers, rows, numeric=range(5, 13))]) + "\n"


def sensitivity_table(summary: Mapping[str, Any]) -> str:
    """Accuracy spread across prompts x strategies x draws per (model, shots, calibration),
    the spread per factor and the computed conclusion (summary `sensitivity`)."""
    sens = summary.get("sensitivity")
    if not sens:
        return ""
    rows = [
        [
            r["model"],
            r["shots"],
            r["calibration"],
            r["n_systems"],
            r["n_prompts"],
            r["n_strategies"],
            pct(r["min"]),
            pct(r["max"]),
            pct(r["mean"]),
            pts(r["sd"]).removeprefix("+") if r["sd"] is not None else DASH,
            pts(r["range"]).removeprefix("+"),
        ]
        for r in sens["table"]
    ]
    headers = ["Model", "Shots", "Calibration", "Systems", "Prompts", "Strategies", "Min"]
    headers += ["Max", "Mean", "SD", "Range"]
    factor_rows = [
        [
            f["factor"],
            pts(f["spread"]).removeprefix("+") if f["spread"] is not None else DASH,
            f["groups"],
            f["levels"],
            f"{f['significant']} of {f['tests']}",
        ]
        for f in sens["factors"]
    ]
    parts = [
        "### Prompt sensitivity (accuracy across prompts × strategies × draws)",
        "",
        markdown_table(headers, rows, numeric=range(3, 11)),
        "",
        "Spread per choice: the mean, over otherwise equal settings, of the accuracy range "
        "across that choice's options (descriptive: the range of k options grows with k by "
        "chance alone). Significant: settings whose options differ in accuracy by Cochran's "
        f"Q on the same reviews, Bonferroni over all {len(sens['tests'])} tests.",
        "",
        markdown_table(
            ["Choice", "Mean spread", "Settings compared", "Options", "Significant"],
            factor_rows,
            (1, 2, 3, 4),
        ),
        "",
        f"Conclusion: {sens['conclusion']}",
    ]
    return "\n".join(parts) + "\n"


def errors_tables(summary: Mapping[str, Any]) -> str:
    """Accuracy by length and truncation, the hardest reviews and kappa (summary `errors`)."""
    err = summary.get("errors")
    if not err:
        return ""
    parts: list[str] = []

    def acc(r: Mapping[str, Any]) -> str:
        if "ci_low" in r:
            return _ci(r["accuracy"], (r["ci_low"], r["ci_high"]))
        return pct(r["accuracy"])

    if err["by_tokens"]:
        rows = [[md_cell(r["system"]), r["label"], r["n"], acc(r)] for r in err["by_tokens"]]
        parts += [
            f"### Accuracy by review length in the model's tokens (cut above "
            f"{err['review_tokens']} tokens)",
            "",
            markdown_table(["System", "Tokens", "Reviews", "Accuracy [95% CI]"], rows, (2, 3)),
            "",
        ]
    if err["by_words"]:
        rows = [[md_cell(r["system"]), r["label"], r["n"], acc(r)] for r in err["by_words"]]
        parts += [
            "### Accuracy by review length in words (the same buckets for every system)",
            "",
            markdown_table(["System", "Words", "Reviews", "Accuracy [95% CI]"], rows, (2, 3)),
            "",
        ]
    if err["by_truncation"]:
        rows = [
            [md_cell(r["system"]), "cut" if r["truncated"] else "whole", r["n"], acc(r)]
            for r in err["by_truncation"]
        ]
        share = ", ".join(f"`{m}` {pct(v)}" for m, v in err["truncated_share"].items())
        parts += [
            f"### Truncated vs whole reviews (reviews cut to {err['review_tokens']} tokens: "
            f"{share})",
            "",
            markdown_table(["System", "Review", "Reviews", "Accuracy [95% CI]"], rows, (2, 3)),
            "",
        ]
    if err["hardest"]:
        rows = [
            [
                r["rank"],
                r["review_id"],
                r["gold"],
                f"{r['wrong']} / {r['systems']}",
                md_cell(r["votes"]),
                md_cell(r["snippet"] if r["snippet"] is not None else DASH),
            ]
            for r in err["hardest"]
        ]
        parts += [
            f"### The {len(err['hardest'])} reviews most systems get wrong (of "
            f"{err['hardest_systems']} systems, draw 0; votes by family)",
            "",
            markdown_table(
                ["#", "review_id", "Gold", "Wrong", "Votes by family", "Snippet"], rows, (0, 1, 3)
            ),
            "",
        ]
    if err["kappa"]:
        rows = [
            [
                k["pair"],
                md_cell(k["system_a"]),
                md_cell(k["system_b"]),
                k["n"],
                pct(k["agreement"]),
                _fixed(k["kappa"]),
            ]
            for k in err["kappa"]
        ]
        parts += [
            "### Agreement between systems (Cohen's kappa; invalid outputs are a category)",
            "",
            markdown_table(["Pair", "A", "B", "Reviews", "Agreement", "Kappa"], rows, (3, 4, 5)),
            "",
        ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- SFT


def _decoding(gen: GenerationConfig) -> str:
    if gen.do_sample:
        how = f"sampling, temperature {gen.temperature}, top_p {gen.top_p}"
    else:
        how = "greedy"
    return (
        f"{how}, repetition_penalty {gen.repetition_penalty}, "
        f"max_new_tokens {gen.max_new_tokens}, seed {gen.seed}"
    )


def generations_table(df: pl.DataFrame, systems: Sequence[str], gen: GenerationConfig) -> str:
    """Side by side: one row per prompt of results/sft/generations.parquet, one column per
    system (`base`, then the variants)."""
    headers = ["#", "prompt"]
    headers += [f"{s} (no adapter)" if s == BASE else f"variant {s}" for s in systems]
    rows = []
    for (prompt_id,), group in df.group_by(["prompt_id"], maintain_order=True):
        by_system = {r["system"]: r for r in group.iter_rows(named=True)}
        cells = [str(prompt_id + 1), md_cell(group["prompt"][0])]
        for system in systems:
            row = by_system[system]
            cell = md_cell(row["answer"])
            if not row["finished"]:
                cell += " *(cut at max_new_tokens)*"
            cells.append(cell)
        rows.append(cells)
    note = (
        f"Each prompt is a user turn in the project's chat template; decoding: {_decoding(gen)}. "
        f"`{BASE}` is the same base model with the adapters disabled."
    )
    return markdown_table(headers, rows, numeric=(0,)) + "\n\n" + note + "\n"


def loss_table(metrics: Sequence[Mapping[str, Any]]) -> str:
    """train_lora's held-out loss and perplexity per variant, on the variant's own eval split
    (results/sft/<variant>/metrics.json), with the base model on the same tokens."""
    headers = ["variant", "loss (own eval split)", "perplexity", "base loss", "base perplexity"]
    headers += ["eval tokens", "steps", "LoRA r / alpha", "learning rate", "trainable params"]
    headers += ["train time (s)"]
    rows = []
    for m in metrics:
        lora, training = m.get("lora", {}), m.get("training", {})
        rows.append(
            [
                str(m["variant"]),
                num(m["eval_loss"], 3),
                num(m["perplexity"]),
                num(m.get("base_eval_loss"), 3),
                num(m.get("base_perplexity")),
                num(m.get("eval_tokens")),
                num(m.get("steps")),
                f"{lora.get('r', DASH)} / {lora.get('alpha', DASH)}",
                f"{training['learning_rate']:g}" if "learning_rate" in training else DASH,
                num(m.get("trainable_params")),
                num(m.get("train_runtime_s"), 0),
            ]
        )
    note = (
        "Loss: mean cross-entropy (nats) over every assistant token of the variant's own eval "
        "split; base: the same model without the adapter on the same tokens. The variants' "
        "eval splits differ (their data filters differ), so this column does not rank them: "
        "the common held-out set below does."
    )
    return markdown_table(headers, rows, numeric=range(1, 11)) + "\n\n" + note + "\n"
