"""filter_saiga: the variant's heuristics in order, a funnel of what each removed, a sample.

Every step is a function `(df, settings, context) -> df` over the raw saiga schema, named
after the config key it reads (`FilterConfig` field order is the application order). Steps
keep the schema; only `single_turn` with `system_message: strip` edits rows (it removes the
leading system message).

Duplicates: among duplicates the preferred row survives: higher `opus_score` first, then the
earlier row in the input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from llmlab.config import (
    FilterConfig,
    FilterStep,
    MinScoreStep,
    NearDuplicatesStep,
    RegexStep,
    SingleTurnStep,
    TokenLengthStep,
    ValueSetStep,
)
from llmlab.schemas import SAIGA_COMPLEXITIES, SAIGA_LANGUAGES, SAIGA_ROLES, SAIGA_TOPICS
from llmlab.sft_data.dedup import exact_duplicate_mask, near_duplicate_mask

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

log = logging.getLogger(__name__)

# Token count of each dialogue as it will be trained (renamed, templated, tokenized).
TokenCounter = Callable[[pl.Series], np.ndarray]

# Column read by each value-set step.
VALUE_SET_COLUMNS = {
    "language": "language",
    "sonnet_complexity": "sonnet_complexity",
    "sonnet_topic": "sonnet_topic",
    "source": "source",
}
# Value sets known to be closed: a config value outside them is a typo, not a rare value.
KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    "language": SAIGA_LANGUAGES,
    "sonnet_complexity": SAIGA_COMPLEXITIES,
    "sonnet_topic": SAIGA_TOPICS,
}

_ROLES = pl.col("messages").list.eval(pl.element().struct.field("role"))
_CONTENTS = pl.col("messages").list.eval(pl.element().struct.field("content"))


@dataclass
class FunnelStep:
    step: str
    enabled: bool
    rows: int  # rows left after the step
    removed: int
    settings: dict[str, Any] = field(default_factory=dict)
    details: dict[str, int] = field(default_factory=dict)  # removals by reason, if any


@dataclass
class Funnel:
    input_rows: int
    steps: list[FunnelStep] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.steps[-1].rows if self.steps else self.input_rows

    def to_json(self) -> dict[str, Any]:
        return {"input_rows": self.input_rows, "steps": [asdict(s) for s in self.steps]}

    def describe(self) -> str:
        """One line: `input 41609 -> well_formed 41550 -> ... -> sample 2500`."""
        parts = [f"input {self.input_rows}"]
        parts += [f"{s.step} {s.rows}" for s in self.steps if s.enabled]
        return " -> ".join(parts)


# --------------------------------------------------------------------------- config checks


def check_filter_config(cfg: FilterConfig, where: str) -> None:
    """Raise ValueError(`<where>.<key>: ...`) for values the data cannot match (typos)."""
    for step, known in KNOWN_VALUES.items():
        settings: ValueSetStep = getattr(cfg, step)
        for key in ("keep", "drop"):
            unknown = sorted(set(getattr(settings, key) or ()) - set(known))
            if unknown:
                raise ValueError(
                    f"{where}.{step}.{key}: {unknown} not among the saiga values "
                    f"({', '.join(known)})"
                )
    for i, pattern in enumerate(cfg.extra_regex.patterns):
        try:
            pl.select(pl.lit("").str.contains(pattern))
        except pl.exceptions.ComputeError as err:
            msg = " ".join(str(err).split())
            raise ValueError(
                f"{where}.extra_regex.patterns[{i}]: not a valid regex ({msg})"
            ) from None


# --------------------------------------------------------------------------- steps


def well_formed_reasons(df: pl.DataFrame) -> pl.Series:
    """Why each dialogue is unusable for SFT (null when it is fine), first reason only.

    Usable: roles among system/user/bot, at most one system message and only first, then
    user and bot alternating from user and ending with bot, no empty message, and `turns`
    equal to the number of bot messages.
    """
    expected = (
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("user")).otherwise(pl.lit("bot"))
    )
    rest = _ROLES.list.slice((_ROLES.list.first() == "system").fill_null(False).cast(pl.Int64))
    first_bot = _ROLES.list.eval((pl.element() == "bot").arg_max()).list.first()
    first_user = _ROLES.list.eval((pl.element() == "user").arg_max()).list.first()
    reason = (
        pl.when(pl.col("messages").list.len().fill_null(0) == 0)
        .then(pl.lit("no_messages"))
        .when(_ROLES.list.eval(~pl.element().is_in(SAIGA_ROLES)).list.any().fill_null(True))
        .then(pl.lit("unknown_role"))
        .when(_CONTENTS.list.eval(pl.element().fill_null("").str.strip_chars() == "").list.any())
        .then(pl.lit("empty_message"))
        .when(
            ~_ROLES.list.contains("user") | ~_ROLES.list.contains("bot") | (first_user > first_bot)
        )
        .then(pl.lit("no_user_before_bot"))
        .when(rest.list.contains("system"))
        .then(pl.lit("system_not_first"))
        .when(~rest.list.eval(pl.element() == expected).list.all() | (_ROLES.list.last() != "bot"))
        .then(pl.lit("roles_do_not_alternate"))
        .when(_ROLES.list.count_matches("bot") != pl.col("turns"))
        .then(pl.lit("turns_mismatch"))
    )
    return df.select(reason.alias("reason")).to_series()


def _well_formed(df: pl.DataFrame, _: FilterStep, ctx: _Context) -> pl.DataFrame:
    reasons = well_formed_reasons(df)
    ctx.details = {
        str(k): int(v) for k, v in reasons.drop_nulls().value_counts(sort=True).iter_rows()
    }
    return df.filter(reasons.is_null())


def _value_set(column: str) -> Callable[[pl.DataFrame, ValueSetStep, _Context], pl.DataFrame]:
    def step(df: pl.DataFrame, s: ValueSetStep, _: _Context) -> pl.DataFrame:
        keep = pl.lit(True) if s.keep is None else pl.col(column).is_in(s.keep)
        return df.filter((keep & ~pl.col(column).is_in(s.drop)).fill_null(False))

    return step


def _single_turn(df: pl.DataFrame, s: SingleTurnStep, _: _Context) -> pl.DataFrame:
    df = df.filter(pl.col("turns") == 1)
    has_system = _ROLES.list.contains("system")
    if s.system_message == "drop_row":
        return df.filter(~has_system)
    if s.system_message == "strip":
        return df.with_columns(
            pl.col("messages").list.filter(pl.element().struct.field("role") != "system")
        )
    return df


def _opus_score(df: pl.DataFrame, s: MinScoreStep, _: _Context) -> pl.DataFrame:
    return df.filter((pl.col("opus_score") >= s.min).fill_null(False))


def _is_bad_by_regex(df: pl.DataFrame, _: FilterStep, __: _Context) -> pl.DataFrame:
    return df.filter(~pl.col("is_bad_by_regex").fill_null(False))


def _extra_regex(df: pl.DataFrame, s: RegexStep, _: _Context) -> pl.DataFrame:
    if not s.patterns:
        return df
    # (?:...) keeps a pattern's inline flags such as (?i) inside its own alternative.
    pattern = "|".join(f"(?:{p})" for p in s.patterns)
    hit = (
        pl.col("messages")
        .list.eval(
            pl.element().struct.field("role").is_in(s.roles)
            & pl.element().struct.field("content").str.contains(pattern)
        )
        .list.any()
    )
    return df.filter(~hit.fill_null(False))


def _token_length(df: pl.DataFrame, s: TokenLengthStep, ctx: _Context) -> pl.DataFrame:
    if ctx.count_tokens is None:
        raise ValueError("token_length is enabled but no token counter was given")
    tokens = pl.Series(ctx.count_tokens(df["messages"]))
    ctx.details = {
        "below_min_tokens": int((tokens < s.min_tokens).sum()),
        "above_max_tokens": int((tokens > s.max_tokens).sum()),
    }
    return df.filter(tokens.is_between(s.min_tokens, s.max_tokens))


def first_user_message(df: pl.DataFrame) -> pl.Series:
    return df.select(
        pl.col("messages")
        .list.filter(pl.element().struct.field("role") == "user")
        .list.first()
        .struct.field("content")
    ).to_series()


def _by_preference(df: pl.DataFrame, drop_mask: Callable[[pl.Series], np.ndarray]) -> pl.DataFrame:
    """Drop duplicates flagged by `drop_mask` over first user messages, best rows first."""
    ranked = df.with_row_index("_row").sort(
        [pl.col("opus_score").fill_null(0), "_row"], descending=[True, False]
    )
    drop = drop_mask(first_user_message(ranked))
    return ranked.filter(~pl.Series(drop)).sort("_row").drop("_row")


def _exact_duplicates(df: pl.DataFrame, _: FilterStep, __: _Context) -> pl.DataFrame:
    return _by_preference(df, exact_duplicate_mask)


def _near_duplicates(df: pl.DataFrame, s: NearDuplicatesStep, _: _Context) -> pl.DataFrame:
    return _by_preference(
        df,
        lambda texts: near_duplicate_mask(texts, s.ngram, s.threshold, s.num_perm, s.bands, s.seed),
    )


@dataclass
class _Context:
    count_tokens: TokenCounter | None
    details: dict[str, int] = field(default_factory=dict)


STEP_FUNCTIONS: dict[str, Callable[[pl.DataFrame, Any, _Context], pl.DataFrame]] = {
    "well_formed": _well_formed,
    **{name: _value_set(column) for name, column in VALUE_SET_COLUMNS.items()},
    "single_turn": _single_turn,
    "opus_score": _opus_score,
    "is_bad_by_regex": _is_bad_by_regex,
    "extra_regex": _extra_regex,
    "token_length": _token_length,
    "exact_duplicates": _exact_duplicates,
    "near_duplicates": _near_duplicates,
}


# --------------------------------------------------------------------------- pipeline


def apply_steps(
    df: pl.DataFrame, cfg: FilterConfig, count_tokens: TokenCounter | None = None
) -> tuple[pl.DataFrame, Funnel]:
    """Apply the enabled heuristics of `cfg` in order; return the kept rows and the funnel.

    `count_tokens` maps a `messages` column to token counts of the formatted dialogues; it is
    needed only when `token_length` is enabled.
    """
    funnel = Funnel(input_rows=df.height)
    for name, settings in cfg.steps():
        before = df.height
        ctx = _Context(count_tokens)
        if settings.enabled:
            df = STEP_FUNCTIONS[name](df, settings, ctx)
            log.info("%-18s %7d -> %7d rows", name, before, df.height)
        funnel.steps.append(
            FunnelStep(
                step=name,
                enabled=settings.enabled,
                rows=df.height,
                removed=before - df.height,
                settings=settings.model_dump(mode="json", exclude={"enabled"}),
                details=ctx.details,
            )
        )
    return df, funnel


def stratified_sample(df: pl.DataFrame, size: int, by: str | None, seed: int) -> pl.DataFrame:
    """`size` rows drawn without replacement, each stratum of `by` in proportion to its size.

    Quotas are floor(size * share) plus one for the strata with the largest remainders (ties:
    larger stratum, then value order), so they sum to `size` exactly. The rows keep their input
    order. With `by=None` it is a plain random sample; with `size >= rows`, all rows.
    """
    if df.height <= size:
        return df
    rng = np.random.Generator(np.random.PCG64(seed))
    ranked = df.with_columns(_key=pl.Series(rng.permutation(df.height)))
    if by is None:
        return ranked.filter(pl.col("_key") < size).drop("_key")
    strata = (
        df.group_by(by)
        .len()
        .with_columns(exact=pl.col("len") * size / df.height)
        .with_columns(quota=pl.col("exact").floor().cast(pl.Int64))
        .with_columns(remainder=pl.col("exact") - pl.col("quota"))
        .sort(["remainder", "len", by], descending=[True, True, False], nulls_last=True)
    )
    short = size - int(strata["quota"].sum())
    strata = strata.with_columns(
        quota=pl.col("quota") + (pl.int_range(pl.len()) < short).cast(pl.Int64)
    ).select(by, "quota")
    return (
        ranked.join(strata, on=by, how="left", nulls_equal=True, maintain_order="left")
        .filter(pl.col("_key").rank("ordinal").over(by) <= pl.col("quota"))
        .drop("_key", "quota")
    )


def filter_dialogues(
    df: pl.DataFrame, cfg: FilterConfig, count_tokens: TokenCounter | None = None
) -> tuple[pl.DataFrame, Funnel]:
    """Apply the configured heuristics in order, then sample; return kept rows and the funnel.

    The funnel's last step is `sample`. Callers check `min_rows` against the rows before the
    sample (`funnel.steps[-2].rows`), see `rows_before_sample`.
    """
    kept, funnel = apply_steps(df, cfg, count_tokens)
    before = kept.height
    kept = stratified_sample(kept, cfg.target_size, cfg.stratify_by, cfg.sample_seed)
    funnel.steps.append(
        FunnelStep(
            step="sample",
            enabled=True,
            rows=kept.height,
            removed=before - kept.height,
            settings={
                "target_size": cfg.target_size,
                "stratify_by": cfg.stratify_by,
                "sample_seed": cfg.sample_seed,
            },
        )
    )
    return kept, funnel


def rows_before_sample(funnel: Funnel) -> int:
    return funnel.steps[-2].rows if len(funnel.steps) > 1 else funnel.input_rows


# --------------------------------------------------------------------------- figure


def plot_funnel(funnel: Funnel, title: str) -> plt.Figure:
    """Horizontal bars: rows left after each enabled step, labelled with the count removed."""
    import matplotlib.pyplot as plt  # here: the training stage imports this package too
    import seaborn as sns

    steps = [s for s in funnel.steps if s.enabled]
    frame = pl.DataFrame(
        {
            "step": ["input"] + [s.step for s in steps],
            "rows": [funnel.input_rows] + [s.rows for s in steps],
            "removed": [0] + [s.removed for s in steps],
        }
    )
    fig, ax = plt.subplots(figsize=(9, 0.42 * frame.height + 1.6))
    sns.barplot(data=frame.to_pandas(), x="rows", y="step", ax=ax, color=sns.color_palette()[0])
    top = max(frame["rows"].max() or 1, 1)
    for i, (rows, removed) in enumerate(zip(frame["rows"], frame["removed"], strict=True)):
        label = f"{rows:,}" + (f"  (−{removed:,})" if removed else "")
        ax.text(rows + top * 0.01, i, label, va="center", fontsize=9)
    ax.set_xlim(0, top * 1.32)
    ax.set_title(title)
    ax.set_xlabel("rows left after the step")
    ax.set_ylabel("filter step (in order)")
    return fig
