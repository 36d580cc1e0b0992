"""The CLI layer of the SFT data stages (filter_saiga -> rename_roles -> format_chat): each
function checks its inputs, calls the plain functions of `filters` / `chat` and writes its
outputs atomically. Separate from the package's __init__, so that importing
`llmlab.sft_data.chat` (training, generation) does not import the filters.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from llmlab.config import Config, FilterConfig, check_key
from llmlab.errors import UserError
from llmlab.io import read_parquet, write_json, write_parquet
from llmlab.schemas import MESSAGES_SCHEMA, SAIGA_SCHEMA
from llmlab.sft_data.chat import (
    describe_template,
    format_chats,
    formatted_token_counts,
    load_tokenizer,
    rename_roles,
    split_train_eval,
    validate_dialogues,
)
from llmlab.sft_data.filters import (
    Funnel,
    check_filter_config,
    filter_dialogues,
    plot_funnel,
    rows_before_sample,
)

log = logging.getLogger(__name__)


def _filter_config(cfg: Config, variant: str) -> FilterConfig:
    check_key(variant, cfg.sft.variants, flag="--variant", where="sft.variants")
    return cfg.sft.variants[variant].filter


def run_filter_saiga(
    cfg: Config, variant: str, input: Path, tokenizer: Path, kept: Path, funnel: Path, figure: Path
) -> None:
    """filter_saiga: raw saiga -> the variant's kept rows (raw schema), funnel JSON and figure."""
    where = f"sft.variants.{variant}.filter"
    fcfg = _filter_config(cfg, variant)
    try:
        check_filter_config(fcfg, where)
    except ValueError as err:
        raise UserError(str(err)) from None
    df = read_parquet(input, SAIGA_SCHEMA)
    count_tokens = None
    if fcfg.token_length.enabled:
        # Token lengths are those of the dialogue as trained: renamed, templated, tokenized.
        count_tokens = functools.partial(
            formatted_token_counts, load_tokenizer(tokenizer), role_map=cfg.sft_data.role_map
        )
    log.info("filtering %d rows of %s for variant %s", df.height, input, variant)
    result, counts = filter_dialogues(df, fcfg, count_tokens)
    left = rows_before_sample(counts)
    if left < fcfg.min_rows:
        raise UserError(
            f"{where}.min_rows: only {left} rows of {input} pass the filter, fewer than "
            f"{fcfg.min_rows}; relax a step. Funnel: {counts.describe()}"
        )
    log.info("funnel: %s", counts.describe())
    from llmlab.plots import save_figure, setup_theme  # matplotlib only where a figure is made

    setup_theme()
    fig = plot_funnel(counts, f"SFT data filter funnel, variant {variant}")
    write_parquet(result.select(df.columns), kept)
    write_json(_funnel_json(counts, variant, input), funnel)
    save_figure(fig, figure, dpi=cfg.analytics.dpi)


def _funnel_json(funnel: Funnel, variant: str, input: Path) -> dict:
    return {"variant": variant, "input": str(input), **funnel.to_json(), "kept_rows": funnel.rows}


def run_rename_roles(cfg: Config, variant: str, input: Path, out: Path) -> None:
    """rename_roles: map roles with sft_data.role_map and validate the dialogue structure."""
    _filter_config(cfg, variant)
    df = read_parquet(input, MESSAGES_SCHEMA)
    try:
        renamed = rename_roles(df, cfg.sft_data.role_map)
    except UserError as err:
        raise UserError(f"{input}: {err}") from None
    validate_dialogues(renamed, f"{input} after renaming roles with sft_data.role_map")
    log.info("renamed roles of %d dialogues", renamed.height)
    write_parquet(renamed, out)


def run_format_chat(
    cfg: Config, variant: str, input: Path, tokenizer: Path, train: Path, eval: Path
) -> None:
    """format_chat: render with the project template, check the loss mask, split train/eval."""
    _filter_config(cfg, variant)
    df = read_parquet(input, MESSAGES_SCHEMA)
    validate_dialogues(df, str(input))
    tok = load_tokenizer(tokenizer)
    log.info("template: %s", describe_template(tok))
    formatted, check = format_chats(df, tok)
    # The mask TRL builds must cover exactly the assistant turns: checked on every row,
    # because a tokenizer that merges across a {% generation %} edge would silently train on
    # header text (or never on the eos).
    if check.mask_mismatches:
        row, expected, got = check.mask_mismatches[0]
        raise UserError(
            f"{input}: row {row}: with the tokenizer of {tokenizer} the assistant-only loss mask "
            f"covers {got[-80:]!r} instead of {expected[-80:]!r} "
            f"({len(check.mask_mismatches)} rows affected); the tokenizer merges across the "
            "chat template's {% generation %} edges"
        )
    if check.prompt_mismatches:
        log.warning(
            "%d of %d dialogues: the generation prompt does not tokenize to a prefix of the "
            "dialogue (first: row %d); inference will see slightly different tokens",
            len(check.prompt_mismatches),
            formatted.height,
            check.prompt_mismatches[0],
        )
    train_df, eval_df = split_train_eval(
        formatted, cfg.sft_data.eval_fraction, cfg.sft_data.split_seed
    )
    log.info(
        "%d train / %d eval dialogues; tokens per dialogue: mean %.0f, max %d",
        train_df.height,
        eval_df.height,
        formatted["num_tokens"].mean(),
        formatted["num_tokens"].max(),
    )
    write_parquet(train_df, train)
    write_parquet(eval_df, eval)
