"""The configured device: checked at the start of every model stage, never a CPU fallback;
native-bf16 precision; chat template variables pinned in both backends."""

from __future__ import annotations

import datetime as dt
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from llmlab import runtime
from llmlab.config import PlainFormat, PromptTemplate, load_params
from llmlab.runtime import CudaProbe, DeviceError, Gpu, cuda_problem, require_device

ROOT = Path(__file__).resolve().parents[1]
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 << 30)


def probe(**changes) -> CudaProbe:
    good = {
        "torch_version": "2.14.0+cu130",
        "torch_cuda": "13.0",
        "driver_version": "580.65.06",
        "driver_cuda": "13.0",
        "visible_devices": None,
        "gpus": (H100,),
    }
    return CudaProbe(**{**good, **changes})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"torch_cuda": None, "torch_version": "2.13.0+cpu"}, "is a CPU-only build"),
        ({"driver_version": None, "driver_cuda": None, "gpus": ()}, "no NVIDIA driver found"),
        # A CUDA 12 driver (most clusters) under the CUDA 13 torch wheel from PyPI.
        (
            {"driver_version": "550.54.15", "driver_cuda": "12.4", "gpus": ()},
            "driver 550.54.15 supports CUDA up to 12.4, but torch 2.14.0+cu130 is built for "
            "CUDA 13.0; install the CUDA 12 stack",
        ),
        ({"visible_devices": "", "gpus": ()}, "CUDA_VISIBLE_DEVICES='' hides every GPU"),
        ({"visible_devices": "NoDevFiles", "gpus": ()}, "hides every GPU"),
        ({"gpus": (), "error": "CUDA error: no device"}, "torch sees no CUDA device (CUDA error"),
        # A CUDA 12.9 build under a CUDA 12.4 driver: minor-version compatibility holds.
        ({"torch_cuda": "12.9", "driver_cuda": "12.4"}, None),
    ],
)
def test_cuda_problem_names_the_most_specific_cause(changes, expected) -> None:
    problem = cuda_problem(probe(**changes))
    if expected is None:
        assert problem is None
    else:
        assert expected in problem


def test_cuda_device_without_gpu_fails_in_one_line_naming_what_was_looked_for() -> None:
    if cuda_problem(runtime.probe_cuda()) is None:
        pytest.skip("this machine has a usable CUDA GPU")
    with pytest.raises(DeviceError) as err:
        require_device("cuda")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("device: cuda, but no CUDA GPU is usable: ")
    for looked_for in ("torch ", "CUDA build", "NVIDIA driver", "CUDA_VISIBLE_DEVICES"):
        assert looked_for in message
    assert "set `device: cpu`" in message


def test_cpu_device_needs_nothing() -> None:
    require_device("cpu")
    require_device("cpu", gpus=4, where="x")  # data-parallel ranks on a CPU need no GPU


def test_too_few_gpus_for_the_processes_fail_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two = (H100, Gpu(1, H100.name, H100.capability, H100.total_bytes))
    monkeypatch.setattr(runtime, "probe_cuda", lambda **_: probe(gpus=two, visible_devices="0,1"))
    require_device("cuda", gpus=2, where="sft.variants.a.distributed.num_processes")
    with pytest.raises(DeviceError) as err:
        require_device("cuda", gpus=4, where="sft.variants.a.distributed.num_processes")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "sft.variants.a.distributed.num_processes: 4 needs 4 GPUs, but torch sees only 2"
    )
    assert "CUDA_VISIBLE_DEVICES: '0,1'" in message and "SLURM --gpus" in message
    # Without a usable GPU at all, the cause comes first, as for one process.
    monkeypatch.setattr(runtime, "probe_cuda", lambda **_: probe(gpus=(), visible_devices=""))
    with pytest.raises(DeviceError, match="^device: cuda, but no CUDA GPU is usable: "):
        require_device("cuda", gpus=4, where="sft.variants.a.distributed.num_processes")


def test_presets_set_the_device_in_config_not_by_detection() -> None:
    assert load_params(ROOT / "params.yaml", "full").device == "cuda"
    assert load_params(ROOT / "params.yaml", "demo").device == "cpu"


# --------------------------------------------------------------------------- precision


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):
    """Pretend one GPU of a given compute capability is there; bf16 tensors 'work' on it."""
    import torch

    def install(major: int) -> None:
        class Props:
            def __init__(self) -> None:
                self.major, self.minor = major, 5 if major == 7 else 0

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _device: Props())
        # What makes torch's default (including_emulation=True) say yes on a T4/V100.
        monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda _device: True)

    return install


def test_auto_precision_is_fp16_on_a_gpu_that_only_emulates_bf16(fake_gpu) -> None:
    import torch

    fake_gpu(7)  # T4 (sm75) / V100 (sm70)
    assert torch.cuda.is_bf16_supported()  # torch's default counts emulation
    assert runtime.resolve_precision("auto", "cuda", "x") == "fp16"


