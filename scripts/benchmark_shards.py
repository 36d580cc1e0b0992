"""Fixed cost per eval_llm shard job vs per-review work, and the efficiency of N shards,
measured in one run.

Each shard job pays a fixed cost whatever its size (process start and imports, tokenizer and
engine load, the content-free calibration prompts, the threshold slice if `threshold` is among
eval.calibration.methods) plus work per review. For each N in --shards this runs the N jobs
of eval.shards = N as real subprocesses (`python -m llmlab eval-llm`), one after another
(on a cluster they run in parallel, one GPU each), times each job, then runs the gather
(`python -m llmlab eval-llm-gather`), and prints

  1. F and c of the least-squares fit  job wall = F + c x rows  over every non-empty shard
     job (F: fixed cost per job; c: seconds per review at this config), and F / (c x n);
  2. per N: rows per shard, the slowest job, total job-seconds, speed-up T_1 / T_N and
     efficiency T_1 / (N x T_N), where T_N = slowest job + gather (the wall time with N
     GPUs in parallel), next to the efficiency the F + c model predicts;
  3. a check that every N's gathered predictions equal N = 1's (same rows in the same order,
     same predictions, label_scores within --tolerance, default 1e-4: float32 sums over other
     batches round differently): the benchmark doubles as a sanity check, and exits 1 when it
     fails.

An untimed 4-review job first warms the page cache, so the first timed job pays no more than
the others. On a shared machine other load inflates some jobs more than others (each job
prints its CPU seconds and the load average before it): --repeat R runs R rounds over every N
and keeps each job's fastest, and the fit warns when it does not hold together.

By default the eval is cut to one model, one prompt (--prompt) and 0 shots (--shots), so a run
takes minutes, not an hour; the other settings scale c (per-review work) and the calibration
part of F alike. Uses the preset's (default demo) backend and settings otherwise. The numbers
are of this machine and this load: compare them only within one run (the CPU is printed).

    python scripts/benchmark_shards.py --model-dir models/pretrained/instruct_lm
    python scripts/benchmark_shards.py --model-dir ... --n 192 --shots 5 --shards 1 2 4 8
    python scripts/benchmark_shards.py --model-dir ... --reviews /work/shared/data/imdb.csv.gz

Reviews: a CSV/parquet with `review` and `sentiment` columns, or (default) synthetic ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """`lscpu`'s model name, with CPU family and model (a VM may name only the vendor)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("Model name", platform.processor() or "unknown")
    if "CPU family" in fields and "Model" in fields:
        name += f" (family {fields['CPU family']}, model {fields['Model']})"
    return name


