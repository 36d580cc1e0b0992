"""Throughput of the evaluation backends on one model, measured in one run.

Prints prompts/s of
  1. the vLLM backend vs the transformers backend on the same zero-shot prompts, and
  2. 5-shot prompts with one shared example set through vLLM with prefix caching vs without,
and the two ratios. Each engine runs in its own subprocess (a vLLM engine cannot be cleanly
restarted in-process) on identical prompts; engine start-up is excluded from prompts/s and
reported separately.

    python scripts/benchmark_eval.py --model-dir models/pretrained/instruct_lm
    python scripts/benchmark_eval.py --model-dir ... --reviews /work/shared/data/imdb_aclimdb.csv.gz

Reviews: a CSV/parquet with `review` and `sentiment` columns, or (default) synthetic ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PARTS = ("vllm_cached", "vllm_uncached", "transformers")


def build_prompts(args: argparse.Namespace, tokenizer) -> tuple[list, list]:
    """Zero-shot and 5-shot prompts (system template, balanced example set) for `args.n`."""
    import polars as pl

    from llmlab.config import load_params
    from llmlab.eval.fewshot import select_fixed
    from llmlab.eval.prompts import build_prompt, truncate_reviews
    from llmlab.synthetic.imdb import generate_imdb

    cfg = load_params(args.params, preset="demo").eval
    if args.reviews:
        path = Path(args.reviews)
        df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    else:
        df = generate_imdb(args.n + 200, seed=0)
    df = df.with_row_index("review_id").with_columns(pl.col("review_id").cast(pl.Int64))
    queries, pool = df.head(args.n), df.slice(args.n)
    examples_df = select_fixed(pool, "balanced", args.shots, cfg.labels, seed=0)
    examples = list(
        zip(
            truncate_reviews(examples_df["review"].to_list(), tokenizer, args.example_tokens),
            examples_df["sentiment"],
            strict=True,
        )
    )
    texts = truncate_reviews(queries["review"].to_list(), tokenizer, args.review_tokens)
    template = cfg.prompts[args.prompt]

    def make(shots: list) -> list:
        return [
            build_prompt(template, t, cfg.labels, shots, "chat", cfg.plain_format) for t in texts
        ]

    return make([]), make(examples)


def device_name() -> str:
    """What the engines ran on: the ratios mean different things on a GPU and on a CPU."""
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores"


def run_part(args: argparse.Namespace) -> dict:
    """One engine: load it, warm it up, time the zero-shot and 5-shot prompt sets."""
    import torch

    from llmlab.config import TransformersConfig, VllmConfig
    from llmlab.eval.backends import TransformersBackend, VllmBackend

    device = "cuda" if torch.cuda.is_available() else "cpu"  # printed with the results
    start = time.perf_counter()
    if args.part == "transformers":
        backend = TransformersBackend(
            args.model_dir, TransformersConfig(dtype=args.dtype, batch_size=8), device
        )
    else:
        backend = VllmBackend(
            args.model_dir,
            VllmConfig(
                dtype=args.dtype,
                max_model_len=4096,
                kv_cache_memory_bytes=2 << 30,
                enforce_eager=True,
                enable_prefix_caching=args.part == "vllm_cached",
                max_num_seqs=64,
            ),
            device,
        )
    load = time.perf_counter() - start
    zero, few = build_prompts(args, backend.tokenizer)
    labels = ["negative", "positive"]
    backend.classify(zero[:4], labels)  # warm-up (first-call allocations, graph capture)
    out = {"part": args.part, "device": device_name(), "load_seconds": load, "n": len(zero)}
    for name, prompts in (("zero_shot", zero), ("few_shot", few)):
        if args.part == "transformers" and name == "few_shot" and not args.transformers_few:
            continue
        t0 = time.perf_counter()
        preds = backend.classify(prompts, labels)
        out[f"{name}_prompts_per_second"] = len(prompts) / (time.perf_counter() - t0)
        out[f"{name}_positive_rate"] = sum(p.prediction == "positive" for p in preds) / len(preds)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--reviews", help="CSV/parquet of reviews (default: synthetic)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--n", type=int, default=200, help="prompts per set")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--prompt", default="system", help="key of eval.prompts")
    p.add_argument("--review-tokens", type=int, default=200)
    p.add_argument("--example-tokens", type=int, default=150)
    # float32 is the demo preset's CPU dtype for both backends: faster than bfloat16 there.
    p.add_argument("--dtype", default="float32", help="of both backends")
    p.add_argument("--transformers-few", action="store_true", help="also time 5-shot there")
    p.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part:
        print("RESULT " + json.dumps(run_part(args)), flush=True)
        return

    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    results = {}
    for part in PARTS:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--part", part]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{part} failed:\n{proc.stderr[-3000:]}")
        results[part] = json.loads(lines[-1].removeprefix("RESULT "))
        print(json.dumps(results[part]), flush=True)
    v, t, u = results["vllm_cached"], results["transformers"], results["vllm_uncached"]
    print(f"\nprompts per set: {v['n']}, model: {args.model_dir}, dtype: {args.dtype}")
    print(f"device: {v['device']}")
    print(
        f"zero-shot  vLLM {v['zero_shot_prompts_per_second']:.2f} prompts/s vs transformers "
        f"{t['zero_shot_prompts_per_second']:.2f} prompts/s: "
        f"{v['zero_shot_prompts_per_second'] / t['zero_shot_prompts_per_second']:.2f}x"
    )
    print(
        f"{args.shots}-shot     vLLM with prefix caching {v['few_shot_prompts_per_second']:.2f} "
        f"prompts/s vs without {u['few_shot_prompts_per_second']:.2f} prompts/s: "
        f"{v['few_shot_prompts_per_second'] / u['few_shot_prompts_per_second']:.2f}x"
    )
    print(
        f"engine start-up: vLLM {v['load_seconds']:.0f} s, transformers {t['load_seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