def test_auto_precision_is_bf16_on_ampere_and_newer(fake_gpu) -> None:
    fake_gpu(8)
    assert runtime.resolve_precision("auto", "cuda", "x") == "bf16"
    assert runtime.resolve_precision("auto", "cpu", "x") == "fp32"


# --------------------------------------------------------------------------- stages fail fast


def test_model_stages_fail_at_start_on_a_cuda_config_without_gpu(tmp_path: Path) -> None:
    """Every model stage checks the device before reading its inputs (none exist here)."""
    if cuda_problem(runtime.probe_cuda()) is None:
        pytest.skip("this machine has a usable CUDA GPU")
    from llmlab.eval.run import run_eval_llm
    from llmlab.generate import run_compare_generations
    from llmlab.train import run_train_lora

    cfg = load_params(ROOT / "params.yaml", "demo").model_copy(update={"device": "cuda"})
    missing = tmp_path / "missing"
    calls = {
        "eval_llm": lambda: run_eval_llm(
            cfg,
            model="instruct_lm",
            shots=0,
            shard=0,
            model_dir=missing,
            train=missing,
            val=missing,
            predictions=tmp_path / "p.parquet",
            info=tmp_path / "m.json",
        ),
        "train_lora": lambda: run_train_lora(
            cfg, "a", missing, missing, missing, *(tmp_path / n for n in "abcde")
        ),
        "compare_generations": lambda: run_compare_generations(
            cfg, missing, [missing], tmp_path / "g.parquet"
        ),
    }
    for stage, call in calls.items():
        with pytest.raises(DeviceError, match="^device: cuda, but no CUDA GPU is usable"):
            call()
        assert list(tmp_path.iterdir()) == [], stage


def test_cli_train_lora_on_full_preset_exits_2_with_one_line(tmp_path: Path) -> None:
    if cuda_problem(runtime.probe_cuda()) is None:
        pytest.skip("this machine has a usable CUDA GPU")
    args = ["--variant", "a", "--model-dir", "m", "--train", "t", "--eval", "e"]
    outs = ["--checkpoints", "c", "--adapter", "a", "--train-log", "l", "--metrics", "x"]
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "train-lora", "--params", str(ROOT / "params.yaml")]
        + ["--preset", "full", *args, *outs, "--curve", "p.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "device: cuda, but no CUDA GPU is usable" in errors[0]
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- chat template date

# The date logic of Llama 3.x chat templates, verbatim in spirit: today's date unless given.
DATED_TEMPLATE = (
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    '{%- set date_string = strftime_now("%d %b %Y") %}{%- else %}'
    '{%- set date_string = "26 Jul 2024" %}{%- endif %}{%- endif %}'
    "<|system|>Today Date: {{ date_string }}\n"
    "{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{%- endif %}"
)


def render_on(day: dt.datetime, tokenizer, kwargs, monkeypatch: pytest.MonkeyPatch) -> str:
    from transformers.utils import chat_template_utils

    from llmlab.eval.prompts import build_prompt, render_text

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return day

    monkeypatch.setattr(chat_template_utils, "datetime", Clock)
    prompt = build_prompt(
        PromptTemplate(user="{review}"), "Great.", ["a", "b"], [], "chat", PlainFormat(), kwargs
    )
    return render_text(prompt, tokenizer)


def test_pinned_date_string_renders_the_same_text_on_two_days(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = DATED_TEMPLATE
    days = [dt.datetime(2026, 12, 1), dt.datetime(2027, 3, 14)]
    unpinned = [render_on(day, tokenizer, None, monkeypatch) for day in days]
    assert unpinned[0] != unpinned[1]  # the calendar leaks into the prompt without a pin
    kwargs = load_params(ROOT / "params.yaml", "full").models["instruct_lm"].chat_template_kwargs
    assert kwargs == {"date_string": "26 Jul 2024"}
    pinned = [render_on(day, tokenizer, kwargs, monkeypatch) for day in days]
    assert pinned[0] == pinned[1] and "Today Date: 26 Jul 2024" in pinned[0]


def test_vllm_backend_passes_the_same_template_variables_to_llm_chat() -> None:
    from llmlab.eval.backends import VllmBackend
    from llmlab.eval.prompts import build_prompt

    class RecordingLLM:
        def chat(self, messages, params, **kwargs):
            self.kwargs = kwargs
            return []

    backend = object.__new__(VllmBackend)  # no engine: only the call is checked
    backend.llm = RecordingLLM()
    kwargs = {"date_string": "26 Jul 2024"}
    prompts = [
        build_prompt(PromptTemplate(user="{review}"), r, ["a"], [], "chat", PlainFormat(), kwargs)
        for r in ("x", "y")
    ]
    backend._run(prompts, params=None)
    assert backend.llm.kwargs["chat_template_kwargs"] == kwargs
    vllm = pytest.importorskip("vllm")
    assert "chat_template_kwargs" in inspect.signature(vllm.LLM.chat).parameters
