"""Per-step cost of train_lora on this machine: QLoRA vs LoRA, or packed vs unpacked batches.

`--compare quantize` (the default): trains a variant's adapter for a few steps with the
params.yaml settings of a preset (demo by default), once with `quantize: true` and once with
`quantize: false`, on the format_chat output of that variant, and prints model load time, the
median time per optimizer step (after the first, which warms up) and one held-out pass, as
wall and CPU seconds:

    python scripts/benchmark_train.py --model-dir models/pretrained/sft_lm \
        --data data/sft/a [--variant a] [--steps 4] [--preset demo]

`--compare packing`: the first `--dialogues` training dialogues batched three ways through
the real build_trainer path: unpacked, packed (`training.packing: true`) at the variant's
per-device batch, and packed one row per batch; each mode's epoch of forward and backward
passes (Trainer.training_step, no optimizer step) is timed `--repeats` times, the modes in
turns (ABC CBA ...) so that load from other processes falls on all alike. It prints per mode
the real (non-pad) and assistant (loss) tokens per second, the padding share of the batches
(where packing pays off) and the packed / unpacked ratios of one run (median epoch):

    python scripts/benchmark_train.py --compare packing --model-dir models/pretrained/sft_lm \
        --data data/sft/a [--dialogues 8] [--repeats 2] [--quantize config|true|false]

`--quantize false` trains the fp32 LoRA in every mode (faster on a CPU), `true` the 4-bit one.
The defaults with `--quantize false` (3 modes x 2 timed epochs of 8 demo dialogues, ~2,600
tokens, plus one warm-up batch and model load each) took 16.5 min wall, 11 min CPU, on the
2-core machine at a load average of ~6 from other jobs.

CPU time is the process's user+system time: on a busy machine it shows what the wall time
would be on an idle one. Nothing is written except a scratch checkpoint folder (deleted).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.config import Config, load_params
from llmlab.runtime import load_base_model, require_device
from llmlab.sft_data.chat import load_tokenizer
from llmlab.train import (
    build_trainer,
    heldout_loss,
    read_dialogues,
    resolve_runtime,
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(args: argparse.Namespace, quantize: bool) -> dict[str, Any]:
    from transformers import TrainerCallback

    cfg = load_params(args.params, args.preset)
    spec = cfg.sft.variants[args.variant]
    spec = spec.model_copy(
        update={
            "quantize": quantize,
            "training": spec.training.model_copy(
                update={"max_steps": args.steps, "eval_steps": None, "save_steps": 10**6}
            ),
        }
    )
    require_device(cfg.device)
    runtime = resolve_runtime(spec, cfg.device, f"sft.variants.{args.variant}")
    tokenizer = load_tokenizer(args.model_dir)
    train = read_dialogues(args.data / "train.parquet")
    eval = read_dialogues(args.data / "eval.parquet")

    wall, cpu = time.perf_counter(), cpu_seconds()
    model = load_base_model(args.model_dir, runtime)
    load = {"wall_s": time.perf_counter() - wall, "cpu_s": cpu_seconds() - cpu}

    steps: list[tuple[float, float]] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self.start = (time.perf_counter(), cpu_seconds())

        def on_step_end(self, *_: Any, **__: Any) -> None:
            steps.append((time.perf_counter() - self.start[0], cpu_seconds() - self.start[1]))

    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(model, tokenizer, train, eval, spec, runtime, Path(scratch))
        trainer.add_callback(StepTimer())
        trainer.train()
        wall, cpu = time.perf_counter(), cpu_seconds()
        loss = heldout_loss(trainer)
        heldout = {"wall_s": time.perf_counter() - wall, "cpu_s": cpu_seconds() - cpu}
    timed = steps[1:] or steps  # the first step warms up allocators and kernels
    return {
        "quantize": quantize,
        "runtime": runtime.__dict__,
        "load": load,
        "step_median": {
            "wall_s": statistics.median(s[0] for s in timed),
            "cpu_s": statistics.median(s[1] for s in timed),
        },
        "heldout_pass": heldout,
        "heldout_loss": loss.loss,
    }


@dataclass
class PackingMode:
    """One way of batching the same dialogues, and its timed passes."""

    name: str
    packing: bool
    per_device_train_batch_size: int
    trainer: Any = None
    runtime: dict[str, Any] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    passes: list[tuple[float, float]] = field(default_factory=list)  # (wall_s, cpu_s) per epoch


def batch_tokens(batch: dict[str, Any]) -> tuple[int, int, int]:
    """(real, positions, assistant) tokens of a collated batch: real excludes padding (the
    attention mask; every token of a padding-free row), assistant ones carry loss."""
    ids, mask = batch["input_ids"], batch.get("attention_mask")
    real = int(mask.sum()) if mask is not None else ids.numel()
    return real, ids.numel(), int((batch["labels"] != -100).sum())


def build_mode(args: argparse.Namespace, cfg: Config, mode: PackingMode) -> None:
    """The mode's trainer (the real build_trainer path) and its batches of one epoch."""
    from transformers import set_seed

    where = f"sft.variants.{args.variant}"
    spec = cfg.sft.variants[args.variant]
    quantize = spec.quantize if args.quantize == "config" else args.quantize == "true"
    training = {"packing": mode.packing, "eval_steps": None, "save_steps": 10**6}
    training["per_device_train_batch_size"] = mode.per_device_train_batch_size
    spec = spec.model_copy(
        update={"quantize": quantize, "training": spec.training.model_copy(update=training)}
    )
    require_device(cfg.device)
    runtime = resolve_runtime(spec, cfg.device, where)
    mode.runtime = runtime.__dict__
    tokenizer = load_tokenizer(args.model_dir)
    train = read_dialogues(args.data / "train.parquet")[: args.dialogues]
    eval = read_dialogues(args.data / "eval.parquet")[:1]  # not evaluated
    set_seed(spec.training.seed)  # the same LoRA initialisation in every mode
    model = load_base_model(args.model_dir, runtime)
    scratch = tempfile.mkdtemp(prefix="benchmark-train-")
    mode.trainer = build_trainer(model, tokenizer, train, eval, spec, runtime, Path(scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    # Set by train() for training_step's loss scaling; the benchmark calls it directly.
    mode.trainer.current_gradient_accumulation_steps = spec.training.gradient_accumulation_steps
    mode.batches = list(mode.trainer.get_train_dataloader())


def time_epoch(mode: PackingMode) -> tuple[float, float]:
    """Forward and backward of every batch of the epoch (Trainer.training_step: TRL's loss on
    the assistant tokens, autocast, backward), as (wall_s, cpu_s). No optimizer step: LoRA's
    is negligible next to a forward and backward."""
    trainer = mode.trainer
    wall, cpu = time.perf_counter(), cpu_seconds()
    for batch in mode.batches:
        trainer.training_step(trainer.model, dict(batch))
    elapsed = (time.perf_counter() - wall, cpu_seconds() - cpu)
    trainer.model.zero_grad(set_to_none=True)
    return elapsed


def measure_packing(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    """Unpacked batches, packed ones at the same per-device batch, and packed rows one at a
    time, each one epoch over the same dialogues; timed in turns (ABC CBA ...) so that load
    from other processes on a shared machine falls on every mode alike."""
    batch = cfg.sft.variants[args.variant].training.per_device_train_batch_size
    modes = [
        PackingMode("unpacked", False, batch),
        PackingMode(f"packed, batch {batch}", True, batch),
    ]
    if batch > 1:
        modes.append(PackingMode("packed, batch 1", True, 1))
    for mode in modes:
        build_mode(args, cfg, mode)
        trainer = mode.trainer
        trainer.training_step(trainer.model, dict(mode.batches[0]))  # warm-up, not timed
        trainer.model.zero_grad(set_to_none=True)
    for repeat in range(args.repeats):
        for mode in modes if repeat % 2 == 0 else modes[::-1]:
            mode.passes.append(time_epoch(mode))

    results = {}
    for mode in modes:
        real, positions, assistant = (
            sum(batch_tokens(b)[i] for b in mode.batches) for i in range(3)
        )
        wall = statistics.median(p[0] for p in mode.passes)
        cpu = statistics.median(p[1] for p in mode.passes)
        results[mode.name] = {
            "packing": mode.packing,
            "per_device_train_batch_size": mode.per_device_train_batch_size,
            "runtime": mode.runtime,
            "batches": len(mode.batches),
            "largest_batch_tokens": max(b["input_ids"].numel() for b in mode.batches),
            "real_tokens": real,
            "assistant_tokens": assistant,
            "padding_share": 1 - real / positions,
            "epoch_wall_s": [round(p[0], 2) for p in mode.passes],
            "epoch_cpu_s": [round(p[1], 2) for p in mode.passes],
            "real_tokens_per_s": {"wall": real / wall, "cpu": real / cpu},
            "assistant_tokens_per_s": {"wall": assistant / wall, "cpu": assistant / cpu},
        }
    unpacked = results["unpacked"]
    summary = {
        "dialogues": args.dialogues,
        "same_tokens": all(
            (r["real_tokens"], r["assistant_tokens"])
            == (unpacked["real_tokens"], unpacked["assistant_tokens"])
            for r in results.values()
        ),
        "unpacked_padding_share": unpacked["padding_share"],
        # Packed / unpacked tokens per second (real and assistant alike: the same tokens).
        "tokens_per_s_ratio": {
            name: {
                clock: r["real_tokens_per_s"][clock] / unpacked["real_tokens_per_s"][clock]
                for clock in ("wall", "cpu")
            }
            for name, r in results.items()
            if name != "unpacked"
        },
    }
    return {"modes": results, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with train/eval.parquet")
    parser.add_argument("--variant", default="a")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=4, help="--compare quantize: steps")
    parser.add_argument("--compare", choices=("quantize", "packing"), default="quantize")
    parser.add_argument(
        "--dialogues", type=int, default=8, help="--compare packing: dialogues (one epoch)"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="--compare packing: timed epochs per mode"
    )
    parser.add_argument(
        "--quantize",
        choices=("config", "true", "false"),
        default="config",
        help="--compare packing: the variant's quantize, or 4-bit / fp32 base for both modes",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.compare == "packing":
        cfg = load_params(args.params, args.preset)  # once: every mode gets the same values
        result = measure_packing(args, cfg)
        print(json.dumps(result, indent=2))
        summary = result["summary"]
        print(
            f"{args.dialogues} dialogues; padding share of the unpacked batches "
            f"{summary['unpacked_padding_share']:.1%}"
        )
        for name, ratio in summary["tokens_per_s_ratio"].items():
            print(
                f"tokens/s {name} / unpacked: {ratio['wall']:.2f} (wall), {ratio['cpu']:.2f} (CPU)"
            )
        return 0
    results = [measure(args, quantize) for quantize in (True, False)]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
