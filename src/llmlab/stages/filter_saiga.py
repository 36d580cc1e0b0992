"""Apply a variant's heuristics in order, sample to the target size, write the funnel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out, Wildcard

PARAMS = (
    "sft.variants.{variant}.filter",
    "sft_data.role_map",
    "analytics.dpi",
)


def run(
    cfg: Config,
    *,
    variant: Annotated[str, Wildcard("key of sft.variants", values="sft.variants")],
    input: Annotated[Path, In("raw saiga parquet")],
    tokenizer: Annotated[Path, In("SFT model folder")],
    kept: Annotated[Path, Out("parquet")],
    funnel: Annotated[Path, Out("JSON")],
    figure: Annotated[Path, Out("funnel PNG", kind="plot")],
) -> None:
    from llmlab.sft_data.run import run_filter_saiga

    run_filter_saiga(
        cfg, variant, input=input, tokenizer=tokenizer, kept=kept, funnel=funnel, figure=figure
    )
