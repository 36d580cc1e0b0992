"""saiga (`saiga_analytics`): what the raw chat data looks like, one figure per question.

Distributions of language, topic, complexity, judge score, source and turns; the cross-views
that decide the SFT filter (score by topic, complexity by language); and length statistics
of bot replies (characters and tokens of the SFT tokenizer) and of dialogues (messages,
turns), overall and for the Russian subset. Figures are written under stable names
(FIGURES_SAIGA) that the report embeds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from llmlab.analytics.common import distribution, length_summary
from llmlab.config import Config
from llmlab.errors import UserError
from llmlab.io import atomic_dir, read_parquet, write_json
from llmlab.schemas import SAIGA_SCHEMA, SAIGA_TOPICS

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

log = logging.getLogger(__name__)

OFF_LIST = "off-list"  # sonnet_topic values outside the judge's 24 labels
RUSSIAN = "Russian"
SCORE_THRESHOLDS = (7, 8, 9)  # shares reported: the usual training filters
TURNS_CAP = 10  # the turns figure groups longer dialogues as "10+"

FIGURES_SAIGA = (
    "saiga_languages",
    "saiga_topics",
    "saiga_complexity_by_language",
    "saiga_opus_score",
    "saiga_score_by_topic",
    "saiga_sources",
    "saiga_turns",
    "saiga_reply_tokens",
)


def with_topic_group(df: pl.DataFrame) -> pl.DataFrame:
    """Add `topic`: sonnet_topic, or "off-list" for values outside the 24 labels."""
    return df.with_columns(
        topic=pl.when(pl.col("sonnet_topic").is_in(SAIGA_TOPICS))
        .then(pl.col("sonnet_topic"))
        .otherwise(pl.lit(OFF_LIST))
    )


# --------------------------------------------------------------------------- saiga


def bot_replies(df: pl.DataFrame) -> pl.DataFrame:
    """One row per bot message: `language` of its dialogue and `content`."""
    return (
        df.select("language", "messages")
        .explode("messages")
        .unnest("messages")
        .filter(pl.col("role") == "bot")
        .select("language", "content")
    )


def length_statistics(
    df: pl.DataFrame, replies: pl.DataFrame, reply_tokens: np.ndarray
) -> dict[str, Any]:
    """Lengths of bot replies (chars, tokens) and dialogues (messages, turns) of `df`.

    `replies` is `bot_replies(df)` and `reply_tokens` its token counts, in the same order.
    """
    replies = replies.with_columns(
        chars=pl.col("content").str.len_chars(), tokens=pl.Series(reply_tokens, dtype=pl.Int64)
    )
    return {
        "dialogues": df.height,
        "bot_replies": replies.height,
        "bot_reply_chars": length_summary(replies["chars"]),
        "bot_reply_tokens": length_summary(replies["tokens"]),
        "dialogue_messages": length_summary(df["messages"].list.len()),
        "dialogue_turns": length_summary(df["turns"]),
    }


def saiga_statistics(
    df: pl.DataFrame, reply_tokens: np.ndarray, tokenizer_name: str
) -> dict[str, Any]:
    """Everything the saiga figures show, as JSON-able numbers.

    `reply_tokens`: tokens of each bot reply, in `bot_replies(df)` order.
    """
    df = with_topic_group(df)
    replies = bot_replies(df)
    is_russian = (replies["language"] == RUSSIAN).to_numpy()
    russian = df.filter(pl.col("language") == RUSSIAN)
    roles = pl.col("messages").list.eval(pl.element().struct.field("role"))
    first_bot = roles.list.eval((pl.element() == "bot").arg_max()).list.first()
    first_user = roles.list.eval((pl.element() == "user").arg_max()).list.first()
    counts = df.select(
        with_system=(roles.list.first() == "system").sum(),
        single_turn=(pl.col("turns") == 1).sum(),
        no_user_before_first_bot=(~roles.list.contains("user") | (first_user > first_bot)).sum(),
        is_bad_by_regex=pl.col("is_bad_by_regex").sum(),
        russian_score_ge_8=((pl.col("language") == RUSSIAN) & (pl.col("opus_score") >= 8)).sum(),
    ).row(0, named=True)
    score_by_topic = (
        df.group_by("topic")
        .agg(
            rows=pl.len(),
            mean_opus_score=pl.col("opus_score").mean().round(2),
            **{
                f"share_score_ge_{t}": (pl.col("opus_score") >= t).mean().round(4)
                for t in SCORE_THRESHOLDS
            },
        )
        .sort("mean_opus_score", descending=True)
    )
    complexity_by_language = (
        df.group_by("language", "sonnet_complexity")
        .len("rows")
        .with_columns(
            share_of_language=(pl.col("rows") / pl.col("rows").sum().over("language")).round(4)
        )
        .sort("language", "sonnet_complexity")
    )
    return {
        "rows": df.height,
        "tokenizer": tokenizer_name,
        "distributions": {
            column: distribution(df, column)
            for column in (
                "language",
                "topic",
                "sonnet_complexity",
                "opus_score",
                "source",
                "turns",
            )
        },
        "score_shares": {
            f"opus_score_ge_{t}": round(float((df["opus_score"] >= t).mean()), 4)
            for t in SCORE_THRESHOLDS
        },
        "counts": counts,
        "score_by_topic": score_by_topic.to_dicts(),
        "complexity_by_language": complexity_by_language.to_dicts(),
        "lengths": {
            "all": length_statistics(df, replies, reply_tokens),
            RUSSIAN: length_statistics(
                russian, replies.filter(pl.Series(is_russian)), reply_tokens[is_russian]
            ),
        },
    }


def _bar_labels(ax: plt.Axes, fmt: str = "{:,.0f}") -> None:
    for container in ax.containers:
        ax.bar_label(
            container, labels=[fmt.format(v) for v in container.datavalues], fontsize=8, padding=2
        )


def saiga_figures(
    df: pl.DataFrame, reply_tokens: np.ndarray, tokenizer_name: str
) -> dict[str, plt.Figure]:
    """The saiga figures by file stem (FIGURES_SAIGA), each answering one question."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = with_topic_group(df)
    figs: dict[str, plt.Figure] = {}

    lang = df.group_by("language").len("rows").sort("rows", descending=True).to_pandas()
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=lang, x="language", y="rows", ax=ax, color=sns.color_palette()[0])
    total = df.height
    ax.bar_label(
        ax.containers[0], labels=[f"{r:,} ({r / total:.0%})" for r in lang["rows"]], fontsize=9
    )
    ax.set(title="Which languages are the dialogues in?", xlabel="language", ylabel="dialogues")
    ax.margins(y=0.12)
    figs["saiga_languages"] = fig

    topics = df.group_by("topic").len("rows").sort("rows", descending=True).to_pandas()
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(topics) + 1.5))
    sns.barplot(data=topics, x="rows", y="topic", ax=ax, color=sns.color_palette()[0])
    _bar_labels(ax)
    ax.set(title="What are the dialogues about? (sonnet_topic)", xlabel="dialogues", ylabel="topic")
    ax.margins(x=0.1)
    figs["saiga_topics"] = fig

    comp = (
        df.group_by("language", "sonnet_complexity")
        .len("rows")
        .with_columns(share=pl.col("rows") / pl.col("rows").sum().over("language") * 100)
        .sort("language", "sonnet_complexity")
        .to_pandas()
    )
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.barplot(
        data=comp,
        x="language",
        y="share",
        hue="sonnet_complexity",
        hue_order=[c for c in ("easy", "medium", "hard") if c in set(comp["sonnet_complexity"])]
        or None,
        order=list(lang["language"]),
        ax=ax,
    )
    _bar_labels(ax, "{:.0f}%")
    ax.set(
        title="How hard are the prompts in each language?",
        xlabel="language",
        ylabel="% of the language's dialogues",
    )
    # Room above the bars for a one-row legend that covers none of them.
    ax.set_ylim(0, float(comp["share"].max()) * 1.3)
    ax.legend(title="sonnet_complexity", ncol=3, loc="upper center")
    figs["saiga_complexity_by_language"] = fig

    scores = df.group_by("opus_score").len("rows").sort("opus_score").to_pandas()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    # Numeric x (native_scale): score 5 sits at 5 even when no row has it.
    sns.barplot(
        data=scores,
        x="opus_score",
        y="rows",
        ax=ax,
        color=sns.color_palette()[0],
        native_scale=True,
    )
    ax.set_xticks(range(1, 11))
    ax.grid(axis="x", visible=False)
    _bar_labels(ax)
    shares = ", ".join(f"≥{t}: {(df['opus_score'] >= t).mean():.0%}" for t in SCORE_THRESHOLDS)
    ax.set(
        title=f"How does the judge score the answers? ({shares})",
        xlabel="opus_score (1 = bad, 10 = fully correct)",
        ylabel="dialogues",
    )
    ax.margins(y=0.1)
    figs["saiga_opus_score"] = fig

    # Share of each score within a topic, topics ordered by mean score.
    heat = (
        df.group_by("topic", "opus_score")
        .len("rows")
        .with_columns(pct=pl.col("rows") / pl.col("rows").sum().over("topic") * 100)
        .pivot(on="opus_score", index="topic", values="pct", sort_columns=True)
        .fill_null(0.0)
    )
    order = (
        df.group_by("topic")
        .agg(mean=pl.col("opus_score").mean(), n=pl.len())
        .sort("mean", descending=True)
    )
    heat = order.join(heat, on="topic", how="left", maintain_order="left")
    matrix = heat.drop("topic", "mean", "n").to_pandas()
    matrix.index = [
        f"{t} (n={n:,}, mean {m:.1f})" for t, m, n in heat.select("topic", "mean", "n").iter_rows()
    ]
    fig, ax = plt.subplots(figsize=(10, 0.33 * len(matrix) + 2))
    sns.heatmap(
        matrix,
        annot=True,
        fmt=".0f",
        cmap="Blues",
        cbar_kws={"label": "% of the topic"},
        ax=ax,
        annot_kws={"fontsize": 7},
    )
    ax.set(
        title="Which topics get low judge scores? (% of each topic per score)",
        xlabel="opus_score",
        ylabel="topic",
    )
    figs["saiga_score_by_topic"] = fig

    sources = (
        df.group_by("source", "language")
        .len("rows")
        .with_columns(total=pl.col("rows").sum().over("source"))
        .sort(["total", "source", "language"], descending=[True, False, False])
        .to_pandas()
    )
    source_order = list(dict.fromkeys(sources["source"]))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(source_order) + 2))
    sns.barplot(
        data=sources,
        x="rows",
        y="source",
        hue="language",
        order=source_order,
        ax=ax,
        hue_order=list(lang["language"]),
    )
    ax.set(
        title="Where do the dialogues come from, in which language?",
        xlabel="dialogues",
        ylabel="source",
    )
    ax.legend(title="language", loc="lower right")
    figs["saiga_sources"] = fig

    turns = (
        df.with_columns(turns=pl.col("turns").clip(upper_bound=TURNS_CAP))
        .group_by("turns")
        .len("rows")
        .sort("turns")
        .to_pandas()
    )
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.barplot(
        data=turns, x="turns", y="rows", ax=ax, color=sns.color_palette()[0], native_scale=True
    )
    _bar_labels(ax)
    ticks = list(turns["turns"])
    ax.set_xticks(ticks, [f"{t}+" if t == TURNS_CAP else str(t) for t in ticks])
    ax.grid(axis="x", visible=False)
    single = (df["turns"] == 1).mean()
    ax.set(
        title=f"How many bot turns per dialogue? ({single:.0%} single-turn)",
        xlabel="turns (bot messages)",
        ylabel="dialogues",
    )
    ax.margins(y=0.1)
    figs["saiga_turns"] = fig

    replies = bot_replies(df).with_columns(
        tokens=pl.Series(reply_tokens, dtype=pl.Int64).clip(lower_bound=1),
        subset=pl.when(pl.col("language") == RUSSIAN)
        .then(pl.lit(RUSSIAN))
        .otherwise(pl.lit("other languages")),
    )
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.histplot(
        data=replies.select("tokens", "subset").to_pandas(),
        x="tokens",
        hue="subset",
        hue_order=[s for s in (RUSSIAN, "other languages") if s in set(replies["subset"])],
        log_scale=True,
        bins=50,
        element="step",
        stat="percent",
        common_norm=False,
        ax=ax,
    )
    for name, series in ((RUSSIAN, replies.filter(pl.col("subset") == RUSSIAN)["tokens"]),):
        if series.len():
            p95 = series.quantile(0.95, "linear")
            ax.axvline(p95, color="black", linestyle="--", linewidth=1)
            ax.annotate(
                f"{name} p95 = {p95:,.0f}",
                (p95, 0.95),
                xycoords=("data", "axes fraction"),
                ha="right",
                fontsize=8,
                xytext=(-4, 0),
                textcoords="offset points",
            )
    ax.set(
        title="How long are the bot replies?",
        xlabel=f"tokens per bot reply ({tokenizer_name} tokenizer, log scale)",
        ylabel="% of the subset's replies",
    )
    figs["saiga_reply_tokens"] = fig
    return figs


def run_saiga_analytics(
    cfg: Config, input: Path, tokenizer: Path, figures: Path, stats: Path
) -> None:
    """saiga_analytics: statistics JSON and figures of the raw saiga table."""
    from llmlab.plots import save_figure, setup_theme
    from llmlab.sft_data.chat import count_tokens, load_tokenizer

    df = read_parquet(input, SAIGA_SCHEMA)
    if df.height == 0:
        raise UserError(f"{input}: no rows")
    tok = load_tokenizer(tokenizer)
    replies = bot_replies(df)
    log.info("tokenizing %d bot replies of %d dialogues", replies.height, df.height)
    reply_tokens = count_tokens(tok, replies["content"].fill_null("").to_list(), desc="bot replies")
    tokenizer_name = tokenizer.name
    result = saiga_statistics(df, reply_tokens, tokenizer_name)
    setup_theme()
    figs = saiga_figures(df, reply_tokens, tokenizer_name)
    with atomic_dir(figures) as tmp:
        for stem, fig in figs.items():
            save_figure(fig, tmp / f"{stem}.png", dpi=cfg.analytics.dpi)
    write_json(result, stats)


# --------------------------------------------------------------------------- IMDB
