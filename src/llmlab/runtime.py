"""How the model stages run Hugging Face models: the configured device, checked before any
work, precision, the 4-bit quantization config, and the checked loading of a prepared model.

`device` in params.yaml (`cuda` in the full preset, `cpu` in the demo) is the device of every
stage that runs a model (eval_llm, train_lora, compare_generations). Nothing falls back: a
run configured for CUDA that cannot use a GPU stops at start with one line naming what was
looked for (torch's CUDA build, the NVIDIA driver, the visible devices). A quiet CPU fallback
would run an 8B QLoRA on a compute node's CPU for days until the wall-time kill.

Used by train_lora, compare_generations and eval_llm. torch, transformers and bitsandbytes are
imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmlab.errors import UserError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

Device = Literal["cuda", "cpu"]
Precision = Literal["bf16", "fp16", "fp32"]

# Values of CUDA_VISIBLE_DEVICES that hide every GPU (SLURM sets NoDevFiles without a GPU gres).
_HIDDEN = {"", "-1", "none", "nodevfiles", "void"}
_DRIVER_FILE = Path("/proc/driver/nvidia/version")


class DeviceError(UserError):
    """The configured device cannot be used on this machine."""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]  # compute capability (major, minor), e.g. (9, 0) for an H100
    total_bytes: int
    free_bytes: int | None = None  # None unless asked for (it creates a CUDA context)


@dataclass(frozen=True)
class CudaProbe:
    """What this process can see of CUDA: the facts a device check or `doctor` reports."""

    torch_version: str
    torch_cuda: str | None  # CUDA version torch was built for; None: a CPU-only build
    driver_version: str | None  # NVIDIA kernel driver, e.g. "550.54.15"; None: none found
    driver_cuda: str | None  # newest CUDA the driver supports (cuDriverGetVersion), e.g. "12.4"
    visible_devices: str | None  # CUDA_VISIBLE_DEVICES as set; None: unset
    gpus: tuple[Gpu, ...] = ()
    error: str | None = None  # what torch said when CUDA would not initialise

    def describe(self) -> str:
        """One line: what was looked for and what was found."""
        visible = "unset" if self.visible_devices is None else repr(self.visible_devices)
        return (
            f"torch {self.torch_version} (CUDA build: {self.torch_cuda or 'none'}), "
            f"NVIDIA driver: {self.driver_version or 'none'}"
            f"{f' (CUDA {self.driver_cuda})' if self.driver_cuda else ''}, "
            f"CUDA_VISIBLE_DEVICES: {visible}, GPUs visible to torch: {len(self.gpus)}"
        )


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _driver_version() -> str | None:
    try:
        text = _DRIVER_FILE.read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def _driver_cuda() -> str | None:
    """The newest CUDA version the installed driver supports, from libcuda itself."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def probe_cuda(*, memory: bool = False) -> CudaProbe:
    """Look at torch's build, the driver, CUDA_VISIBLE_DEVICES and the GPUs torch can use.

    `memory=True` also reads each GPU's free memory (it initialises a CUDA context per GPU).
    """
    import torch

    gpus: list[Gpu] = []
    error = None
    if torch.version.cuda is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            available = torch.cuda.is_available()
        if not available:
            error = " ".join(str(caught[-1].message).split()) if caught else None
        else:
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                free = torch.cuda.mem_get_info(i)[0] if memory else None
                gpus.append(
                    Gpu(i, props.name, (props.major, props.minor), props.total_memory, free)
                )
    return CudaProbe(
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        driver_version=_driver_version(),
        driver_cuda=_driver_cuda(),
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        gpus=tuple(gpus),
        error=error,
    )


