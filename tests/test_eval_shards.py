"""Sharded evaluation: stable shard assignment, and shards gathered equal one unsharded job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmlab.errors import UserError
from llmlab.eval.run import evaluate
from llmlab.eval.shards import gather_shards, shard_of, shard_rows
from tests.test_eval_run import BiasedKeywordBackend, WordTokenizer, frame, small_eval_cfg


@pytest.fixture(scope="module")
def eval_cfg():
    return small_eval_cfg()


def test_a_review_shard_depends_on_its_id_alone():
    ids = list(range(5000))
    shards = shard_of(ids, 4, seed=0)
    # Not on row order, nor on which other rows are present.
    assert (shard_of(ids[::-1], 4, seed=0) == shards[::-1]).all()
    assert (shard_of(ids[1000:1010], 4, seed=0) == shards[1000:1010]).all()
    # Nesting: shard s of 2 splits into shards 2s, 2s + 1 of 4.
    assert (shard_of(ids, 2, seed=0) == shards // 2).all()
    assert set(shard_of(ids, 1, seed=0)) == {0}
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 0.9 * 1250 and counts.max() < 1.1 * 1250, counts
    # Seeded: another seed is another assignment.
    assert (shard_of(ids, 4, seed=1) != shards).mean() > 0.5


def test_shard_rows_partition_the_validation_rows_in_order():
    val = frame(1000, 50)
    parts = [shard_rows(val, s, 3, seed=7) for s in range(3)]
    assert sum(p.height for p in parts) == val.height
    ids = [i for p in parts for i in p["review_id"]]
    assert sorted(ids) == val["review_id"].to_list()
    for p in parts:
        assert p["review_id"].to_list() == sorted(p["review_id"])


def _sharded(eval_cfg, shots: int, shards: int):
    train, val = frame(0, 60), frame(1000, 23)
    kw = {
        "model": "instruct_lm",
        "shots": shots,
        "train": train,
        "eval_cfg": eval_cfg,
        "prompt_format": "chat",
    }
    whole, whole_info = evaluate(BiasedKeywordBackend(), WordTokenizer(), val=val, **kw)
    frames, infos = [], []
    for s in range(shards):
        rows = shard_rows(val, s, shards, seed=0)
        preds, info = evaluate(BiasedKeywordBackend(), WordTokenizer(), val=rows, **kw)
        info |= {"shard": s, "shards": shards, "rows": rows.height}
        info["systems"] = list(dict.fromkeys(preds["system"]))
        frames.append(preds)
        infos.append(info)
    return val, whole, whole_info, frames, infos


@pytest.mark.parametrize("shots", [0, 5])
def test_gathered_shards_equal_one_job(eval_cfg, shots):
    val, whole, whole_info, frames, infos = _sharded(eval_cfg, shots, 3)
    paths = [Path(f"{s}.json") for s in range(3)]
    # Shards arrive in any order.
    joined, info = gather_shards(val, frames[::-1], infos[::-1], paths[::-1], shards=3)
    assert joined.equals(whole)
    for merged, one in zip(info["settings"], whole_info["settings"], strict=True):
        assert merged["fixed_example_ids"] == one["fixed_example_ids"]
        assert merged["example_count"] == len(one["example_ids"])
        assert merged["answer_matches_scores"] == pytest.approx(one["answer_matches_scores"])
        for method, bias in one["bias"].items():
            assert merged["bias"][method] == pytest.approx(bias)
    assert [s["rows"] for s in info["shards"]] == [i["rows"] for i in infos]
    assert info["val_rows"] == val.height


def test_gather_refuses_missing_foreign_or_repeated_shards(eval_cfg):
    val, _, _, frames, infos = _sharded(eval_cfg, 0, 3)
    paths = [Path(f"{s}.json") for s in range(3)]
    with pytest.raises(UserError, match=r"shards \[2\] of 3 are missing"):
        gather_shards(val, frames[:2], infos[:2], paths[:2], shards=3)
    with pytest.raises(UserError, match="0.json: shard of a 3-shard run, but eval.shards is 4"):
        gather_shards(val, frames, infos, paths, shards=4)
    with pytest.raises(UserError, match="1.json: shard 0 again"):
        gather_shards(val, frames, [infos[0], infos[0], infos[2]], paths, shards=3)
    with pytest.raises(UserError, match="do not cover 24 validation reviews"):
        gather_shards(frame(1000, 24), frames, infos, paths, shards=3)
