"""scripts/gpu_check.py: its CPU smoke run passes, and it fails cleanly where it cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def run(*args: str, code: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", code] if code else [sys.executable, str(SCRIPT), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=SCRIPT.parents[1]
    )


def cuda_usable() -> bool:
    from llmlab.runtime import cuda_problem, probe_cuda

    return cuda_problem(probe_cuda()) is None


@pytest.mark.slow
def test_cpu_smoke_run_passes() -> None:
    """The same checks on the CPU in fp32: 11 s on idle cores, ~40 s on busy ones. vLLM's CPU
    engine alone takes a minute and QLoRA on the CPU is tests/test_train.py's: both skipped."""
    result = run("--device", "cpu", "--steps", "6", "--skip", "vllm")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    passed = {line.split("  ")[1].strip() for line in lines if line.startswith("PASS")}
    for name in ("train_lora LoRA", "eval transformers backend", "compare_generations"):
        assert any(p.startswith(name) for p in passed), result.stdout
    assert not any(line.startswith("FAIL") for line in lines), result.stdout
    assert lines[0].startswith("device cpu")
    assert lines[-1].startswith("total ") and "0 FAIL" in lines[-1]


def test_cuda_without_gpu_fails_in_one_line() -> None:
    if cuda_usable():
        pytest.skip("a CUDA GPU is usable here")
    result = run("--device", "cuda")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL  device: device: cuda, but no CUDA GPU")
    assert "Traceback" not in result.stderr


def test_missing_packages_are_listed_with_the_pip_command() -> None:
    code = (
        "import runpy, sys\n"
        "sys.modules['trl'] = sys.modules['polars'] = None  # not installed\n"
        f"sys.argv = [{str(SCRIPT)!r}, '--device', 'cpu']\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    result = run(code=code)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.count("\n") == 1 and "Traceback" not in result.stderr
    line = result.stdout.strip()
    assert line.startswith("FAIL  packages: llmlab needs trl, polars")
    assert "pip install trl==" in line and "polars==" in line