def cuda_problem(probe: CudaProbe) -> str | None:
    """Why CUDA cannot be used, most specific cause first; None when a GPU is usable."""
    if probe.torch_cuda is None:
        return (
            f"torch {probe.torch_version} is a CPU-only build (torch.version.cuda is None); "
            "install a GPU stack (README: Running the real experiment)"
        )
    if probe.driver_version is None and probe.driver_cuda is None:
        return "no NVIDIA driver found (no /proc/driver/nvidia/version, libcuda.so.1 not loadable)"
    if probe.driver_cuda and _major(probe.driver_cuda) < _major(probe.torch_cuda):
        return (
            f"the NVIDIA driver {probe.driver_version or ''} supports CUDA up to "
            f"{probe.driver_cuda}, but torch {probe.torch_version} is built for CUDA "
            f"{probe.torch_cuda}; install the CUDA {_major(probe.driver_cuda)} stack "
            "(README: Running the real experiment) or a newer driver"
        )
    visible = probe.visible_devices
    if visible is not None and visible.strip().lower() in _HIDDEN:
        return (
            f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU (a batch job without a GPU "
            "request, e.g. SLURM without --gpus/--gres?)"
        )
    if not probe.gpus:
        return "torch sees no CUDA device" + (f" ({probe.error})" if probe.error else "")
    return None


def require_device(device: Device, gpus: int = 1, where: str | None = None) -> None:
    """Raise DeviceError (one line) unless `device` can run here; `cpu` always can.

    `gpus`: how many GPUs a CUDA run needs (one per data-parallel process); `where` is the key
    path that asked for them (for the message).
    """
    if device == "cpu":
        return
    probe = probe_cuda()
    problem = cuda_problem(probe)
    if problem:
        raise DeviceError(
            f"device: cuda, but no CUDA GPU is usable: {problem}. Looked for: "
            f"{probe.describe()}. Run on a GPU node, or set `device: cpu` in params.yaml "
            "(the demo preset does)"
        )
    if len(probe.gpus) < gpus:
        raise DeviceError(
            f"{where or 'device'}: {gpus} needs {gpus} GPUs, but torch sees only "
            f"{len(probe.gpus)} ({probe.describe()}). Request {gpus} GPUs for the job "
            "(SLURM --gpus), or lower the number of processes"
        )


# --------------------------------------------------------------------------- precision


def native_bf16() -> bool:
    """True when the current GPU computes bf16 natively (compute capability >= 8.0).

    `torch.cuda.is_bf16_supported()` defaults to `including_emulation=True`, which is True
    on a T4 or V100 too, where bf16 is emulated and several times slower than fp16.
    """
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(requested: str, device: Device, where: str) -> Precision:
    """The precision a run uses: `auto` is bf16 on a GPU with native bf16, else fp16; fp32 on a
    CPU (bf16 matmuls are slower than fp32 on the CPUs we measured). fp16 needs a GPU."""
    if requested == "auto":
        if device == "cuda":
            return "bf16" if native_bf16() else "fp16"
        return "fp32"
    if requested == "fp16" and device != "cuda":
        raise UserError(
            f"{where}: fp16 mixed precision needs a CUDA GPU (this run is on {device}); "
            "use auto, bf16 or fp32"
        )
    return requested  # type: ignore[return-value]


def torch_dtype(precision: Precision) -> torch.dtype:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


# --------------------------------------------------------------------------- model folders


def check_prepared_model(model_dir: Path) -> None:
    """Raise UserError naming `model_dir` unless it is a model folder (it has config.json).

    The check of every stage that reads a folder written by prepare_model (eval_llm, train_lora,
    compare_generations); prepare_model checked the folder whole before publishing it
    (config, weights, tokenizer: `llmlab.models.check_hf_folder`).
    """
    if not (model_dir / "config.json").is_file():
        raise UserError(
            f"{model_dir}: not a model folder (no config.json; run prepare_model first)"
        )


# --------------------------------------------------------------------------- model loading


@dataclass(frozen=True)
class Runtime:
    """Device-dependent choices of one run, resolved from the config and the device."""

    device: Device
    precision: Precision
    optim: str
    quantize: bool

    @property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.precision)


def check_quantization_available(device: str, where: str) -> None:
    """Raise UserError (naming `where`) unless bitsandbytes 4-bit can run on `device`."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(
            f"{where}: true needs bitsandbytes, which is not installed "
            "(pip install bitsandbytes, or the gpu/cpu extra); or set it to false"
        )
    import bitsandbytes

    supported = getattr(bitsandbytes, "supported_torch_devices", set())
    if device not in supported:
        raise UserError(
            f"{where}: true, but bitsandbytes {bitsandbytes.__version__} has no 4-bit backend "
            f"for device {device!r} (it supports {', '.join(sorted(supported)) or 'none'}); "
            "set it to false to train LoRA on the full-precision model"
        )


def quantization_config(runtime: Runtime) -> Any:
    """The QLoRA 4-bit config: NF4, double quantisation, compute in the run's precision."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=runtime.dtype,
    )


def keep_4bit_layout_trainable(model: PreTrainedModel) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel.

    bitsandbytes on a CPU with AVX512-BF16 repacks a 4-bit weight into an inference-only
    layout the first time it runs without grad in eval mode (any evaluation); later training
    steps then get wrong LoRA gradients (no gradient flows back through the repacked layers).
    Keeping the trainable layout makes evaluation during 4-bit training safe
    (tests/test_train.py checks the gradients). No effect on GPUs (the repacking is CPU-only).
    Returns the number of layers set.
    """
    if importlib.util.find_spec("bitsandbytes") is None:
        return 0
    import bitsandbytes as bnb

    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def free_memory() -> None:
    """Return the memory of the models just dropped (`del`) before the next one loads (on a
    GPU, before vLLM measures what is free)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_base_model(model_dir: Path, runtime: Runtime, gpu: int | None = None) -> PreTrainedModel:
    """Load the causal LM of `model_dir` 4-bit (if `runtime.quantize`) or in the run's dtype.

    On CUDA the whole model goes on GPU `gpu` (a data-parallel rank's local rank), by default
    the current device.
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": runtime.dtype}
    if runtime.quantize:
        kwargs["quantization_config"] = quantization_config(runtime)
    if runtime.device == "cuda":
        import torch

        # A quantized model cannot be moved after loading: place it on this process's GPU.
        kwargs["device_map"] = {"": torch.cuda.current_device() if gpu is None else gpu}
    try:
        return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError) as err:
        raise UserError(
            f"{model_dir}: cannot load the model ({' '.join(str(err).split())})"
        ) from None
