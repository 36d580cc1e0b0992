"""What each workflow stage depends on besides its input files: config values and source code.

Both come from the stage modules (`llmlab.stages`): the config key paths a stage declares in
`PARAMS`, resolved against the preset-merged config, and its code files, computed from its
imports. The Snakefile (rules/common.smk) and dvc.yaml (llmlab.dvc_sync) both read them here,
so a stage reruns when (and only when) its own inputs, params or code change, under either
orchestrator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmlab.config import Config
from llmlab.stages import Wildcard, code_files, stage


def stage_params(name: str, cfg: Config, wildcards: Mapping[str, str]) -> dict[str, Any]:
    """The resolved config values a stage depends on, keyed by their key path."""
    data = cfg.model_dump(mode="json")
    values: dict[str, Any] = {}
    for template in stage(name).params:
        path = template.format(**wildcards)
        node: Any = data
        for part in path.split("."):
            node = node[part]
        values[path] = node
    return values


def stage_code(name: str) -> list[str]:
    """The stage's source files: its import closure inside llmlab, without shared plumbing
    (cli, config, io: a change there should not invalidate hours of GPU results)."""
    return code_files(name)


def wildcard_values(name: str) -> dict[str, str]:
    """Wildcard -> the config key whose keys or items it ranges over (DVC foreach/matrix)."""
    return {p.name: p.marker.values for p in stage(name).ports if isinstance(p.marker, Wildcard)}
