"""GPU binding of jobs on one multi-GPU machine: exclusive, inherited, released on exit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmlab.errors import UserError
from llmlab.gpus import claim_gpus, release_gpus, visible_gpus


@pytest.fixture()
def machine(tmp_path: Path) -> tuple[Path, Path]:
    """A fake driver folder with 4 GPUs, and a lock folder."""
    proc = tmp_path / "gpus"
    for bus in ("0000:17:00.0", "0000:31:00.0", "0000:b1:00.0", "0000:ca:00.0"):
        (proc / bus).mkdir(parents=True)
    yield proc, tmp_path / "locks"
    release_gpus()


def test_jobs_get_disjoint_gpus_until_none_is_left(machine):
    proc, locks = machine
    envs = [{} for _ in range(3)]
    assert claim_gpus(1, env=envs[0], proc=proc, locks=locks) == ["0"]
    assert claim_gpus(2, env=envs[1], proc=proc, locks=locks) == ["1", "2"]
    assert envs[1]["CUDA_VISIBLE_DEVICES"] == "1,2" and envs[1]["LLMLAB_GPUS_BOUND"] == "1"
    with pytest.raises(UserError, match="no 2 free GPU"):
        claim_gpus(2, env=envs[2], proc=proc, locks=locks, timeout=0.0, poll=0.01)
    assert "CUDA_VISIBLE_DEVICES" not in envs[2]
    assert claim_gpus(1, env=envs[2], proc=proc, locks=locks) == ["3"]
    release_gpus()
    assert claim_gpus(4, env={}, proc=proc, locks=locks) == ["0", "1", "2", "3"]


def test_nothing_changes_where_the_job_is_bound_already(machine):
    proc, locks = machine
    for env in ({"SLURM_JOB_ID": "7"}, {"LLMLAB_GPUS_BOUND": "1"}):
        assert claim_gpus(1, env=env, proc=proc, locks=locks) == ["0", "1", "2", "3"]
        assert "CUDA_VISIBLE_DEVICES" not in env
    # A job that needs every visible GPU takes them without locks.
    env = {"CUDA_VISIBLE_DEVICES": "5,6"}
    assert claim_gpus(2, env=env, proc=proc, locks=locks) == ["5", "6"]
    assert not locks.exists()
    # CUDA_VISIBLE_DEVICES narrows what can be claimed, by id.
    env = {"CUDA_VISIBLE_DEVICES": "5,6,7"}
    assert claim_gpus(1, env=env, proc=proc, locks=locks) == ["5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, proc) == []


def test_a_killed_job_frees_its_gpu(machine):
    proc, locks = machine
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from llmlab.gpus import claim_gpus; "
            f"claim_gpus(1, env={{}}, proc=Path({str(proc)!r}), locks=Path({str(locks)!r})); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert claim_gpus(1, env={}, proc=proc, locks=locks) == ["1"]
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    assert claim_gpus(1, env={}, proc=proc, locks=locks) == ["0"]
