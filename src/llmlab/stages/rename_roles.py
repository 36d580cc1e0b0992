"""Rename the roles of a variant's dialogues (sft_data.role_map: bot -> assistant)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out, Wildcard

PARAMS = ("sft_data.role_map",)


def run(
    cfg: Config,
    *,
    variant: Annotated[str, Wildcard("key of sft.variants", values="sft.variants")],
    input: Annotated[Path, In("filtered parquet")],
    out: Annotated[Path, Out("parquet")],
) -> None:
    from llmlab.sft_data.run import run_rename_roles

    run_rename_roles(cfg, variant, input=input, out=out)
