"""How many LoRA optimizer updates round to nothing when the adapter trains in pure bf16.

TRL casts the trainable parameters of a quantized model to bf16 (the QLoRA recipe), so with
bitsandbytes' AdamW8bit the LoRA weights have no fp32 master copy: an update smaller than half
a bf16 ulp of its weight (a relative 2^-9..2^-8) is rounded away. This simulates the optimizer
steps of the full preset's variants (params.yaml top level: LoRA r/alpha/dropout, learning
rate, warmup, schedule, max_steps, weight decay) on one LoRA layer of each projection shape of
the base model and counts, at every step, the lora_A and lora_B elements whose update is
non-zero in fp32 but leaves their bf16 weight unchanged:

    .venv/bin/python scripts/benchmark_lora_bf16.py [--snr 0.3] [--optimizer torch|bnb8]
        [--sample 0.0625] [--grad-scale 1e-3] [--tokens 32] [--seed 0] [--variants a b]

- Layers: real peft `lora.Linear` layers (kaiming-uniform lora_A with bound 1/sqrt(fan_in),
  lora_B zeros, peft's scaling and dropout) of the four projection shapes of
  YandexGPT-5-Lite-8B's decoder layers (Llama: hidden 4096, intermediate 14336, 32 query and
  8 key/value heads of dim 128, as in the model's published GGUF metadata; the hub is not
  reachable from here): q/o 4096->4096, k/v 4096->1024, gate/up 4096->14336, down
  14336->4096. Shares are weighted by how many projections of each shape the variant adapts.
- Optimizer: one AdamW over all layers (the Trainer's betas 0.9/0.999, eps 1e-8, weight decay
  on the LoRA weights) with transformers' `get_scheduler` (linear / cosine with warmup),
  stepped once per optimizer step as the Trainer does (lr 0 at step 1). `--optimizer bnb8` is
  bitsandbytes' AdamW8bit, the preset's `adamw_8bit` (its CPU kernel keeps the blockwise 8-bit
  states and computes the update in fp32), ~7x slower here in all than the default, torch's
  fused AdamW (fp32 states); their shares differ by 0.3 points or less. Gradient clipping
  (max norm 1.0) is left out.
- Gradients: a step's gradient of the (frozen) projection weight is G = S + N. N = delta^T x
  / T is the mini-batch noise, new every step: `--tokens` token inputs x ~ N(0, 1) (after
  peft's dropout) and output gradients delta ~ `--grad-scale` x N(0, 1). S is what the data
  asks for consistently, a fixed rank-8 direction with ||S|| = `--snr` x ||N||. The LoRA
  gradients follow by the chain rule through peft's forward, scaling x
  lora_B(lora_A(dropout(x))): grad_B = scaling G A^T, grad_A = scaling B^T G, so lora_A's is
  zero until lora_B has moved, as in training. `--snr 0` (pure noise: Adam's smallest steps)
  and a large `--snr` (the same direction every step: Adam's largest, ~lr per element)
  bracket the gradient model. Adam is scale-free except for eps = 1e-8; the gradient RMS
  (printed) stays far above it.
- Counting: the optimizer steps an fp32 master copy. A bf16 twin of a fixed random `--sample`
  of each weight's elements (TRL's cast of the same initial values) receives each step's fp32
  update, the master's change (decoupled weight decay plus the Adam step), rounded to nearest
  as a step on bf16 parameters is. An update is lost when it is non-zero but leaves the bf16
  weight unchanged: |update| < half an ulp. (The twin is what a pure-bf16 run trains, up to
  its gradients being taken at its own weights: Adam's states depend only on the gradients.)
  Weight decay alone (lr x 0.01 x w, a relative change <= 2e-6) is always lost in bf16: at
  step 2 lora_A's update is weight decay only (lora_B is still zero, so is lora_A's gradient),
  hence 100% there. At the end, the twin's learned change is compared with the master's:
  ||w_twin - w_fp32|| / ||w_fp32 - w_init|| over the sampled elements.

Prints per variant: the lost share of lora_A and lora_B updates at selected steps, per phase
(first, middle and last third of the steps) and overall, per shape, and how far the bf16
twin's learned change ends from the master's.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from pathlib import Path

import torch

from llmlab.config import SftVariant, load_params

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, HEAD_DIM = 4096, 14336, 32, 8, 128
# The four projection shapes of a decoder layer, (in_features, out_features), with the
# projections of that shape: one simulated layer each, weighted by how many are adapted.
SHAPES = {
    "q_proj": ((HIDDEN, HEADS * HEAD_DIM), ("q_proj", "o_proj")),
    "k_proj": ((HIDDEN, KV_HEADS * HEAD_DIM), ("k_proj", "v_proj")),
    "gate_proj": ((HIDDEN, INTERMEDIATE), ("gate_proj", "up_proj")),
    "down_proj": ((INTERMEDIATE, HIDDEN), ("down_proj",)),
}
SIGNAL_RANK = 8


class Twin:
    """bf16 copies of a sample of one weight's elements, stepped by the master's updates."""

    def __init__(self, weight: torch.Tensor, sample: float, gen: torch.Generator):
        self.source = weight
        n = weight.numel()
        self.index = torch.randperm(n, generator=gen)[: max(1, round(n * sample))]
        self.initial = self.before = self.master()
        self.weight = self.initial.bfloat16()  # TRL's cast

    def master(self) -> torch.Tensor:
        """The sampled elements of the fp32 master weight, now."""
        return self.source.detach().view(-1)[self.index]

    def step(self) -> tuple[int, int]:
        """Apply the master's last update, rounded to bf16. Returns (non-zero updates, those
        that left the bf16 weight unchanged: |update| < half a bf16 ulp of it)."""
        after = self.master()
        update = after - self.before
        self.before = after
        new = (self.weight.float() + update).bfloat16()
        nonzero = update != 0
        lost = int(torch.count_nonzero(nonzero & (new == self.weight)))
        self.weight = new
        return int(torch.count_nonzero(nonzero)), lost

    def change_error(self) -> float:
        """||w_twin - w_fp32|| / ||w_fp32 - w_init||: how far the bf16 run's learned change
        ends from the fp32 one's."""
        master = self.master().double()
        moved = (master - self.initial.double()).norm()
        return float((self.weight.double() - master).norm() / moved)


