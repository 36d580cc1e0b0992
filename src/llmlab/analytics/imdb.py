"""IMDB (`imdb_analytics`): label balance and review length (characters, words) by label.

Figures are written under stable names (FIGURES_IMDB) that the report embeds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from llmlab.analytics.common import distribution, length_summary
from llmlab.config import Config
from llmlab.errors import UserError
from llmlab.io import atomic_dir, read_parquet, write_json
from llmlab.schemas import IMDB_SCHEMA, SENTIMENTS

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

log = logging.getLogger(__name__)

FIGURES_IMDB = ("imdb_labels", "imdb_review_words")


def with_review_lengths(df: pl.DataFrame) -> pl.DataFrame:
    """Add `chars` (raw) and `words` (whitespace-separated, `<br />` tags count as spaces)."""
    return df.with_columns(
        chars=pl.col("review").str.len_chars(),
        words=pl.col("review").str.replace_all(r"<br\s*/?>", " ").str.count_matches(r"\S+"),
    )


def imdb_statistics(df: pl.DataFrame) -> dict[str, Any]:
    """Label balance, review lengths by label and overall, duplicates and `<br />` markup."""
    df = with_review_lengths(df)
    by_label = {
        label: {
            "rows": part.height,
            "chars": length_summary(part["chars"]),
            "words": length_summary(part["words"]),
        }
        for label in SENTIMENTS
        for part in [df.filter(pl.col("sentiment") == label)]
    }
    return {
        "rows": df.height,
        "labels": distribution(df, "sentiment"),
        "lengths": {
            "all": {"chars": length_summary(df["chars"]), "words": length_summary(df["words"])},
            **by_label,
        },
        "duplicate_reviews": int(df.height - df["review"].n_unique()),
        "share_with_br_tags": round(
            float(df["review"].str.contains("<br", literal=True).mean()), 4
        ),
    }


def imdb_figures(df: pl.DataFrame) -> dict[str, plt.Figure]:
    """The IMDB figures by file stem (FIGURES_IMDB)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from llmlab.plots import LABEL_PALETTE

    df = with_review_lengths(df)
    figs: dict[str, plt.Figure] = {}
    labels = df.group_by("sentiment").len("rows").sort("sentiment").to_pandas()
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.barplot(
        data=labels,
        x="sentiment",
        y="rows",
        hue="sentiment",
        palette=LABEL_PALETTE,
        ax=ax,
        legend=False,
    )
    for container in ax.containers:
        ax.bar_label(
            container,
            labels=[f"{v:,.0f} ({v / df.height:.1%})" for v in container.datavalues],
            fontsize=9,
        )
    ax.set(title="Are the labels balanced?", xlabel="sentiment", ylabel="reviews")
    ax.margins(y=0.12)
    figs["imdb_labels"] = fig

    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.histplot(
        data=df.select("words", "sentiment").to_pandas(),
        x="words",
        hue="sentiment",
        palette=LABEL_PALETTE,
        log_scale=True,
        bins=50,
        element="step",
        stat="percent",
        common_norm=False,
        ax=ax,
    )
    medians = ", ".join(
        f"{label} {df.filter(pl.col('sentiment') == label)['words'].median():.0f}"
        for label in SENTIMENTS
    )
    ax.set(
        title=f"How long are the reviews? (median words: {medians})",
        xlabel="words per review (log scale)",
        ylabel="% of the label's reviews",
    )
    figs["imdb_review_words"] = fig
    return figs


def run_imdb_analytics(cfg: Config, input: Path, figures: Path, stats: Path) -> None:
    """imdb_analytics: statistics JSON and figures of the raw IMDB table."""
    from llmlab.plots import save_figure, setup_theme

    df = read_parquet(input, IMDB_SCHEMA)
    if df.height == 0:
        raise UserError(f"{input}: no rows")
    unknown = sorted(set(df["sentiment"].drop_nulls().unique()) - set(SENTIMENTS))
    if unknown or df["sentiment"].null_count():
        raise UserError(
            f"{input}: column 'sentiment' has values outside {SENTIMENTS}: {unknown or [None]}"
        )
    result = imdb_statistics(df)
    setup_theme()
    figs = imdb_figures(df)
    with atomic_dir(figures) as tmp:
        for stem, fig in figs.items():
            save_figure(fig, tmp / f"{stem}.png", dpi=cfg.analytics.dpi)
    write_json(result, stats)
