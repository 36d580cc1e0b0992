"""Time the SFT data stages on full-scale synthetic saiga with the demo tokenizer.

    python scripts/benchmark_sft_data.py [--rows 41600] [--tokenizer models/pretrained/sft_lm]

Runs saiga_analytics, then filter_saiga -> rename_roles -> format_chat for one variant, through
the same `run_*` functions the CLI calls, on `generate_saiga(rows, seed)` written to a
temporary folder. Prints wall-clock and CPU seconds per stage and in total, from this one run
(CPU time is the better guide on a shared machine; the load average is printed with it).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(name: str, func: Callable[[], object], rows: list[tuple[str, float, float]]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    rows.append((name, time.perf_counter() - wall, time.process_time() - cpu))
    print(f"{name:<16} {rows[-1][1]:7.1f} s wall {rows[-1][2]:7.1f} s CPU", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=41_600)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "models/pretrained/sft_lm")
    parser.add_argument("--preset", default="full", help="filter settings of this preset")
    parser.add_argument("--variant", default="a")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as the CLI runs stages
    logging.basicConfig(level=logging.WARNING)

    from llmlab.analytics.saiga import run_saiga_analytics
    from llmlab.config import load_params
    from llmlab.io import write_parquet
    from llmlab.sft_data.run import run_filter_saiga, run_format_chat, run_rename_roles
    from llmlab.synthetic.saiga import generate_saiga

    cfg = load_params(ROOT / "params.yaml", args.preset)
    with tempfile.TemporaryDirectory(prefix="bench_sft_") as tmp_dir:
        tmp = Path(tmp_dir)
        start = time.perf_counter()
        write_parquet(generate_saiga(args.rows, args.seed), tmp / "saiga.parquet")
        print(f"generated {args.rows} rows in {time.perf_counter() - start:.1f} s (not counted)")
        raw, tok, v = tmp / "saiga.parquet", args.tokenizer, args.variant
        rows: list[tuple[str, float, float]] = []
        timed(
            "saiga_analytics",
            lambda: run_saiga_analytics(cfg, raw, tok, tmp / "figures", tmp / "stats.json"),
            rows,
        )
        timed(
            "filter_saiga",
            lambda: run_filter_saiga(
                cfg, v, raw, tok, tmp / "kept.parquet", tmp / "funnel.json", tmp / "funnel.png"
            ),
            rows,
        )
        timed(
            "rename_roles",
            lambda: run_rename_roles(cfg, v, tmp / "kept.parquet", tmp / "renamed.parquet"),
            rows,
        )
        timed(
            "format_chat",
            lambda: run_format_chat(
                cfg, v, tmp / "renamed.parquet", tok, tmp / "train.parquet", tmp / "eval.parquet"
            ),
            rows,
        )
        wall = sum(r[1] for r in rows)
        cpu = sum(r[2] for r in rows)
        print(f"{'total':<16} {wall:7.1f} s wall {cpu:7.1f} s CPU")
        print(
            f"preset {cfg.preset}, variant {v}, tokenizer {tok}, rows {args.rows}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
