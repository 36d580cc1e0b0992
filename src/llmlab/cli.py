"""`python -m llmlab <stage> ...`: the one entry point of every Snakemake rule and DVC stage.

The subcommands and their flags are built from the stage modules (`llmlab.stages`): each
keyword parameter of a stage's `run` is a flag of the same name. Each stage reads params.yaml
(typed, preset applied) before anything else, then runs with the paths it was given. Stage
modules import their heavy libraries inside `run`, so `--help` and config errors are instant
and a data stage never imports torch or vLLM.

`python -m llmlab doctor` is not a stage: it checks a preset against this machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from llmlab.config import DEFAULT_PARAMS, PRESETS, load_params
from llmlab.errors import UserError
from llmlab.stages import Port, Stage, all_stages

log = logging.getLogger("llmlab")

DOCTOR = "doctor"  # not a stage: a preflight of the machine for a preset
ROLE_HELP = {"input": "input", "output": "output", "wildcards": "key", "params": "path"}


def _configure_environment(online: bool) -> None:
    # Only acquisition may reach the network; every other stage runs with the hub offline so
    # it behaves the same on a compute node without internet as on a laptop.
    if not online:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
    # Quieter, deterministic libraries: no telemetry, no tokenizers fork warnings.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="preset to apply (default: the file's `preset` key)",
    )


def _add_port(parser: argparse.ArgumentParser, port: Port) -> None:
    parser.add_argument(
        port.flag,
        dest=port.name,
        type=port.type,
        required=port.required,
        nargs="+" if port.many else None,
        help=f"{ROLE_HELP[port.role]}: {port.marker.help}",
    )


def build_parser(stages: Sequence[Stage] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmlab", description="Stages of the llmlab workflow (run by Snakemake or DVC)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for stage in stages if stages is not None else all_stages():
        p = sub.add_parser(stage.command, help=stage.help, description=stage.help)
        _common(p)
        for port in stage.ports:
            _add_port(p, port)
    doctor = sub.add_parser(
        DOCTOR,
        help="Preflight of a preset on this machine: one PASS/FAIL line per check.",
        description="Check GPU, driver, bf16, memory per GPU rule, hub access, disk space and "
        "package versions for a preset; exit 1 if any check fails.",
    )
    _common(doctor)
    return parser


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
    stages = {s.command: s for s in all_stages()}
    args = build_parser(list(stages.values())).parse_args(argv)
    if args.command == DOCTOR:
        return _doctor(args)
    stage = stages[args.command]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    _configure_environment(stage.online)
    kwargs = {port.name: getattr(args, port.name) for port in stage.ports}
    start = time.perf_counter()
    try:
        cfg = load_params(args.params, args.preset)
        log.info("%s: preset %s, params %s", args.command, cfg.preset, args.params)
        stage.run(cfg, **kwargs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("%s: done in %.1f s", args.command, time.perf_counter() - start)
    return 0
