"""What each workflow stage depends on besides its input files: config keys and source code.

The Snakefile and dvc.yaml both read this table, so a stage reruns when (and only when) its
own inputs, params or code change, under either orchestrator. Key paths may hold the rule's
wildcards (`{variant}`, `{model}`) and are resolved against the preset-merged config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmlab.config import Config

SRC = "src/llmlab/"


@dataclass(frozen=True)
class StageDeps:
    params: tuple[str, ...]
    code: tuple[str, ...]


def _code(*modules: str) -> tuple[str, ...]:
    return tuple(SRC + m for m in modules)


STAGES: dict[str, StageDeps] = {
    "download_imdb": StageDeps(
        ("imdb.source",), _code("acquire.py", "hub.py", "synthetic.py", "schemas.py")
    ),
    "download_saiga": StageDeps(
        ("saiga.source",), _code("acquire.py", "hub.py", "synthetic.py", "schemas.py")
    ),
    "prepare_model": StageDeps(("models.{model}",), _code("models.py", "hub.py")),
    "split_imdb": StageDeps(
        ("imdb.test_size", "imdb.split_seed", "imdb.val_size", "imdb.val_seed"),
        _code("split.py", "schemas.py"),
    ),
    "imdb_analytics": StageDeps(("analytics",), _code("analytics.py", "plots.py")),
    "saiga_analytics": StageDeps(
        ("analytics",),
        _code("analytics.py", "plots.py", "sft_data/__init__.py", "sft_data/chat.py"),
    ),
    # filter_saiga counts tokens of the formatted dialogues: roles renamed, template applied.
    "filter_saiga": StageDeps(
        ("sft.variants.{variant}.filter", "sft_data.role_map", "analytics.dpi"),
        _code(
            "sft_data/__init__.py",
            "sft_data/filters.py",
            "sft_data/dedup.py",
            "sft_data/chat.py",
            "chat_template.jinja",
            "plots.py",
        ),
    ),
    "rename_roles": StageDeps(
        ("sft_data.role_map",), _code("sft_data/__init__.py", "sft_data/chat.py")
    ),
    "format_chat": StageDeps(
        ("sft_data.eval_fraction", "sft_data.split_seed"),
        _code("sft_data/__init__.py", "sft_data/chat.py", "chat_template.jinja"),
    ),
    "eval_llm": StageDeps(
        ("device", "eval", "models.{model}.prompt_format", "models.{model}.chat_template_kwargs"),
        _code(
            "runtime.py",
            "eval/run.py",
            "eval/prompts.py",
            "eval/fewshot.py",
            "eval/backends.py",
            "eval/calibration.py",
            "eval/metrics.py",
            "eval/schema.py",
        ),
    ),
    "baseline_tfidf": StageDeps(
        ("baselines.tfidf", "eval.labels", "eval.bootstrap"),
        _code(
            "baselines/tfidf.py",
            "baselines/text.py",
            "baselines/stage_io.py",
            "eval/metrics.py",
            "eval/schema.py",
        ),
    ),
    "baseline_rnn": StageDeps(
        ("baselines.rnn", "eval.labels", "eval.bootstrap"),
        _code(
            "baselines/rnn.py",
            "baselines/text.py",
            "baselines/stage_io.py",
            "eval/metrics.py",
            "eval/schema.py",
        ),
    ),
    "eval_summary": StageDeps(
        ("eval",), _code("eval/summary.py", "eval/metrics.py", "eval/schema.py", "plots.py")
    ),
    "train_lora": StageDeps(
        (
            "device",
            "sft.variants.{variant}.quantize",
            "sft.variants.{variant}.lora",
            "sft.variants.{variant}.training",
        ),
        _code("train.py", "runtime.py", "plots.py", "sft_data/chat.py", "chat_template.jinja"),
    ),
    "compare_generations": StageDeps(
        ("device", "sft.generation"),
        _code("generate.py", "train.py", "runtime.py", "sft_data/chat.py", "chat_template.jinja"),
    ),
    "report": StageDeps(("report",), _code("report.py", "templates/report.md.j2")),
}


# Which config values each wildcard ranges over (a mapping's keys or a list's items), as
# (rule, wildcard) overrides first, then per wildcard. dvc.yaml's foreach/matrix use these.
WILDCARD_VALUES: dict[Any, str] = {
    ("prepare_model", "model"): "models",
    "model": "eval.models",
    "shots": "eval.shots",
    "variant": "sft.variants",
}


def stage_params(stage: str, cfg: Config, wildcards: Mapping[str, str]) -> dict[str, Any]:
    """The resolved config values a stage depends on, keyed by their key path."""
    data = cfg.model_dump(mode="json")
    values: dict[str, Any] = {}
    for template in STAGES[stage].params:
        path = template.format(**wildcards)
        node: Any = data
        for part in path.split("."):
            node = node[part]
        values[path] = node
    return values


def stage_code(stage: str) -> list[str]:
    # Only the stage's own modules: shared plumbing (cli, config, io) changing should not
    # invalidate hours of GPU results.
    return list(STAGES[stage].code)