def avx512_flags() -> list[str]:
    """The avx512* flags of the first processor in /proc/cpuinfo (empty: no AVX-512)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            return sorted(f for f in line.split(":", 1)[1].split() if f.startswith("avx512"))
    return []


def device_name() -> str:
    """What the engines ran on: F and c mean different things on a GPU and on a CPU."""
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores"


def make_splits(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path]:
    """train/val parquets in SPLIT_SCHEMA (disjoint review_ids), and a 4-review warm-up val."""
    import polars as pl

    from llmlab.io import write_parquet
    from llmlab.schemas import SPLIT_SCHEMA
    from llmlab.synthetic.imdb import generate_imdb

    need = args.n + args.train_rows
    if args.reviews:
        path = Path(args.reviews)
        df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
        df = df.select("review", "sentiment")
        if df.height < need:
            sys.exit(f"{path}: {df.height} reviews, need --n + --train-rows = {need}")
        df = df.sample(n=need, seed=0, shuffle=True)
    else:
        df = generate_imdb(need, seed=0)
    df = df.with_row_index("review_id").with_columns(pl.col("review_id").cast(pl.Int64))
    df = df.select(list(SPLIT_SCHEMA)).cast(dict(SPLIT_SCHEMA))
    paths = work / "train.parquet", work / "val.parquet", work / "warmup_val.parquet"
    write_parquet(df.slice(args.n), paths[0])
    write_parquet(df.head(args.n), paths[1])
    write_parquet(df.head(4), paths[2])
    return paths


def make_params(args: argparse.Namespace, shards: int, path: Path) -> dict[str, Any]:
    """A params copy: eval cut to --model / --shots / --prompt, eval.shards = N. Returns a
    summary of the eval config it resolves to (validated here)."""
    import yaml

    from llmlab.config import load_params, read_params_file

    raw = read_params_file(args.params)
    ev = raw["eval"]
    if args.prompt != "all":
        if args.prompt not in ev["prompts"]:
            sys.exit(
                f"--prompt: {args.prompt!r} is not in eval.prompts ({', '.join(ev['prompts'])})"
            )
        ev["prompts"] = {args.prompt: ev["prompts"][args.prompt]}
    ev["models"], ev["shots"] = [args.model], [args.shots]
    for overlay in (raw.get("presets") or {}).values():
        over_eval = (overlay or {}).get("eval") or {}
        for key in ("models", "shots", "shards"):  # DAG keys: the same in every preset
            over_eval.pop(key, None)
        if args.prompt != "all" and "prompts" in over_eval:
            over_eval["prompts"] = {
                k: v for k, v in over_eval["prompts"].items() if k == args.prompt
            }
    ev["shards"] = shards  # a DAG key: set at the top level, the same in every preset
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    cfg = load_params(path, preset=args.preset)
    return {
        "backend": cfg.eval.backend,
        "device": cfg.device,
        "prompts": list(cfg.eval.prompts),
        "strategies": list(cfg.eval.fewshot.strategies) if args.shots else ["-"],
        "calibration": list(cfg.eval.calibration.methods),
        "review_tokens": cfg.eval.review_tokens,
        "shards": cfg.eval.shards,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run one llmlab command as a subprocess: (wall seconds, CPU seconds); exits on failure.

    CPU / wall well under the torch threads during the engine work means other processes
    took the cores: that job's wall is inflated.
    """
    cpu0, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, cpu


def shard_job(
    args: argparse.Namespace, params: Path, shard: int, train: Path, val: Path, out: Path
) -> dict[str, Any]:
    """One eval-llm job: its wall time and what its info JSON says."""
    pred, info_path = out / f"{shard}.parquet", out / f"{shard}.json"
    cmd = [
        sys.executable, "-m", "llmlab", "eval-llm", "--preset", args.preset,
        "--params", str(params), "--model", args.model, "--shots", str(args.shots),
        "--shard", str(shard), "--model-dir", str(args.model_dir), "--train", str(train),
        "--val", str(val), "--predictions", str(pred), "--info", str(info_path),
    ]  # fmt: skip
    load_average = os.getloadavg()[0]
    wall, cpu = run_cli(cmd, out / f"{shard}.log")
    info = json.loads(info_path.read_text())
    load = info.get("load_seconds") or 0.0
    evaluated = info.get("eval_seconds", 0.0)
    return {
        "shard": shard,
        "rows": info["rows"],
        "settings": len(info["settings"]),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average_before": load_average,
        "load_seconds": load,
        "eval_seconds": evaluated,
        # process start, imports, reading the splits, tokenizer, prompt building
        "other_seconds": wall - load - evaluated,
        "calibration_seconds": sum(s["calibration_seconds"] for s in info["settings"]),
        "predictions": str(pred),
        "info": str(info_path),
    }


def gather(args: argparse.Namespace, params: Path, val: Path, jobs: list[dict], out: Path):
    """The eval-llm-gather of one N: its wall seconds and the joined predictions' path."""
    pred, metrics = out / "predictions.parquet", out / "metrics.json"
    cmd = [
        sys.executable, "-m", "llmlab", "eval-llm-gather", "--preset", args.preset,
        "--params", str(params), "--model", args.model, "--shots", str(args.shots),
        "--val", str(val), "--shard-predictions", *(j["predictions"] for j in jobs),
        "--shard-info", *(j["info"] for j in jobs), "--predictions", str(pred),
        "--metrics", str(metrics),
    ]  # fmt: skip
    wall, _ = run_cli(cmd, out / "gather.log")
    systems = json.loads(metrics.read_text())["systems"]
    accuracy = {name: m["accuracy"] for name, m in systems.items()}
    return wall, pred, accuracy


