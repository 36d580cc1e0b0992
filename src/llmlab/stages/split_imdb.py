"""Split IMDB as the course does, draw the validation subsample, drop val twins from train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = (
    "imdb.test_size",
    "imdb.split_seed",
    "imdb.val_size",
    "imdb.val_seed",
)


def run(
    cfg: Config,
    *,
    input: Annotated[Path, In("raw IMDB parquet")],
    train: Annotated[Path, Out("parquet")],
    test: Annotated[Path, Out("parquet")],
    val: Annotated[Path, Out("parquet")],
    info: Annotated[Path, Out("JSON: split sizes, train rows dropped as twins of val reviews")],
) -> None:
    from llmlab.split import run_split_imdb

    run_split_imdb(cfg, input=input, train=train, test=test, val=val, info=info)
