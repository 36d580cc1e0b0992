"""Judge the systems' held-out answers pairwise in both orders: verdicts and win rates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = (
    "device",
    "sft.judge",
    # Whether the judge shares weights with the judged SFT base (llmlab.sft_eval.self_judging).
    "sft.model",
    "models",
    "eval.backend",
    "eval.vllm",
    "eval.transformers",
)


def run(
    cfg: Config,
    *,
    model_dir: Annotated[Path, In("judge model folder (sft.judge.model)")],
    heldout: Annotated[Path, In("compare_generations' held-out answers")],
    judgements: Annotated[Path, Out("parquet: one verdict per pair, prompt and order")],
    judge: Annotated[Path, Out("JSON: win rates, CIs, position consistency", kind="metric")],
) -> None:
    from llmlab.judge import run_judge_generations

    run_judge_generations(
        cfg, model_dir=model_dir, heldout=heldout, judgements=judgements, judge=judge
    )
