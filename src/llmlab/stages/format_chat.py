"""Format a variant's dialogues with the chat template and split them into train/eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out, Wildcard

PARAMS = (
    "sft_data.eval_fraction",
    "sft_data.split_seed",
)


def run(
    cfg: Config,
    *,
    variant: Annotated[str, Wildcard("key of sft.variants", values="sft.variants")],
    input: Annotated[Path, In("renamed parquet")],
    tokenizer: Annotated[Path, In("SFT model folder")],
    train: Annotated[Path, Out("parquet")],
    eval: Annotated[Path, Out("parquet")],
) -> None:
    from llmlab.sft_data.run import run_format_chat

    run_format_chat(cfg, variant, input=input, tokenizer=tokenizer, train=train, eval=eval)
