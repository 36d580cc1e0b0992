"""`python -m llmlab <stage> ...`: the one entry point of every Snakemake rule and DVC stage.

Each stage reads params.yaml (typed, preset applied) before anything else, then calls a plain
function of the stage's module with the paths it was given. Stage modules are imported only
when their command runs, so `--help` and config errors are instant and a data stage never
imports torch or vLLM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.config import DEFAULT_PARAMS, PRESETS, load_params
from llmlab.errors import UserError

log = logging.getLogger("llmlab")


@dataclass(frozen=True)
class Arg:
    flag: str
    help: str
    type: Callable[[str], Any] = Path
    required: bool = True
    many: bool = False  # one or more values (a list)


@dataclass(frozen=True)
class Command:
    target: str  # "module:function", called as function(cfg, **args)
    help: str
    args: tuple[Arg, ...] = field(default_factory=tuple)
    # Only acquisition may reach the network; every other stage runs with the hub offline so
    # it behaves the same on a compute node without internet as on a laptop.
    online: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments


def _out(flag: str, what: str) -> Arg:
    return Arg(flag, f"output: {what}")


def _in(flag: str, what: str, many: bool = False) -> Arg:
    return Arg(flag, f"input: {what}", many=many)


DOCTOR = "doctor"  # not a stage: a preflight of the machine for a preset
_VARIANT = Arg("--variant", "key of sft.variants", str)
_MODEL = Arg("--model", "key of models", str)

COMMANDS: dict[str, Command] = {
    # ---- acquisition (online)
    "download-imdb": Command(
        "llmlab.acquire:run_download",
        "Fetch imdb.source (hub / local file / generator) into a schema-checked parquet.",
        (_out("--out", "parquet"), _out("--meta", "provenance JSON")),
        online=True,
        fixed={"dataset": "imdb"},
    ),
    "download-saiga": Command(
        "llmlab.acquire:run_download",
        "Fetch saiga.source (hub / local file / generator) into a schema-checked parquet.",
        (_out("--out", "parquet"), _out("--meta", "provenance JSON")),
        online=True,
        fixed={"dataset": "saiga"},
    ),
    "prepare-model": Command(
        "llmlab.models:run_prepare_model",
        "Make a local HF model folder: a hub snapshot, a copy of a local folder or a GGUF.",
        (_MODEL, _out("--out", "model folder")),
        online=True,
    ),
    # ---- IMDB
    "split-imdb": Command(
        "llmlab.split:run_split_imdb",
        "Split IMDB into train/test and draw the fixed validation subsample from test.",
        (
            _in("--input", "raw IMDB parquet"),
            _out("--train", "parquet"),
            _out("--test", "parquet"),
            _out("--val", "parquet"),
        ),
    ),
    "imdb-analytics": Command(
        "llmlab.analytics:run_imdb_analytics",
        "Label balance and review lengths of IMDB: figures and a statistics JSON.",
        (_in("--input", "raw IMDB parquet"), _out("--figures", "folder"), _out("--stats", "JSON")),
    ),
    # ---- saiga / SFT data
    "saiga-analytics": Command(
        "llmlab.analytics:run_saiga_analytics",
        "Distributions and length statistics of saiga: figures and a statistics JSON.",
        (
            _in("--input", "raw saiga parquet"),
            _in("--tokenizer", "model folder whose tokenizer counts tokens"),
            _out("--figures", "folder"),
            _out("--stats", "JSON"),
        ),
    ),
    "filter-saiga": Command(
        "llmlab.sft_data:run_filter_saiga",
        "Apply a variant's heuristics in order, sample to the target size, write the funnel.",
        (
            _VARIANT,
            _in("--input", "raw saiga parquet"),
            _in("--tokenizer", "SFT model folder"),
            _out("--kept", "parquet"),
            _out("--funnel", "JSON"),
            _out("--figure", "funnel PNG"),
        ),
    ),
    "rename-roles": Command(
        "llmlab.sft_data:run_rename_roles",
        "Map roles (bot -> assistant) and validate the dialogue structure.",
        (_VARIANT, _in("--input", "filtered parquet"), _out("--out", "parquet")),
    ),
    "format-chat": Command(
        "llmlab.sft_data:run_format_chat",
        "Render dialogues with the project's chat template; split train/eval.",
        (
            _VARIANT,
            _in("--input", "renamed parquet"),
            _in("--tokenizer", "SFT model folder"),
            _out("--train", "parquet"),
            _out("--eval", "parquet"),
        ),
    ),
    # ---- evaluation
    "eval-llm": Command(
        "llmlab.eval.run:run_eval_llm",
        "Classify the validation reviews with one LLM at one shot count, every prompt/strategy.",
        (
            _MODEL,
            Arg("--shots", "number of in-context examples", int),
            _in("--model-dir", "model folder"),
            _in("--train", "IMDB train parquet (few-shot pool)"),
            _in("--val", "IMDB validation parquet"),
            _out("--predictions", "parquet"),
            _out("--metrics", "JSON"),
        ),
    ),
    "baseline-tfidf": Command(
        "llmlab.baselines.tfidf:run_baseline_tfidf",
        "TF-IDF + logistic regression trained on train, scored on the validation rows.",
        (
            _in("--train", "IMDB train parquet"),
            _in("--val", "IMDB validation parquet"),
            _out("--predictions", "parquet"),
            _out("--metrics", "JSON"),
            _out("--model-out", "joblib file"),
        ),
    ),
    "baseline-rnn": Command(
        "llmlab.baselines.rnn:run_baseline_rnn",
        "A bidirectional recurrent classifier trained on train, scored on the validation rows.",
        (
            _in("--train", "IMDB train parquet"),
            _in("--val", "IMDB validation parquet"),
            _out("--predictions", "parquet"),
            _out("--metrics", "JSON"),
            _out("--history", "per-epoch JSON"),
            _out("--model-out", "folder (weights, vocabulary)"),
        ),
    ),
    "eval-summary": Command(
        "llmlab.eval.summary:run_eval_summary",
        "One table of every system: accuracy with CI, macro-F1, invalid rate, paired tests.",
        (
            _in("--predictions", "predictions parquet files", many=True),
            _in("--rnn-history", "RNN per-epoch JSON"),
            _out("--summary", "JSON"),
            _out("--table", "markdown"),
            _out("--figures", "folder"),
        ),
    ),
    # ---- SFT
    "train-lora": Command(
        "llmlab.train:run_train_lora",
        "QLoRA/LoRA SFT of one variant with assistant-only loss; resumes from checkpoints.",
        (
            _VARIANT,
            _in("--model-dir", "base model folder"),
            _in("--train", "formatted train parquet"),
            _in("--eval", "formatted eval parquet"),
            Arg("--checkpoints", "checkpoint folder (kept across interrupted runs)"),
            _out("--adapter", "adapter folder"),
            _out("--train-log", "per-step JSON"),
            _out("--metrics", "JSON"),
            _out("--curve", "loss-curve PNG"),
        ),
    ),
    "compare-generations": Command(
        "llmlab.generate:run_compare_generations",
        "Generate answers of the base model and each adapter on the configured prompts.",
        (
            _in("--model-dir", "base model folder"),
            _in("--adapters", "adapter folders", many=True),
            _in("--metrics", "per-variant metrics JSON", many=True),
            _out("--generations", "parquet"),
            _out("--table", "markdown"),
            _out("--loss-table", "markdown"),
        ),
    ),
    # ---- report
    "report": Command(
        "llmlab.report:run_report",
        "Render reports/report.md from the results.",
        (
            _in("--imdb-stats", "JSON"),
            _in("--imdb-figures", "folder"),
            _in("--saiga-stats", "JSON"),
            _in("--saiga-figures", "folder"),
            _in("--funnels", "JSON per variant", many=True),
            _in("--funnel-figures", "PNG per variant", many=True),
            _in("--eval-summary", "JSON"),
            _in("--eval-table", "markdown"),
            _in("--eval-figures", "folder"),
            _in("--train-logs", "JSON per variant", many=True),
            _in("--sft-metrics", "JSON per variant", many=True),
            _in("--loss-curves", "PNG per variant", many=True),
            _in("--generations", "parquet"),
            _in("--generations-table", "markdown"),
            _in("--loss-table", "markdown"),
            Arg("--benchmarks", "Snakemake benchmark folder (optional)", required=False),
            _out("--out", "report markdown"),
        ),
    ),
}


def _configure_environment(online: bool) -> None:
    if not online:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
    # Quieter, deterministic libraries: no telemetry, no tokenizers fork warnings.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmlab", description="Stages of the llmlab workflow (run by Snakemake or DVC)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    doctor = sub.add_parser(
        DOCTOR,
        help="Preflight of a preset on this machine: one PASS/FAIL line per check.",
        description="Check GPU, driver, bf16, memory per GPU rule, hub access, disk space and "
        "package versions for a preset; exit 1 if any check fails.",
    )
    doctor.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file")
    doctor.add_argument("--preset", choices=PRESETS, default=None, help="preset to check")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        p.add_argument(
            "--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: %(default)s)"
        )
        p.add_argument(
            "--preset",
            choices=PRESETS,
            default=None,
            help="preset to apply (default: the file's `preset` key)",
        )
        for arg in command.args:
            p.add_argument(
                arg.flag,
                type=arg.type,
                required=arg.required,
                nargs="+" if arg.many else None,
                help=arg.help,
            )
    return parser


def resolve_target(target: str) -> Callable[..., Any]:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _doctor(args: argparse.Namespace) -> int:
    from llmlab.doctor import run_doctor

    _configure_environment(online=True)
    try:
        cfg = load_params(args.params, args.preset)
    except UserError as err:
        print(f"FAIL  params                 {err}")
        return 1
    return run_doctor(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == DOCTOR:
        return _doctor(args)
    command = COMMANDS[args.command]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    _configure_environment(command.online)
    kwargs = {
        a.flag.lstrip("-").replace("-", "_"): getattr(args, a.flag.lstrip("-").replace("-", "_"))
        for a in command.args
    }
    start = time.perf_counter()
    try:
        cfg = load_params(args.params, args.preset)
        log.info("%s: preset %s, params %s", args.command, cfg.preset, args.params)
        resolve_target(command.target)(cfg, **command.fixed, **kwargs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("%s: done in %.1f s", args.command, time.perf_counter() - start)
    return 0
