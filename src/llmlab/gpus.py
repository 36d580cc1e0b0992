"""Give each GPU job its own GPUs on a machine with more GPUs than one job uses.

SLURM binds a job to the GPUs it was granted (CUDA_VISIBLE_DEVICES, cgroups). Snakemake on
one multi-GPU machine (`--resources gpu=8`) only counts: it runs up to 8 one-GPU jobs at once
but tells none of them which GPU is theirs, so every engine would start on GPU 0. Before any
CUDA work, a job therefore takes an exclusive lock on as many of the visible GPUs as it needs
(one lock file per GPU, held for the life of the process, released by the kernel when it
ends, even on a kill) and narrows CUDA_VISIBLE_DEVICES to them; child processes (torchrun
ranks, vLLM workers) inherit it. Snakemake's `gpu` resource keeps the jobs within the GPUs
there are, so a job waits for a lock only when something outside Snakemake holds GPUs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import IO

from llmlab.errors import UserError

log = logging.getLogger(__name__)

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees
_HELD: list[IO[bytes]] = []  # open lock files: the locks live as long as the process


def visible_gpus(env: Mapping[str, str], proc: Path = NVIDIA_PROC) -> list[str]:
    """The GPU ids CUDA would number 0.. for this process (CUDA_VISIBLE_DEVICES if set)."""
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "NoDevFiles"]
    count = len(list(proc.iterdir())) if proc.is_dir() else 0
    return [str(i) for i in range(count)]


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"llmlab-gpus-{os.getuid()}"


def _try_lock(path: Path) -> IO[bytes] | None:
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim_gpus(
    count: int,
    *,
    env: MutableMapping[str, str] | None = None,
    proc: Path = NVIDIA_PROC,
    locks: Path | None = None,
    timeout: float = 24 * 3600.0,
    poll: float = 5.0,
) -> list[str]:
    """Bind this process to `count` GPUs no other llmlab job on the machine holds.

    Nothing changes under SLURM, in an already bound process, or when the job needs every
    visible GPU. Returns the GPU ids the process uses. Call before anything initialises CUDA.
    """
    env = os.environ if env is None else env
    visible = visible_gpus(env, proc)
    if "SLURM_JOB_ID" in env or env.get("LLMLAB_GPUS_BOUND") or len(visible) <= count:
        return visible
    folder = locks or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        got: list[tuple[str, IO[bytes]]] = []
        for gpu in visible:
            handle = _try_lock(folder / f"gpu-{gpu}.lock")
            if handle is not None:
                got.append((gpu, handle))
                if len(got) == count:
                    break
        if len(got) == count:
            break
        for _, handle in got:
            handle.close()
        if time.monotonic() > deadline:
            raise UserError(
                f"no {count} free GPU(s) of {','.join(visible)} within {timeout:.0f} s: other "
                f"jobs hold their locks in {folder}"
            )
        if not waited:
            log.info("waiting for %d of the GPUs %s to be free", count, ",".join(visible))
            waited = True
        time.sleep(poll)
    _HELD.extend(handle for _, handle in got)
    ids = [gpu for gpu, _ in got]
    env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    env["LLMLAB_GPUS_BOUND"] = "1"  # ranks and workers started from here are bound already
    log.info("bound to GPU(s) %s of %s", ",".join(ids), ",".join(visible))
    return ids


def release_gpus() -> None:
    """Drop the locks this process holds (tests; a process exit drops them anyway)."""
    while _HELD:
        _HELD.pop().close()


def bind_gpus(device: str, count: int) -> None:
    """`claim_gpus(count)` for a CUDA run; a CPU run uses no GPU."""
    if device == "cuda":
        claim_gpus(count)
