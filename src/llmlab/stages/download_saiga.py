"""Fetch saiga.source (hub / local file / generator) into a schema-checked parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import Out

PARAMS = ("saiga.source",)
ONLINE = True


def run(
    cfg: Config,
    *,
    out: Annotated[Path, Out("parquet")],
    meta: Annotated[Path, Out("provenance JSON")],
) -> None:
    from llmlab.acquire import run_download
    from llmlab.synthetic.saiga import generate_saiga

    run_download(cfg, "saiga", out=out, meta=meta, generate=generate_saiga)
