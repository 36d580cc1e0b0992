"""Acceptance benchmark of the classic baselines on the 50k real IMDB reviews.

Trains each baseline with the hyperparameters of params.yaml (preset `full` unless told
otherwise) on an 80/20 split of the reference file (`train_test_split(test_size=0.2,
random_state=42)`), scores the 10k held-out reviews and prints accuracy and wall time (train +
predict) against the targets:

    TF-IDF + logistic regression   accuracy >= 0.88 in <= 2 minutes
    RNN                            accuracy >= 0.85 in <= 20 minutes   (2-core CPU)

    python scripts/benchmark_baselines.py [--only tfidf|rnn] [--data PATH] [--params PATH]

The RNN uses OMP_NUM_THREADS torch threads if set, else every CPU available (as the stage).
The printed CPU time is the process's user+system time: on a busy machine it shows what the
wall time would be on an idle one (single thread).

Exit status: 0 when every target is met or the reference file is absent (it is not part of
the project: the run is skipped with a message), 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.model_selection import train_test_split

from llmlab.baselines import rnn, tfidf
from llmlab.config import Config, load_params

DEFAULT_DATA = Path("/work/shared/data/imdb_aclimdb.csv.gz")


@dataclass(frozen=True)
class Target:
    accuracy: float
    seconds: float


TARGETS = {"tfidf": Target(0.88, 120.0), "rnn": Target(0.85, 1200.0)}


def _log_probs_tfidf(cfg: Config, train: pl.DataFrame, test: pl.DataFrame) -> np.ndarray:
    model = tfidf.train_tfidf(train, cfg.baselines.tfidf)
    return tfidf.predict_log_proba(model, test["review"].to_list(), cfg.eval.labels)


def _log_probs_rnn(cfg: Config, train: pl.DataFrame, test: pl.DataFrame) -> np.ndarray:
    rnn.use_cpu_threads()
    trained = rnn.train_rnn(train, cfg.eval.labels, cfg.baselines.rnn)
    return rnn.predict_log_proba(trained, test["review"].to_list())


RUNNERS: dict[str, Callable[[Config, pl.DataFrame, pl.DataFrame], np.ndarray]] = {
    "tfidf": _log_probs_tfidf,
    "rnn": _log_probs_rnn,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="review,sentiment CSV(.gz)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--preset", default="full", help="params preset (default: %(default)s)")
    parser.add_argument("--only", choices=list(RUNNERS), action="append", help="run only these")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if not args.data.exists():
        print(f"skipped: reference data {args.data} is absent (it is optional)")
        return 0
    cfg = load_params(args.params, args.preset)
    df = pl.read_csv(args.data).with_row_index("review_id").cast({"review_id": pl.Int64})
    train, test = train_test_split(df, test_size=0.2, random_state=42)
    gold = test["sentiment"].to_numpy()
    print(f"{args.data.name}: {train.height} train / {test.height} test reviews")

    missed = []
    for name in args.only or list(RUNNERS):
        start, cpu_start = time.perf_counter(), time.process_time()
        log_probs = RUNNERS[name](cfg, train, test)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        accuracy = float(np.mean(np.array(cfg.eval.labels)[log_probs.argmax(axis=1)] == gold))
        target = TARGETS[name]
        ok = accuracy >= target.accuracy and wall <= target.seconds
        if not ok:
            missed.append(name)
        print(
            f"{name:<6} accuracy {accuracy:.4f}  wall {wall:7.1f} s  (cpu {cpu:7.1f} s)  "
            f"target >= {target.accuracy:.2f} in <= {target.seconds:.0f} s: "
            f"{'PASS' if ok else 'MISS'}",
            flush=True,
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
