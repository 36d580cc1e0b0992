"""scripts/gpu_check.py: its CPU smoke run passes, and it fails cleanly where it cannot run."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmlab.config import load_params

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
    """The checks on the CPU in fp32, from the full preset's config (its sft.generation:
    backend vllm, quantize false): 70-80 s on 2 busy cores. `--skip vllm`: vLLM's CPU engine
    starts twice (eval, compare_generations) and adds ~3 minutes there; QLoRA on the CPU is
    tests/test_train.py's, so its merge is skipped too."""
    result = run("--device", "cpu", "--steps", "6", "--skip", "vllm")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("device cpu")
    assert lines[-1].startswith("total ") and "0 FAIL" in lines[-1]
    status = {
        line[6:49].strip(): (line[:4], line.split(" s  ", 1)[-1])
        for line in lines[1:-1]
        if line[:4] in ("PASS", "FAIL", "SKIP")
    }
    for name in (
        "train_lora LoRA fp32 + grad ckpt",
        "merge_adapter LoRA",
        "eval transformers backend",
        "compare_generations transformers",
        "judge_generations",
    ):
        assert status.get(name, ("missing",))[0] == "PASS", result.stdout
    assert status["merge_adapter LoRA"][1].startswith("float32 export")
    assert "base (unquantized) + lora" in status["compare_generations transformers"][1]
    for name in ("eval vLLM backend", "compare_generations vLLM (full preset)"):
        assert status[name] == ("SKIP", "--skip vllm"), result.stdout
    for name in ("train_lora QLoRA 4-bit NF4", "merge_adapter QLoRA"):
        assert status[name][0] == "SKIP" and "test_train.py" in status[name][1], result.stdout
    assert not any(line.startswith("FAIL") for line in lines), result.stdout


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


def test_cuda_locks_its_gpu_before_anything_touches_cuda(tmp_path: Path) -> None:
    """On a machine with two GPUs (faked: CUDA_VISIBLE_DEVICES=97,98), the script takes a
    GPU's lock and narrows CUDA_VISIBLE_DEVICES to it before its first CUDA probe."""
    code = (
        "import os, runpy, sys\n"
        "import llmlab.runtime as rt\n"
        "seen, real = [], rt.probe_cuda\n"
        "def probe(**kw):\n"
        "    seen.append(os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
        "    return real(**kw)\n"
        "rt.probe_cuda = probe\n"
        f"sys.argv = [{str(SCRIPT)!r}, '--device', 'cuda']\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "finally:\n"
        "    print('PROBED WITH', seen, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "LLMLAB_GPUS_BOUND")}
    env |= {"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "97,98", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PROBED WITH ['97']" in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "gpus: bound to GPU(s) 97 of 97,98", result.stdout
    assert lines[1].startswith("FAIL  device: ") and len(lines) == 2
    assert (tmp_path / f"llmlab-gpus-{os.getuid()}" / "gpu-97.lock").is_file()


def load_script() -> dict[str, Any]:
    return runpy.run_path(str(SCRIPT), run_name="gpu_check")


def test_a_stack_that_cannot_run_the_full_preset_fails_on_cuda_and_skips_on_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()
    gpu_check, stack_error, skip = script["GpuCheck"], script["StackError"], script["Skip"]
    full = load_params(SCRIPT.parents[1] / "params.yaml", preset="full").sft.generation
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    for device, outcome in (("cuda", stack_error), ("cpu", skip)):
        gpu = gpu_check(script["parse_args"](["--device", device]), tmp_path)
        # The full preset's generation settings, the prompts and answer length aside.
        keep = {"prompts", "max_new_tokens"}
        assert gpu.cfg.sft.generation.model_dump(exclude=keep) == full.model_dump(exclude=keep)
        assert gpu.cfg.device == device
        with pytest.raises(outcome, match="vllm is not installed"):
            gpu.eval_vllm()
        with pytest.raises(outcome, match="bitsandbytes is not installed"):
            gpu.train("qlora")
        # --skip vllm is the user's choice: a SKIP on either device.
        gpu = gpu_check(script["parse_args"](["--device", device, "--skip", "vllm"]), tmp_path)
        with pytest.raises(skip, match="--skip vllm"):
            gpu.eval_vllm()
    # A StackError is a FAIL line, without a traceback.
    report = script["Report"](verbose=False)

    def broken() -> str:
        raise stack_error("vllm is not installed; the full preset needs it")

    assert not report.run("eval vLLM backend", broken)
    out, err = capsys.readouterr()
    assert out.startswith("FAIL  eval vLLM backend") and "the full preset needs it" in out
    assert "Traceback" not in err
    assert report.counts == {"PASS": 0, "FAIL": 1, "SKIP": 0}
