"""Per-step cost of train_lora on this machine: QLoRA (4-bit NF4 base) vs LoRA (fp32 base).

Trains a variant's adapter for a few steps with the params.yaml settings of a preset (demo
by default), once with `quantize: true` and once with `quantize: false`, on the format_chat
output of that variant, and prints model load time, the median time per optimizer step
(after the first, which warms up) and one held-out pass, as wall and CPU seconds:

    python scripts/benchmark_train.py --model-dir models/pretrained/sft_lm \
        --data data/sft/a [--variant a] [--steps 4] [--preset demo]

CPU time is the process's user+system time: on a busy machine it shows what the wall time
would be on an idle one. Nothing is written except a scratch checkpoint folder (deleted).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llmlab.config import load_params
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with train/eval.parquet")
    parser.add_argument("--variant", default="a")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = [measure(args, quantize) for quantize in (True, False)]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