class SimLayer:
    """One peft LoRA layer of a projection shape, its gradient stream and its bf16 twins."""

    def __init__(self, name: str, spec: SftVariant, args: argparse.Namespace, seed: int):
        from peft import LoraConfig
        from peft.tuners.lora.layer import Linear as LoraLinear

        (d_in, d_out), stands_for = SHAPES[name]
        self.name = "/".join(stands_for)
        self.count = sum(p in spec.lora.target_modules for p in stands_for)
        torch.manual_seed(seed)
        # The base weight is never used (the LoRA gradients do not depend on it): no init.
        base = torch.nn.utils.skip_init(torch.nn.Linear, d_in, d_out, bias=False)
        lora = spec.lora
        config = LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=[name]
        )
        layer = LoraLinear(base, "default", config=config, r=lora.r, lora_alpha=lora.alpha)
        layer.train()
        self.A = layer.lora_A["default"].weight
        self.B = layer.lora_B["default"].weight
        self.dropout = layer.lora_dropout["default"]
        self.scaling = layer.scaling["default"]
        self.A.grad, self.B.grad = torch.zeros_like(self.A), torch.zeros_like(self.B)

        self.gen = torch.Generator().manual_seed(seed + 1)
        self.twins = [Twin(p, args.sample, self.gen) for p in (self.A, self.B)]
        self.tokens, self.grad_scale = args.tokens, args.grad_scale
        u = torch.randn(d_out, SIGNAL_RANK, generator=self.gen)
        v = torch.randn(d_in, SIGNAL_RANK, generator=self.gen)
        self.u, self.v = u / u.norm(dim=0), v / v.norm(dim=0)  # ||U V^T|| ~ sqrt(rank)
        # The noise N = delta^T x / T has a Frobenius norm of ~grad_scale sqrt(d_in d_out / T);
        # the signal S = signal x U V^T one of ~signal x sqrt(rank).
        noise = args.grad_scale * math.sqrt(d_in * d_out / args.tokens)
        self.signal = args.snr * noise / math.sqrt(SIGNAL_RANK)

    @torch.no_grad()
    def backward(self) -> None:
        """Set the LoRA weights' gradients for one step: peft's forward is out = scaling x
        lora_B(lora_A(dropout(x))), so with the weight gradient G = S + N (N from this step's
        tokens, d(loss)/d(out) = delta / T) grad_B = scaling G A^T and grad_A = scaling B^T G."""
        x = self.dropout(torch.randn(self.tokens, self.v.shape[0], generator=self.gen))
        delta = torch.randn(self.tokens, self.u.shape[0], generator=self.gen)
        delta.mul_(self.grad_scale / self.tokens)
        a, b, s = self.A.detach(), self.B.detach(), self.scaling
        torch.mm(delta.T, x @ a.T, out=self.B.grad)
        self.B.grad.add_(self.u @ (self.v.T @ a.T), alpha=self.signal).mul_(s)
        torch.mm((delta @ b).T, x, out=self.A.grad)
        self.A.grad.add_((b.T @ self.u) @ self.v.T, alpha=self.signal).mul_(s)


def optimizer(
    params: list[torch.Tensor], lr: float, weight_decay: float, kind: str
) -> torch.optim.Optimizer:
    if kind == "bnb8":
        import bitsandbytes as bnb

        return bnb.optim.AdamW(params, lr=lr, weight_decay=weight_decay, optim_bits=8)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