def compare(reference: Path, other: Path, tolerance: float) -> dict[str, Any]:
    """Gathered predictions of N shards vs one job's: rows/order, predictions, scores."""
    import polars as pl

    a, b = pl.read_parquet(reference), pl.read_parquet(other)
    if a.height != b.height:
        return {"ok": False, "problem": f"{b.height} rows vs {a.height}"}
    for col in ("system", "review_id", "gold", "prediction", "valid"):
        if not a[col].equals(b[col], check_names=True):  # nulls compare equal
            return {"ok": False, "problem": f"column {col} differs (value or order)"}
    sa, sb = a["label_scores"].to_list(), b["label_scores"].to_list()
    if any(len(x) != len(y) for x, y in zip(sa, sb, strict=True)):
        return {"ok": False, "problem": "label_scores lengths differ"}
    diffs = np.array(
        [abs(u - v) for x, y in zip(sa, sb, strict=True) for u, v in zip(x, y, strict=True)]
    )
    diff = float(diffs.max(initial=0.0))
    over = int((diffs > tolerance).sum())
    ok = over == 0
    return {
        "ok": ok,
        "max_label_score_diff": diff,
        "scores_over_tolerance": over,
        "scores": len(diffs),
        "problem": None
        if ok
        else (
            f"predictions identical, but {over} of {len(diffs)} label_scores differ by more "
            f"than {tolerance:g} (max {diff:.2e})"
        ),
    }


