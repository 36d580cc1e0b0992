"""Render reports/report.md, and its tables as files, from the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Option, Out

PARAMS = ("report",)


def run(
    cfg: Config,
    *,
    imdb_stats: Annotated[Path, In("JSON")],
    imdb_figures: Annotated[Path, In("folder")],
    imdb_split: Annotated[Path, In("JSON: split sizes, train rows dropped as twins of val")],
    saiga_stats: Annotated[Path, In("JSON")],
    saiga_figures: Annotated[Path, In("folder")],
    funnels: Annotated[list[Path], In("JSON per variant")],
    funnel_figures: Annotated[list[Path], In("PNG per variant")],
    eval_summary: Annotated[Path, In("JSON")],
    eval_figures: Annotated[Path, In("folder")],
    rnn_figure: Annotated[Path, In("RNN training-curve PNG")],
    train_logs: Annotated[list[Path], In("JSON per variant")],
    sft_metrics: Annotated[list[Path], In("JSON per variant")],
    loss_curves: Annotated[list[Path], In("PNG per variant")],
    generations: Annotated[Path, In("parquet")],
    format_metrics: Annotated[Path, In("JSON: format-following metrics per system")],
    judge: Annotated[Path, In("JSON: judged win rates and position consistency")],
    merges: Annotated[list[Path], In("JSON per variant: merge_adapter's checks")],
    benchmarks: Annotated[Path | None, Option("Snakemake benchmark folder (optional)")] = None,
    out: Annotated[Path, Out("report markdown")],
    eval_table: Annotated[Path, Out("markdown: every evaluated system, calibration, tests")],
    generations_table: Annotated[Path, Out("markdown: the side-by-side generations")],
    loss_table: Annotated[Path, Out("markdown: held-out loss per variant")],
) -> None:
    from llmlab.report import run_report

    run_report(
        cfg,
        out=out,
        eval_table=eval_table,
        generations_table=generations_table,
        loss_table=loss_table,
        benchmarks=benchmarks,
        imdb_stats=imdb_stats,
        imdb_figures=imdb_figures,
        imdb_split=imdb_split,
        saiga_stats=saiga_stats,
        saiga_figures=saiga_figures,
        funnels=funnels,
        funnel_figures=funnel_figures,
        eval_summary=eval_summary,
        eval_figures=eval_figures,
        rnn_figure=rnn_figure,
        train_logs=train_logs,
        sft_metrics=sft_metrics,
        loss_curves=loss_curves,
        generations=generations,
        format_metrics=format_metrics,
        judge=judge,
        merges=merges,
    )
