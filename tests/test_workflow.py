"""The workflow itself: DAG of both presets, lint, profiles, dvc.yaml in sync with the Snakefile."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmlab.config import read_params_file
from llmlab.stages import stage_names

ROOT = Path(__file__).resolve().parents[1]
# The tools of the environment running the tests, whether or not it is activated.
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "HF_HUB_OFFLINE": "1",
}
GPU_RULES = {"eval_llm", "train_lora", "compare_generations", "merge_adapter", "judge_generations"}
ALL_RULES = {*stage_names(), "all"}


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["snakemake", *args], cwd=cwd, capture_output=True, text=True, env=ENV)


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def clean_copy(tmp_path: Path) -> Path:
    """The repository as a fresh clone has it (no outputs, no .snakemake state)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for rel in files:
        if (ROOT / rel).is_file():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tmp_path / rel)
    return tmp_path


@pytest.mark.parametrize("preset", ["full", "demo"])
def test_dry_run_builds_the_whole_dag(preset, tmp_path):
    repo = clean_copy(tmp_path)
    proc = snakemake("-n", "-p", "--config", f"preset={preset}", "--jobs", "1", cwd=repo)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    counts = job_counts(proc.stdout)
    assert set(counts) == ALL_RULES
    cfg = read_params_file(repo / "params.yaml")
    assert counts["prepare_model"] == len(cfg["models"])
    runs = len(cfg["eval"]["models"]) * len(cfg["eval"]["shots"])
    assert counts["eval_llm_gather"] == runs
    assert counts["eval_llm"] == runs * cfg["eval"].get("shards", 1)
    assert counts["train_lora"] == counts["filter_saiga"] == len(cfg["sft"]["variants"])
    assert f"--preset {preset}" in proc.stdout


def test_slurm_dry_run_has_one_gpu_per_shard_and_a_multi_gpu_train_job(tmp_path):
    """The cluster profile without a cluster (a dry run needs no sbatch): eval.shards: 3 gives
    three one-GPU jobs per (model, shots), a 2-process variant one job with two GPUs."""
    repo = clean_copy(tmp_path)
    raw = read_params_file(repo / "params.yaml")
    raw["eval"]["shards"] = 3
    raw["sft"]["variants"]["a"]["distributed"] = {"num_processes": 2}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    proc = snakemake("--profile", "profiles/slurm", "-n", cwd=repo)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    resources = {}
    for block in re.split(r"^(?:local)?rule ", proc.stdout, flags=re.MULTILINE)[1:]:
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.MULTILINE))
        rule = block.split(":", 1)[0]
        res = dict(r.split("=", 1) for r in fields["resources"].split(", "))
        resources[(rule, fields.get("wildcards", ""))] = res
    shard_jobs = {w: r for (rule, w), r in resources.items() if rule == "eval_llm"}
    runs = len(raw["eval"]["models"]) * len(raw["eval"]["shots"])
    assert len(shard_jobs) == 3 * runs
    assert {w.rpartition("shard=")[2] for w in shard_jobs} == {"0", "1", "2"}
    assert all(r["gpu"] == "1" and r["slurm_partition"] == "gpu" for r in shard_jobs.values())
    train = {w: r for (rule, w), r in resources.items() if rule == "train_lora"}
    assert train["variant=a"]["gpu"] == "2" and train["variant=b"]["gpu"] == "1"
    assert all(r["nodes"] == "1" and r["tasks_per_gpu"] == "0" for r in train.values())


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_slurm_profile_requests_gpus_for_gpu_rules_only(tmp_path):
    repo = clean_copy(tmp_path)
    proc = snakemake("-n", "--profile", "profiles/slurm", cwd=repo)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", proc.stdout, re.M | re.S)
    assert {name for name, _ in jobs} >= ALL_RULES - {"all"}
    for name, body in jobs:
        gpu = re.search(r"\bgpu=(\d+)", body)
        if name in GPU_RULES:
            assert gpu and int(gpu[1]) >= 1, f"{name} must request a GPU"
            assert "slurm_partition=gpu" in body, f"{name} must go to the GPU partition"
        else:
            assert not gpu, f"{name} must not request a GPU"


def test_config_overrides_other_than_preset_are_refused():
    proc = snakemake("-n", "--config", "preset=demo", "seed=1", "--jobs", "1")
    assert proc.returncode != 0
    assert "--config/--configfile may only set `preset` (got seed)" in proc.stderr + proc.stdout


def test_bad_params_stop_snakemake_naming_the_key(tmp_path):
    repo = clean_copy(tmp_path)
    raw = read_params_file(repo / "params.yaml")
    bad = copy.deepcopy(raw)
    bad["imdb"]["val_size"] = 0
    (repo / "params.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True))
    proc = snakemake("-n", "--jobs", "1", cwd=repo)
    assert proc.returncode != 0
    assert "params.yaml: imdb.val_size: Input should be greater than 0" in proc.stderr + proc.stdout


def test_dvc_yaml_is_generated_from_the_snakefile():
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab.dvc_sync", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, "dvc.yaml drifted from the Snakefile:\n" + proc.stderr


def test_dvc_stages_mirror_the_rules():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(dvc) == ALL_RULES - {"all"}
    assert "foreach" in dvc["filter_saiga"] and dvc["filter_saiga"]["foreach"] == "${sft.variants}"
    # eval.shards is a count: its shard indices are written out (DVC interpolates lists only).
    shards = list(range(read_params_file(ROOT / "params.yaml")["eval"].get("shards", 1)))
    assert dvc["eval_llm"]["matrix"] == {
        "model": "${eval.models}",
        "shard": shards,
        "shots": "${eval.shots}",
    }
    gather = dvc["eval_llm_gather"]
    assert gather["matrix"] == {"model": "${eval.models}", "shots": "${eval.shots}"}
    assert [d for d in gather["deps"] if "/shards/" in d] == [
        f"results/eval/${{item.model}}/${{item.shots}}shot/shards/{i}.{ext}"
        for ext in ("parquet", "json")
        for i in shards
    ]
    # A LoRA rank of variant b is a dependency of train_lora@b only.
    train = dvc["train_lora"]["do"]
    assert "sft.variants.${key}.lora" in train["params"]
    assert all("preset" in (s.get("do", s))["params"] for s in dvc.values())


def test_every_dvc_param_key_is_in_params_yaml():
    """DVC refuses to commit a stage whose params key is missing from params.yaml (a default
    of the typed config is not enough): every key of every foreach/matrix item must exist."""
    import itertools

    raw = read_params_file(ROOT / "params.yaml")

    def get(dotted):
        node = raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(dotted)
            node = node[part]
        return node

    def values(ref):
        if isinstance(ref, list):  # written out (a count's indices)
            return ref
        value = get(ref.removeprefix("${").removesuffix("}"))
        return list(value) if isinstance(value, dict | list) else [value]

    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        if "foreach" in stage:
            items = [{"${key}": str(v)} for v in values(stage["foreach"])]
        elif "matrix" in stage:
            axes = {w: values(ref) for w, ref in stage["matrix"].items()}
            items = [
                {f"${{item.{w}}}": str(v) for w, v in zip(axes, combo, strict=True)}
                for combo in itertools.product(*axes.values())
            ]
        else:
            items = [{}]
        for item, key in itertools.product(items, body["params"]):
            for placeholder, value in item.items():
                key = key.replace(placeholder, value)
            try:
                get(key)
            except KeyError:
                pytest.fail(f"dvc.yaml {name}: params key {key} is not in params.yaml")