def fit(jobs: list[dict]) -> tuple[float, float, float]:
    """Least squares of wall = F + c x rows over non-empty jobs: (F, c, RMS residual)."""
    scored = [j for j in jobs if j["rows"]]
    rows = np.array([j["rows"] for j in scored], dtype=float)
    wall = np.array([j["wall_seconds"] for j in scored])
    if len(set(rows)) < 2:
        sys.exit("need shard jobs of at least two sizes to fit F + c x rows (add --shards)")
    design = np.column_stack([np.ones_like(rows), rows])
    (f, c), *_ = np.linalg.lstsq(design, wall, rcond=None)
    rms = float(np.sqrt(np.mean((design @ [f, c] - wall) ** 2)))
    return float(f), float(c), rms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-dir", type=Path, required=True, help="prepared model folder")
    p.add_argument("--model", default="instruct_lm", help="key of eval.models (its settings)")
    p.add_argument("--reviews", help="CSV/parquet of reviews (default: synthetic)")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--preset", default="demo", choices=("demo", "full"))
    p.add_argument("--n", type=int, default=96, help="validation reviews")
    p.add_argument("--train-rows", type=int, default=400, help="train pool (few-shot, threshold)")
    p.add_argument("--shots", type=int, default=0, help="one shot count (default 0)")
    p.add_argument("--prompt", default="system", help="key of eval.prompts, or 'all'")
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4], help="values of N")
    p.add_argument(
        "--repeat", type=int, default=1, help="rounds over every N; each job's fastest counts"
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="on label_scores vs N = 1")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed 4-review job")
    p.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    p.add_argument("--json", type=Path, help="write all measurements here")
    args = p.parse_args()
    args.model_dir = args.model_dir.resolve()
    args.shards = sorted(set(args.shards) | {1})  # N = 1 is the reference
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

    flags = avx512_flags()
    cpu = {"model": cpu_model(), "avx512": bool(flags), "avx512_flags": flags}
    print(f"CPU: {cpu['model']}, {os.cpu_count()} cores")
    print(f"AVX-512: {'yes (' + ' '.join(flags) + ')' if flags else 'no'}")
    print(f"device: {device_name()}; load average at start: {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(prefix="bench_shards_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        train, val, warm_val = make_splits(args, work)
        params = {n: work / f"params_{n}.yaml" for n in args.shards}
        summary = {n: make_params(args, n, path) for n, path in params.items()}[1]
        print(
            f"eval: model {args.model} ({args.model_dir}), {args.shots} shots, prompts "
            f"{summary['prompts']}, strategies {summary['strategies']}, calibration "
            f"{summary['calibration']}, backend {summary['backend']} on {summary['device']}, "
            f"review_tokens {summary['review_tokens']}; {args.n} validation reviews, "
            f"{args.train_rows} train; preset {args.preset}"
        )
        if not args.no_warmup:  # page cache, compiled bytecode: not the first job's cost alone
            (work / "warmup").mkdir(exist_ok=True)
            job = shard_job(args, params[1], 0, train, warm_val, work / "warmup")
            print(f"warm-up job (4 reviews, untimed): {job['wall_seconds']:.1f} s", flush=True)

        rounds: list[dict[int, dict[str, Any]]] = []
        for r in range(args.repeat):  # rounds interleave the N: a busy spell hits all alike
            rounds.append({})
            for n in args.shards:
                out = work / f"round{r}" / f"N{n}"
                out.mkdir(parents=True, exist_ok=True)
                jobs = []
                for shard in range(n):
                    jobs.append(shard_job(args, params[n], shard, train, val, out))
                    j = jobs[-1]
                    print(
                        f"{f'round {r} ' if args.repeat > 1 else ''}N={n} shard {shard}: "
                        f"{j['rows']} rows, wall {j['wall_seconds']:.1f} s (engine load "
                        f"{j['load_seconds']:.1f}, eval {j['eval_seconds']:.1f} of which "
                        f"calibration {j['calibration_seconds']:.1f}, other "
                        f"{j['other_seconds']:.1f}; CPU {j['cpu_seconds']:.1f} s, load average "
                        f"before {j['load_average_before']:.2f})",
                        flush=True,
                    )
                gather_wall, pred, accuracy = gather(args, params[n], val, jobs, out)
                print(f"N={n} gather: {gather_wall:.1f} s", flush=True)
                rounds[r][n] = {
                    "jobs": jobs,
                    "gather_seconds": gather_wall,
                    "predictions": str(pred),
                    "accuracy": accuracy,
                }
        reference = Path(rounds[0][1]["predictions"])
        checks = [
            {"round": r, "shards": count}
            | compare(reference, Path(run["predictions"]), args.tolerance)
            for r, one in enumerate(rounds)
            for count, run in one.items()
            if run["predictions"] != str(reference)
        ]
    # Each job's and gather's fastest round: the least disturbed by other load.
    runs = {
        n: rounds[0][n]
        | {
            "jobs": [
                min((one[n]["jobs"][s] for one in rounds), key=lambda j: j["wall_seconds"])
                for s in range(n)
            ],
            "gather_seconds": min(one[n]["gather_seconds"] for one in rounds),
        }
        for n in args.shards
    }

    all_jobs = [j for r in runs.values() for j in r["jobs"]]
    f, c, rms = fit(all_jobs)
    settings = max(j["settings"] for j in all_jobs)
    n = args.n
    print(f"\nload average at end: {os.getloadavg()[0]:.2f} (a shared machine: upper bounds)")
    print(
        f"fit over {sum(1 for j in all_jobs if j['rows'])} shard jobs: wall = F + c x rows, "
        f"F = {f:.2f} s per job, c = {c * 1000:.1f} ms per review "
        f"({c / settings * 1000:.1f} ms per review x setting, {settings} setting(s)), "
        f"RMS residual {rms:.2f} s"
    )
    mean_wall = float(np.mean([j["wall_seconds"] for j in all_jobs if j["rows"]]))
    if f <= 0 or c <= 0 or rms > 0.15 * mean_wall:
        print(
            "WARNING: the fit is unreliable (F or c <= 0, or residuals > 15% of a job): the "
            "jobs did not see the same machine (other load: compare CPU s and load averages "
            "above); rerun when it is quiet, or with --repeat 2"
        )
    print(
        f"fixed cost relative to the whole work: F / (c x n) = {f:.2f} / ({c:.4f} x {n}) = "
        f"{f / (c * n):.2f}"
    )

    t1 = max(j["wall_seconds"] for j in runs[1]["jobs"]) + runs[1]["gather_seconds"]
    g1 = runs[1]["gather_seconds"]
    predicted_t1 = f + c * n + g1
    header = (
        f"\n{'N':>3} {'rows/shard':>11} {'slowest s':>10} {'gather s':>9} {'T_N s':>7} "
        f"{'job-s':>7} {'job-s/T_1':>10} {'speed-up':>9} {'efficiency':>11} {'model eff':>10}"
    )
    print(header)
    table = []
    for count, r in runs.items():
        rows = [j["rows"] for j in r["jobs"]]
        slowest = max(j["wall_seconds"] for j in r["jobs"])
        t_n = slowest + r["gather_seconds"]
        job_seconds = sum(j["wall_seconds"] for j in r["jobs"]) + r["gather_seconds"]
        # The model's T_N: the largest shard, the fixed cost, this N's measured gather.
        model_t = f + c * max(rows) + r["gather_seconds"]
        row = {
            "shards": count,
            "rows_min": min(rows),
            "rows_max": max(rows),
            "slowest_job_seconds": slowest,
            "gather_seconds": r["gather_seconds"],
            "t_n_seconds": t_n,
            "job_seconds": job_seconds,
            "job_seconds_over_t1": job_seconds / t1,
            "speedup": t1 / t_n,
            "efficiency": t1 / (count * t_n),
            "model_efficiency": predicted_t1 / (count * model_t),
        }
        table.append(row)
        print(
            f"{count:>3} {f'{min(rows)}-{max(rows)}':>11} {slowest:>10.1f} "
            f"{r['gather_seconds']:>9.1f} {t_n:>7.1f} {job_seconds:>7.1f} "
            f"{row['job_seconds_over_t1']:>10.2f} {row['speedup']:>9.2f} "
            f"{row['efficiency']:>11.2f} {row['model_efficiency']:>10.2f}"
        )
    fg = f + g1
    print(
        "T_N = slowest shard job + gather (N GPUs in parallel); efficiency = T_1 / (N x T_N); "
        "job-s = N jobs + gather (the GPU/CPU time billed)\n"
        f"model: efficiency(N) = (F + G + c n) / (N (F + G) + c n) with an even split, G = "
        f"gather; on this machine 50% at N = 2 + c n / (F + G) = {2 + c * n / fg:.1f} for "
        f"n = {n} (grows with n and with the per-review work)"
    )

    failed = sorted({chk["shards"] for chk in checks if not chk["ok"]})
    for chk in checks:
        prefix = f"round {chk['round']} " if args.repeat > 1 else ""
        where = f"{prefix}N={chk['shards']}"
        if chk["ok"]:
            print(
                f"check {where} vs N=1: identical rows, order and predictions; max "
                f"|label_scores diff| {chk['max_label_score_diff']:.1e} (<= {args.tolerance:g})"
            )
        else:
            print(f"check {where} vs N=1: FAILED: {chk['problem']}")
    print("check: " + ("PASSED" if not failed else f"FAILED for N = {failed}"))

    if args.json:
        result = {
            "cpu": cpu,
            "device": device_name(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "eval": summary,
            "rounds": [{str(k): v for k, v in one.items()} for one in rounds],
            "runs": {str(k): v for k, v in runs.items()},  # each job's fastest round
            "fit": {
                "fixed_seconds": f,
                "seconds_per_review": c,
                "seconds_per_review_setting": c / settings,
                "settings": settings,
                "rms_residual_seconds": rms,
                "fixed_over_work": f / (c * n),
            },
            "table": table,
            "checks": checks,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"measurements: {args.json}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
