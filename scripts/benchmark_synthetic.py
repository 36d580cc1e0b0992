"""Time the synthetic generators at full scale: generate, write (llmlab.io), load.

    python scripts/benchmark_synthetic.py [--saiga-rows 41600] [--imdb-rows 50000] [--seed 0]

Prints wall and CPU seconds per step (CPU time shows the cost when other jobs share the
machine) and the parquet size. Target: full-scale saiga generate + write + load < 30 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from llmlab.io import read_parquet, write_parquet
from llmlab.schemas import IMDB_SCHEMA, SAIGA_FULL_SCHEMA
from llmlab.synthetic.imdb import generate_imdb
from llmlab.synthetic.saiga import generate_saiga


def _timed(step: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = step()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def benchmark(
    name: str,
    generate: Callable[[int, int], pl.DataFrame],
    schema: pl.Schema,
    rows: int,
    seed: int,
    folder: Path,
) -> float:
    """Print one line per step for `name`; return the total wall time."""
    path = folder / f"{name}.parquet"
    df, gen_wall, gen_cpu = _timed(lambda: generate(rows, seed))
    _, write_wall, write_cpu = _timed(lambda: write_parquet(df, path))
    loaded, load_wall, load_cpu = _timed(lambda: read_parquet(path, schema))
    assert isinstance(loaded, pl.DataFrame) and loaded.equals(df)
    total = gen_wall + write_wall + load_wall
    print(f"{name}: {rows:,} rows, parquet {path.stat().st_size / 2**20:.1f} MiB")
    for step, wall, cpu in (
        ("generate", gen_wall, gen_cpu),
        ("write", write_wall, write_cpu),
        ("load", load_wall, load_cpu),
        ("total", total, gen_cpu + write_cpu + load_cpu),
    ):
        print(f"  {step:<9} {wall:6.2f} s wall  {cpu:6.2f} s CPU")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saiga-rows", type=int, default=41_600)
    parser.add_argument("--imdb-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        saiga_total = benchmark(
            "saiga", generate_saiga, SAIGA_FULL_SCHEMA, args.saiga_rows, args.seed, folder
        )
        benchmark("imdb", generate_imdb, IMDB_SCHEMA, args.imdb_rows, args.seed, folder)
    verdict = "within" if saiga_total < 30 else "OVER"
    print(f"saiga generate + write + load: {saiga_total:.1f} s ({verdict} the 30 s target)")


if __name__ == "__main__":
    main()
