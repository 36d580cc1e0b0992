"""Make a local HF model folder: a hub snapshot, a copy of a local folder or a GGUF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import Out, Wildcard

PARAMS = ("models.{model}",)
ONLINE = True


def run(
    cfg: Config,
    *,
    model: Annotated[str, Wildcard("key of models", values="models")],
    out: Annotated[Path, Out("model folder")],
) -> None:
    from llmlab.models import run_prepare_model

    run_prepare_model(cfg, model, out)
