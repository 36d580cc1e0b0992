"""Format-following metrics of every system's held-out answers, with CIs, and every system's
loss on the same held-out reference answers, compared pair by pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = ("sft.heldout.bootstrap", "sft.generation.max_new_tokens")


def run(
    cfg: Config,
    *,
    heldout: Annotated[Path, In("compare_generations' held-out answers")],
    metrics: Annotated[Path, Out("JSON", kind="metric")],
) -> None:
    from llmlab.sft_eval import run_format_metrics

    run_format_metrics(cfg, heldout=heldout, metrics=metrics)