def simulate(variant: str, spec: SftVariant, args: argparse.Namespace) -> None:
    """Run one variant and print its table."""
    from transformers import get_scheduler

    t = spec.training
    steps = t.max_steps
    layers = [
        SimLayer(name, spec, args, seed=args.seed + 100 * i)
        for i, name in enumerate(SHAPES)
        if any(p in spec.lora.target_modules for p in SHAPES[name][1])
    ]
    master = [p for layer in layers for p in (layer.A, layer.B)]
    opt = optimizer(master, t.learning_rate, t.weight_decay, args.optimizer)
    schedule = get_scheduler(t.lr_scheduler_type, opt, t.warmup_steps, steps)
    # [step, layer, lora_A/lora_B]: non-zero updates and lost ones (of the sampled elements).
    nonzero = torch.zeros(steps + 1, len(layers), 2, dtype=torch.float64)
    lost = torch.zeros_like(nonzero)
    lrs, grad_rms = [0.0] * (steps + 1), {}
    for step in range(1, steps + 1):
        lrs[step] = opt.param_groups[0]["lr"]
        for layer in layers:
            layer.backward()
        opt.step()
        schedule.step()
        for j, layer in enumerate(layers):
            for kind, twin in enumerate(layer.twins):
                nonzero[step, j, kind], lost[step, j, kind] = twin.step()
        if step in (2, steps):
            for kind, name in enumerate(("lora_A", "lora_B")):
                grads = [p.grad for p in master[kind::2]]
                sq = sum(float(g.pow(2).sum()) for g in grads)
                grad_rms[(name, step)] = math.sqrt(sq / sum(g.numel() for g in grads))

    # Weight: how many projections of the shape, times its elements per sampled element.
    weight = torch.tensor(
        [
            [layer.count * tw.source.numel() / len(tw.index) for tw in layer.twins]
            for layer in layers
        ]
    )[None]

    def share(rows: slice, kind: int | None = None) -> float:
        cols = slice(None) if kind is None else slice(kind, kind + 1)
        total = float((nonzero * weight)[rows, :, cols].sum())
        return float((lost * weight)[rows, :, cols].sum()) / total if total else float("nan")

    lora = spec.lora
    print(
        f"\nvariant {variant}: LoRA r {lora.r}, alpha {lora.alpha}, dropout {lora.dropout}; "
        f"lr {t.learning_rate:g} {t.lr_scheduler_type}, warmup {t.warmup_steps}, {steps} steps, "
        f"weight decay {t.weight_decay:g}\ngradient RMS: lora_B {grad_rms[('lora_B', 2)]:.1e} "
        f"at step 2; lora_A {grad_rms[('lora_A', steps)]:.1e}, "
        f"lora_B {grad_rms[('lora_B', steps)]:.1e} at step {steps}"
    )
    print("lost: share of the non-zero fp32 updates that leave the bf16 weight unchanged")
    print(f"{'step':>6} {'lr':>9} {'lost A':>8} {'lost B':>8}")
    marks = {2, t.warmup_steps + 1, steps, *(round(steps * f) for f in (0.25, 0.5, 0.75, 0.9))}
    for s in sorted(marks):
        row = slice(s, s + 1)
        print(f"{s:>6} {lrs[s]:>9.2e} {share(row, 0):>8.1%} {share(row, 1):>8.1%}")
    third = steps // 3
    phases = {
        f"early (1-{third})": slice(1, third + 1),
        f"middle ({third + 1}-{2 * third})": slice(third + 1, 2 * third + 1),
        f"late ({2 * third + 1}-{steps})": slice(2 * third + 1, steps + 1),
        "overall": slice(1, steps + 1),
    }
    print(f"{'phase':<18} {'lost A':>8} {'lost B':>8} {'A and B':>8}")
    for label, rows in phases.items():
        print(f"{label:<18} {share(rows, 0):>8.1%} {share(rows, 1):>8.1%} {share(rows):>8.1%}")
    by_shape = []
    for j, layer in enumerate(layers):
        a, b = (float(lost[1:, j, k].sum() / nonzero[1:, j, k].sum()) for k in (0, 1))
        by_shape.append(f"{layer.name} {a:.1%} / {b:.1%}")
    print("overall lost A / B by shape: " + "; ".join(by_shape))
    print(
        "bf16 twin at the end, ||w_twin - w_fp32|| / ||w_fp32 - w_init|| (lora_A / lora_B): "
        + "; ".join(
            f"{layer.name} " + " / ".join(f"{tw.change_error():.1%}" for tw in layer.twins)
            for layer in layers
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["a", "b"])
    parser.add_argument("--snr", type=float, default=0.3, help="gradient signal / noise")
    parser.add_argument("--optimizer", choices=["torch", "bnb8"], default="torch")
    parser.add_argument(
        "--sample", type=float, default=1 / 16, help="share of each weight's elements counted"
    )
    parser.add_argument("--grad-scale", type=float, default=1e-3)
    parser.add_argument("--tokens", type=int, default=32, help="token rows per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_params(PARAMS, "full")
    print(
        f"gradient signal/noise {args.snr:g}, noise scale {args.grad_scale:g}, "
        f"{args.tokens} tokens per step, optimizer {args.optimizer}, {args.sample:g} of the "
        f"elements counted, seed {args.seed}; torch {torch.__version__}"
    )
    start = time.perf_counter()
    for variant in args.variants:
        simulate(variant, cfg.sft.variants[variant], args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"\n{time.perf_counter() - start:.0f} s wall, "
        f"{usage.ru_utime + usage.ru_stime:.0f} s CPU (with imports)"
    )


if __name__ == "__main__":
    main()
