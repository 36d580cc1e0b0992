"""Shards of an evaluation: which validation reviews each eval_llm job scores, and
eval_llm_gather, which joins the jobs' results into what one unsharded job writes.

Kept apart from llmlab.eval.run so the gather step (a local CPU job) neither imports the
engines nor reruns when only their code changes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from llmlab.config import Config, check_key
from llmlab.errors import UserError
from llmlab.eval.metrics import metrics_by_system
from llmlab.io import read_json, read_parquet, write_json, write_parquet
from llmlab.schemas import PREDICTIONS_SCHEMA, SPLIT_SCHEMA

log = logging.getLogger(__name__)


def shard_of(review_ids: Sequence[int], shards: int, seed: int) -> np.ndarray:
    """The shard of each review: floor(u x shards), u = a 64-bit hash of (seed, review_id)
    / 2^64, uniform in [0, 1).

    A review's shard depends on its id alone, not on row order or on the other rows, and
    shards nest: shard s of N splits into shards 2s and 2s+1 of 2N.
    """
    # Integer arithmetic: floor(h / 2^64 x shards) exactly, never `shards` by rounding.
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest()) * shards
            >> 64
            for i in review_ids
        ],
        dtype=np.int64,
    )


def shard_rows(val: pl.DataFrame, shard: int, shards: int, seed: int) -> pl.DataFrame:
    """The validation rows of one shard, in validation order."""
    mask = shard_of(val["review_id"].to_list(), shards, seed) == shard
    return val.filter(pl.Series(mask, dtype=pl.Boolean))


def _merge_settings(infos: Sequence[dict[str, Any]], where: Sequence[Path]) -> list[dict]:
    """One setting list from the shards': times add up, per-review rates and biases are
    row-weighted means, and what every shard must agree on (the shared examples) is checked."""
    scored = [(info, path) for info, path in zip(infos, where, strict=True) if info["rows"]]
    first, first_path = scored[0]
    merged = []
    for i, setting in enumerate(first["settings"]):
        parts = [info["settings"][i] for info, _ in scored]
        weights = np.array([info["rows"] for info, _ in scored], dtype=float)
        for (_, path), part in zip(scored, parts, strict=True):
            if part["fixed_example_ids"] != setting["fixed_example_ids"]:
                raise UserError(
                    f"{path}: in-context examples of {setting['prompt']}/{setting['strategy']} "
                    f"differ from {first_path}'s; the shards were not made by one config"
                )
        used = sorted({i for p in parts for i in p["example_ids"]})
        merged.append(
            {k: v for k, v in setting.items() if k != "example_ids"}
            | {
                "example_count": len(used),
                "seconds": sum(p["seconds"] for p in parts),
                "calibration_seconds": sum(p["calibration_seconds"] for p in parts),
                "answer_matches_scores": float(
                    np.average([p["answer_matches_scores"] for p in parts], weights=weights)
                ),
                "bias": {
                    m: np.average([p["bias"][m] for p in parts], axis=0, weights=weights).tolist()
                    for m in setting["bias"]
                },
            }
        )
    return merged


def gather_shards(
    val: pl.DataFrame,
    frames: Sequence[pl.DataFrame],
    infos: Sequence[dict[str, Any]],
    paths: Sequence[Path],
    *,
    shards: int,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Join shard results into what one unsharded job writes: rows system by system, each
    in validation order, and one run info. Raises UserError on a missing, duplicated or
    foreign shard, naming the file."""
    seen: dict[int, Path] = {}
    for info, path in zip(infos, paths, strict=True):
        if info.get("shards") != shards:
            raise UserError(
                f"{path}: shard of a {info.get('shards')}-shard run, but eval.shards is "
                f"{shards} (under DVC: regenerate dvc.yaml with `make dvc-yaml`)"
            )
        if info["shard"] in seen:
            raise UserError(f"{path}: shard {info['shard']} again (also {seen[info['shard']]})")
        seen[info["shard"]] = path
    missing = sorted(set(range(shards)) - set(seen))
    if missing:
        raise UserError(f"shards {missing} of {shards} are missing from the inputs")
    scored = [info for info in infos if info["rows"]]
    if not scored:
        raise UserError("every shard is empty: no validation rows were scored")
    systems = scored[0]["systems"]
    for info, path in zip(infos, paths, strict=True):
        if info["rows"] and info["systems"] != systems:
            raise UserError(f"{path}: systems differ from the other shards'")
    joined = pl.concat(frames)
    position = pl.DataFrame(
        {"review_id": val["review_id"], "_row": np.arange(val.height)},
        schema={"review_id": PREDICTIONS_SCHEMA["review_id"], "_row": pl.Int64},
    )
    order = pl.DataFrame(
        {"system": systems, "_system": np.arange(len(systems))},
        schema={"system": pl.String, "_system": pl.Int64},
    )
    joined = joined.join(position, on="review_id", how="left").join(order, on="system")
    counts = joined.group_by("system").agg(
        pl.col("review_id").n_unique().alias("unique"), pl.len().alias("rows")
    )
    bad = counts.filter((pl.col("unique") != val.height) | (pl.col("rows") != val.height))
    if joined["_row"].null_count() or bad.height:
        raise UserError(
            f"the shards do not cover {val.height} validation reviews exactly once per system "
            "(made from another validation split?)"
        )
    joined = joined.sort("_system", "_row").drop("_row", "_system")
    info = {
        key: scored[0][key]
        for key in ("model", "shots", "backend", "labels", "pool_rows", "threshold_rows")
    }
    info |= {
        "load_seconds": sum(i.get("load_seconds") or 0.0 for i in infos),
        "val_rows": val.height,
        "settings": _merge_settings(infos, paths),
        "eval_seconds": sum(i.get("eval_seconds", 0.0) for i in infos),
        "shards": [
            {
                "shard": i["shard"],
                "rows": i["rows"],
                "load_seconds": i.get("load_seconds") or 0.0,
                "eval_seconds": i.get("eval_seconds", 0.0),
            }
            for i in sorted(infos, key=lambda i: i["shard"])
        ],
    }
    return joined, info


def run_eval_llm_gather(
    cfg: Config,
    *,
    model: str,
    shots: int,
    val: Path,
    shard_predictions: Sequence[Path],
    shard_info: Sequence[Path],
    predictions: Path,
    metrics: Path,
) -> None:
    """CLI layer of eval-llm-gather: join the shards, compute every system's metrics."""
    check_key(model, cfg.eval.models, flag="--model:", where="eval.models")
    check_key(shots, cfg.eval.shots, flag="--shots:", where="eval.shots")
    if len(shard_predictions) != len(shard_info):
        raise UserError(
            f"{len(shard_predictions)} --shard-predictions but {len(shard_info)} --shard-info"
        )
    val_df = read_parquet(val, SPLIT_SCHEMA)
    infos = [read_json(path) for path in shard_info]
    for info, path in zip(infos, shard_info, strict=True):
        if (info.get("model"), info.get("shots")) != (model, shots):
            raise UserError(f"{path}: a shard of {info.get('model')} at {info.get('shots')} shots")
    frames = [read_parquet(path, PREDICTIONS_SCHEMA) for path in shard_predictions]
    preds, info = gather_shards(val_df, frames, infos, shard_info, shards=cfg.eval.shards)
    info["systems"] = metrics_by_system(preds, cfg.eval)
    for system, m in info["systems"].items():
        log.info(
            "%s: accuracy %.3f, predicted positive %.2f, invalid %d",
            system,
            m["accuracy"],
            m["predicted_positive_rate"],
            m["invalid"],
        )
    write_parquet(preds, predictions)
    write_json(info, metrics)
