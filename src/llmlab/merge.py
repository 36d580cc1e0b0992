"""merge_adapter: one variant's LoRA adapter merged into its base model, exported as a plain
Hugging Face folder (config, safetensors, tokenizer, chat template) that transformers and vLLM
load without peft, and checked against the base with the adapter attached.

Which base weights (`sft.merge.base`):
- `trained` (default): the weights the adapter was trained with. For a QLoRA variant
  (`quantize: true`) that is the 4-bit NF4 base, dequantized to the export dtype
  (transformers' `dequantize()`, the path it documents for merging QLoRA adapters): the
  export then computes what train_lora trained and compare_generations ran, and the check's
  reference is that very model, the 4-bit base with the adapter attached. peft's own merge
  into a 4-bit layer (`tuners/lora/bnb.py`, `Linear4bit.merge`) is not used: it dequantizes,
  adds the delta and quantizes again, which gives a 4-bit model back.
- `original`: the model folder's own weights, unquantized: the adapter on the base before its
  quantization. For a QLoRA variant this is a different model from the one trained, by the
  base's quantization error; on the demo model that error dwarfs the adapter (merge.json's
  `quantization`: top-1 agreement 0.70 between the 4-bit and the bf16/fp32 base with the
  same adapter, max |logit diff| 18, against an adapter effect of 1.4).
For a LoRA variant (`quantize: false`) both are the model folder's weights.

Steps, each failing before anything is published:
1. The adapter is checked against the base before any weight is loaded: plain LoRA on linear
   layers, trained on this base folder (`base_model_name_or_path`), and every lora_A/lora_B
   shape against the base's layers (the base instantiated on the meta device).
2. The reference: the base (4-bit for `trained` QLoRA) in the export dtype with the adapter
   attached, unmerged, scores the first `check_dialogues` held-out dialogues (eval.parquet,
   rendered with the adapter's chat template, cut to `check_tokens` tokens). With the
   adapter disabled the base's logits give the adapter's effect, the scale to read the merge
   error against.
3. The merge, layer by layer with peft's `LoraLayer.merge` (W += scaling * B @ A in float32,
   rounded once to the export dtype; not `safe_merge`, which rounds the delta first), each
   layer checked against W + delta recomputed from the adapter file: within one unit in the
   last place of the export dtype, finite. `delta_rounding_error` says how much of the delta
   the rounding loses: nothing in float32, a visible part in bfloat16 (8 significant bits; a
   trained delta is often below the spacing of the weights it is added to).
4. `save_pretrained` with the adapter folder's tokenizer and chat template (what the adapter
   was trained with) into a temporary folder; every saved tensor must equal the merged
   model's (bitwise; a tied weight is saved once).
5. Logit check: the folder loaded back with plain transformers scores the same tokens.
   float32: max |logit diff| <= FP32_MAX_LOGIT_DIFF. bfloat16/float16 round every activation
   to 8/11 bits, and two equally correct computations (merged or not) differ by about as much
   as a small adapter moves the logits, so a bound on the max difference would either fail
   correct merges or pass wrong ones: the gate there is the top-1 agreement
   (>= HALF_MIN_TOP1_AGREEMENT), which catches a broken export; step 3 catches a wrong merge.
6. For a QLoRA variant, informational: the other base (full-precision for `trained`, 4-bit
   for `original`) with the adapter, against the reference (`quantization`).
7. Only then is the folder renamed into place; merge.json follows.

Measured on the demo model (SmolLM2-135M, 30 layers, a random rank-16 adapter on all seven
projections moving the adapted weights by 0.46%; tests/test_merge.py) on a 2-core AMD EPYC:
- float32, either base: max |logit diff| 1.0e-4, rms 1.2e-5 (logits up to 43; the adapter
  moves them by up to 1.0-1.4), every merged weight bitwise W + delta;
- bfloat16 (on that CPU): max 1.2-1.3, rms 0.16-0.19 against an adapter effect of rms 0.21,
  top-1 agreement 0.98-0.99; merged weights within 0.5 ulp, and a third of the delta lost to
  the rounding (`delta_rounding_error` 0.34);
- the 4-bit against the full-precision base, both with the adapter: max 18, rms 2.1, top-1
  agreement 0.70-0.72 (a 135M model quantizes badly; an 8B one far less).

torch, transformers, peft and safetensors are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmlab.config import Config, check_key
from llmlab.errors import UserError
from llmlab.gpus import bind_gpus
from llmlab.io import atomic_dir, read_json, read_parquet, write_json
from llmlab.runtime import (
    Device,
    Precision,
    Runtime,
    check_prepared_model,
    check_quantization_available,
    free_memory,
    keep_4bit_layout_trainable,
    load_base_model,
    require_device,
    resolve_precision,
    torch_dtype,
)
from llmlab.schemas import MESSAGES_SCHEMA

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DTYPE_NAMES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# The checks' tolerances (module docstring).
FP32_MAX_LOGIT_DIFF = 1e-3
HALF_MIN_TOP1_AGREEMENT = 0.9
MAX_WEIGHT_ERROR_ULP = 1.0  # one rounding is <= 0.5; the rest is slack for the recompute
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
DEQUANTIZED = "4-bit NF4, dequantized"
FULL_PRECISION = "full precision"


class MergeCheckError(UserError):
    """The merged model failed a check: nothing was written."""


# --------------------------------------------------------------------------- settings


def export_precision(requested: str, device: Device) -> Precision:
    """The export dtype as a runtime precision: `auto` as `resolve_precision`; float16 needs
    a GPU (as everywhere in the project)."""
    if requested == "auto":
        return resolve_precision("auto", device, "sft.merge.dtype")
    if requested == "float16" and device != "cuda":
        raise UserError(
            f"sft.merge.dtype: float16 needs a CUDA GPU (this run is on {device}); "
            "use auto, bfloat16 or float32"
        )
    return {v: k for k, v in DTYPE_NAMES.items()}[requested]  # type: ignore[return-value]


# --------------------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class LoraTarget:
    """One adapted linear layer: its name in the base model and its LoRA tensors' keys."""

    module: str  # e.g. model.layers.0.self_attn.q_proj
    a_key: str
    b_key: str
    rank: int
    in_features: int
    out_features: int

    @property
    def weight(self) -> str:
        return f"{self.module}.weight"


def _same_base(recorded: str | None, model_dir: Path) -> bool:
    if not recorded or recorded == str(model_dir):
        return True
    path = Path(recorded)
    return path.exists() and path.resolve() == model_dir.resolve()


def read_adapter(adapter: Path, model_dir: Path) -> tuple[dict[str, Any], list[LoraTarget]]:
    """The adapter's config and its LoRA targets; UserError unless it is a plain LoRA
    adapter (linear layers, no DoRA, no extra trained modules) trained on `model_dir`."""
    from safetensors import safe_open

    if not (adapter / ADAPTER_CONFIG).is_file() or not (adapter / ADAPTER_WEIGHTS).is_file():
        raise UserError(
            f"{adapter}: not a LoRA adapter folder (needs {ADAPTER_CONFIG} and "
            f"{ADAPTER_WEIGHTS}; run train_lora first)"
        )
    config = read_json(adapter / ADAPTER_CONFIG)
    if config.get("peft_type") != "LORA":
        raise UserError(f"{adapter}: a {config.get('peft_type')} adapter, not LoRA")
    unsupported = [k for k in ("use_dora", "lora_bias", "modules_to_save") if config.get(k)]
    if unsupported:
        raise UserError(
            f"{adapter}: {', '.join(unsupported)} set in {ADAPTER_CONFIG}: only plain LoRA "
            "adapters (what train_lora trains) can be merged and checked"
        )
    recorded = config.get("base_model_name_or_path")
    if not _same_base(recorded, model_dir):
        raise UserError(
            f"{adapter}: trained on the base model {recorded!r}, not {str(model_dir)!r}; "
            "merge it into the base it was trained on (if that folder holds the same model, "
            f"set base_model_name_or_path in {ADAPTER_CONFIG})"
        )
    with safe_open(adapter / ADAPTER_WEIGHTS, "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    targets = []
    for key in sorted(shapes):
        if key.endswith(".lora_B.weight"):
            continue
        if not key.endswith(".lora_A.weight"):
            raise UserError(
                f"{adapter}: {ADAPTER_WEIGHTS} holds {key}, not a LoRA A/B weight of a linear "
                "layer: only plain LoRA adapters can be merged and checked"
            )
        b_key = key.removesuffix(".lora_A.weight") + ".lora_B.weight"
        if b_key not in shapes:
            raise UserError(f"{adapter}: {ADAPTER_WEIGHTS} has {key} but no {b_key}")
        (rank, in_features), (out_features, rank_b) = shapes[key], shapes[b_key]
        if rank != rank_b:
            raise UserError(f"{adapter}: {key} has rank {rank}, {b_key} rank {rank_b}")
        module = key.removeprefix(PEFT_PREFIX).removesuffix(".lora_A.weight")
        targets.append(LoraTarget(module, key, b_key, rank, in_features, out_features))
    if not targets:
        raise UserError(f"{adapter}: {ADAPTER_WEIGHTS} holds no LoRA weights")
    return config, targets


def check_targets(targets: Sequence[LoraTarget], model_dir: Path, adapter: Path) -> None:
    """UserError unless every target is a linear layer of the base model with the adapter's
    shapes (the model is built on the meta device: no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as err:
        raise UserError(f"{model_dir}: cannot read the model config ({err})") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    for t in targets:
        try:
            layer = model.get_submodule(t.module)
        except AttributeError:
            raise UserError(
                f"{adapter}: adapts {t.module}, which the base model {model_dir} does not "
                "have: the adapter was trained on another model"
            ) from None
        if not isinstance(layer, torch.nn.Linear):
            raise UserError(f"{adapter}: adapts {t.module}, not a linear layer of {model_dir}")
        if (layer.in_features, layer.out_features) != (t.in_features, t.out_features):
            raise UserError(
                f"{adapter}: {t.module} is {t.in_features} -> {t.out_features} in the adapter "
                f"but {layer.in_features} -> {layer.out_features} in {model_dir}: the adapter "
                "was trained on another model"
            )


def load_adapter_tokenizer(adapter: Path) -> PreTrainedTokenizerBase:
    """The tokenizer train_lora saved with the adapter, chat template included, as saved."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter)
    except (OSError, ValueError) as err:
        raise UserError(
            f"{adapter}: cannot load its tokenizer ({' '.join(str(err).split())})"
        ) from None
    if not tokenizer.chat_template:
        raise UserError(f"{adapter}: no chat template (chat_template.jinja) beside the adapter")
    return tokenizer


# --------------------------------------------------------------------------- check inputs


def check_sequences(
    eval: Path, tokenizer: PreTrainedTokenizerBase, count: int, max_tokens: int
) -> list[list[int]]:
    """Token ids of the first `count` held-out dialogues, rendered with the chat template,
    each cut to `max_tokens`."""
    df = read_parquet(eval, MESSAGES_SCHEMA)
    if df.height == 0:
        raise UserError(f"{eval}: no dialogues")
    out = []
    for messages in df["messages"].head(count).to_list():
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens])
    return out


# --------------------------------------------------------------------------- logit comparisons


@dataclass
class LogitDiff:
    """Differences of one system's logits from the reference, over every position."""

    max_abs: float = 0.0
    squares: float = 0.0
    values: int = 0
    same_top1: int = 0
    positions: int = 0

    def add(self, got: torch.Tensor, ref: torch.Tensor) -> None:
        diff = got - ref
        self.max_abs = max(self.max_abs, diff.abs().max().item())
        self.squares += diff.double().pow(2).sum().item()
        self.values += diff.numel()
        self.same_top1 += int((got.argmax(-1) == ref.argmax(-1)).sum().item())
        self.positions += got.shape[0]

    def summary(self) -> dict[str, float]:
        return {
            "max_abs_diff": self.max_abs,
            "rms_diff": math.sqrt(self.squares / max(self.values, 1)),
            "top1_agreement": self.same_top1 / max(self.positions, 1),
        }


@dataclass
class Nll:
    """Mean next-token negative log-likelihood over the check tokens (nats per token)."""

    total: float = 0.0
    tokens: int = 0

    def add(self, logits: torch.Tensor, ids: Sequence[int]) -> None:
        import torch

        target = torch.tensor(ids[1:])
        self.total += torch.nn.functional.cross_entropy(logits[:-1], target, reduction="sum").item()
        self.tokens += len(ids) - 1

    @property
    def mean(self) -> float:
        return self.total / max(self.tokens, 1)


def logits_of(model: Any, sequences: Sequence[Sequence[int]]) -> Iterator[torch.Tensor]:
    """Each sequence's logits (positions x vocabulary), float32 on the CPU."""
    import torch

    with torch.no_grad():
        for ids in sequences:
            x = torch.tensor([list(ids)], device=model.device)
            yield model(input_ids=x).logits[0].float().cpu()


def compare(
    model: Any, sequences: Sequence[Sequence[int]], reference: Sequence[torch.Tensor], nll: Nll
) -> LogitDiff:
    """`model`'s logits against the reference's, position by position; its NLL into `nll`."""
    diff = LogitDiff()
    for ids, ref, logits in zip(sequences, reference, logits_of(model, sequences), strict=True):
        diff.add(logits, ref)
        nll.add(logits, ids)
    return diff


# --------------------------------------------------------------------------- merge and checks


def load_base(model_dir: Path, runtime: Runtime) -> PreTrainedModel:
    """`load_base_model`; a 4-bit model keeps the layout train_lora computes with (on a CPU
    with AVX512-BF16, bitsandbytes' inference layout computes in bf16: 5e-3 off on the tiny
    test model, where the trainable layout is exactly the dequantized weights' matmul)."""
    model = load_base_model(model_dir, runtime)
    if runtime.quantize:
        keep_4bit_layout_trainable(model)
    return model


@dataclass
class WeightCheck:
    """Each merged weight against W + delta (float32), in units in the last place."""

    dtype: Any  # torch.dtype of the export
    worst: float = 0.0
    worst_name: str = ""
    lost: float = 0.0  # squared norm of (merged - W - delta)
    delta: float = 0.0  # squared norm of delta
    weight: float = 0.0  # squared norm of W
    layers: int = 0

    def add(self, name: str, got: torch.Tensor, weight: torch.Tensor, delta: torch.Tensor) -> None:
        import torch

        if not torch.isfinite(got).all():
            raise MergeCheckError(f"{name}: not finite after the merge (a broken adapter?)")
        expected = weight + delta
        # The unit: the spacing of the export dtype at the largest magnitude involved (where
        # W and delta cancel, the result's own spacing is no bound on one rounding).
        scale = torch.maximum(torch.maximum(expected.abs(), weight.abs()), delta.abs())
        finfo = torch.finfo(self.dtype)
        _, exponent = torch.frexp(scale)
        spacing = torch.ldexp(torch.full_like(scale, finfo.eps / 2), exponent)
        ulps = ((got - expected).abs() / spacing.clamp_min(finfo.smallest_normal)).max().item()
        if ulps > self.worst:
            self.worst, self.worst_name = ulps, name
        for attr, tensor in (("lost", got - expected), ("delta", delta), ("weight", weight)):
            norm = torch.linalg.vector_norm(tensor, dtype=torch.float64).item()
            setattr(self, attr, getattr(self, attr) + norm**2)
        self.layers += 1

    def summary(self) -> dict[str, Any]:
        if self.worst > MAX_WEIGHT_ERROR_ULP:
            raise MergeCheckError(
                f"{self.worst_name}: merged weight differs from W + LoRA delta by "
                f"{self.worst:.3g} units in the last place of {self.dtype} (at most "
                f"{MAX_WEIGHT_ERROR_ULP})"
            )
        return {
            "lora_layers": self.layers,
            "max_error_ulp": self.worst,
            "max_error_ulp_tolerance": MAX_WEIGHT_ERROR_ULP,
            # |delta| / |W| over the adapted weights (Frobenius): how far the adapter moves them.
            "relative_delta": math.sqrt(self.delta / self.weight) if self.weight else 0.0,
            # |merged - W - delta| / |delta|: the share of the delta lost to the export dtype.
            "delta_rounding_error": math.sqrt(self.lost / self.delta) if self.delta else 0.0,
        }


def merge_checked(
    model: Any, adapter: Path, targets: Sequence[LoraTarget], dtype: Any
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Merge every LoRA layer of the PeftModel `model` into its base layer, one at a time,
    each checked against W + scaling * B @ A from the adapter file; the plain model back."""
    import torch
    from peft.tuners.lora import LoraLayer
    from safetensors import safe_open

    by_module = {t.module: t for t in targets}
    layers = {
        name.removeprefix(PEFT_PREFIX): module
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }
    if set(layers) != set(by_module):
        raise MergeCheckError(f"peft attached other layers than {adapter} holds")
    check = WeightCheck(dtype)
    with safe_open(adapter / ADAPTER_WEIGHTS, "pt", device="cpu") as f, torch.no_grad():
        for name, layer in layers.items():
            target, base = by_module[name], layer.get_base_layer()
            a = f.get_tensor(target.a_key).to(base.weight.device, torch.float32)
            b = f.get_tensor(target.b_key).to(base.weight.device, torch.float32)
            delta = (b @ a) * float(layer.scaling["default"])
            # A copy (`.float()` of a float32 tensor is the tensor): the merge adds in place.
            weight = base.weight.detach().to(torch.float32, copy=True)
            layer.merge()
            check.add(f"{name}.weight", base.weight.detach().float(), weight, delta)
    return model.unload(), check.summary()


def check_saved(model: PreTrainedModel, folder: Path) -> int:
    """Every tensor saved in `folder` equals `model`'s, and every tensor of `model` is saved
    (a tied weight once); returns the number of saved tensors."""
    import torch
    from safetensors import safe_open

    state = model.state_dict()
    files = tensor_files(folder)
    extra = sorted(set(files) - set(state))
    if extra:
        raise MergeCheckError(f"saved tensors the model does not have: {extra[:5]}")
    saved_storage = set()
    with contextlib.ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for name, path in sorted(files.items()):
            if path not in handles:
                handles[path] = stack.enter_context(safe_open(path, "pt", device="cpu"))
            if not torch.equal(handles[path].get_tensor(name), state[name].detach().cpu()):
                raise MergeCheckError(f"{name}: the saved tensor differs from the merged model's")
            saved_storage.add(state[name].data_ptr())
    unsaved = [n for n in state if n not in files and state[n].data_ptr() not in saved_storage]
    if unsaved:
        raise MergeCheckError(f"tensors of the merged model not saved: {unsaved[:5]}")
    return len(files)


def tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file of `folder` holding it."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return {k: folder / v for k, v in read_json(index)["weight_map"].items()}
    out: dict[str, Path] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            out.update(dict.fromkeys(f.keys(), path))
    return out


def logit_gate(precision: Precision) -> dict[str, float | None]:
    """The logit check's tolerance for an export dtype (module docstring)."""
    if precision == "fp32":
        return {"max_abs_diff": FP32_MAX_LOGIT_DIFF, "min_top1_agreement": None}
    return {"max_abs_diff": None, "min_top1_agreement": HALF_MIN_TOP1_AGREEMENT}


def check_logits(summary: dict[str, float], gate: dict[str, float | None], dtype: str) -> None:
    limit, top1 = gate["max_abs_diff"], gate["min_top1_agreement"]
    if limit is not None and summary["max_abs_diff"] > limit:
        raise MergeCheckError(
            f"merged {dtype} logits differ from base + adapter by up to "
            f"{summary['max_abs_diff']:.3g} (tolerance {limit:g})"
        )
    if top1 is not None and summary["top1_agreement"] < top1:
        raise MergeCheckError(
            f"the merged {dtype} model agrees with base + adapter on the top token at only "
            f"{summary['top1_agreement']:.1%} of the positions (at least {top1:.0%})"
        )


# --------------------------------------------------------------------------- stage


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_merge_adapter(
    cfg: Config,
    variant: str,
    model_dir: Path,
    adapter: Path,
    eval: Path,
    merged: Path,
    metrics: Path,
) -> None:
    """merge_adapter: merge one variant's adapter into its base; check and write the export."""
    bind_gpus(cfg.device, 1)
    require_device(cfg.device)
    check_key(variant, cfg.sft.variants, flag="--variant", where="sft.variants")
    spec, settings = cfg.sft.variants[variant], cfg.sft.merge
    device = cfg.device
    precision = export_precision(settings.dtype, device)
    dtype_name = DTYPE_NAMES[precision]
    dequantize = spec.quantize and settings.base == "trained"
    # The other base, for a QLoRA variant: compared for information only.
    compare_other = spec.quantize
    if dequantize:
        check_quantization_available(device, f"sft.variants.{variant}.quantize")
    elif compare_other and importlib.util.find_spec("bitsandbytes") is None:
        log.warning("bitsandbytes is not installed: no comparison with the 4-bit base")
        compare_other = False
    check_prepared_model(model_dir)
    _, targets = read_adapter(adapter, model_dir)
    check_targets(targets, model_dir, adapter)
    tokenizer = load_adapter_tokenizer(adapter)
    sequences = check_sequences(eval, tokenizer, settings.check_dialogues, settings.check_tokens)

    from peft import PeftModel

    start = time.perf_counter()
    base_kind = DEQUANTIZED if dequantize else FULL_PRECISION
    log.info(
        "variant %s: merging %d LoRA layers into %s (%s) in %s on %s; checking on %d "
        "dialogues (%d tokens)",
        variant,
        len(targets),
        model_dir,
        base_kind,
        dtype_name,
        device,
        len(sequences),
        sum(map(len, sequences)),
    )
    runtime = Runtime(device=device, precision=precision, optim="", quantize=False)
    # The reference: the base as merged (4-bit itself where dequantized) + adapter, unmerged.
    reference_runtime = dataclasses.replace(runtime, quantize=dequantize)
    model = PeftModel.from_pretrained(load_base(model_dir, reference_runtime), adapter).eval()
    nll = {name: Nll() for name in ("base", "base_adapter", "merged", "other_base_adapter")}
    reference = list(logits_of(model, sequences))
    for ids, ref in zip(sequences, reference, strict=True):
        nll["base_adapter"].add(ref, ids)
    with model.disable_adapter():
        effect = compare(model, sequences, reference, nll["base"])
    if dequantize:
        # The same 4-bit weights, dequantized (its trainable layout was never repacked).
        base = model.unload().dequantize(dtype=runtime.dtype)
        model = PeftModel.from_pretrained(base, adapter).eval()
        del base
    plain, weights = merge_checked(model, adapter, targets, torch_dtype(precision))
    del model

    with atomic_dir(merged) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        weights["saved_tensors"] = check_saved(plain, tmp)
        del plain
        free_memory()
        reloaded = load_base_model(tmp, runtime).eval()  # plain transformers
        parameters = reloaded.num_parameters()
        diff = compare(reloaded, sequences, reference, nll["merged"]).summary()
        del reloaded
        free_memory()
        gate = logit_gate(precision)
        log.info(
            "merged vs base + adapter: max |logit diff| %.3g, rms %.3g, top-1 agreement %.4f "
            "(the adapter itself moves them by up to %.3g, rms %.3g)",
            diff["max_abs_diff"],
            diff["rms_diff"],
            diff["top1_agreement"],
            effect.max_abs,
            effect.summary()["rms_diff"],
        )
        check_logits(diff, gate, dtype_name)
        quantization = None
        if compare_other:
            other_runtime = dataclasses.replace(runtime, quantize=not dequantize)
            other = PeftModel.from_pretrained(load_base(model_dir, other_runtime), adapter).eval()
            other_diff = compare(other, sequences, reference, nll["other_base_adapter"])
            del other
            free_memory()
            quantization = {
                "other_base": FULL_PRECISION if dequantize else "4-bit NF4",
                **other_diff.summary(),
            }
            log.info(
                "the other base (%s) + adapter vs the reference: max |logit diff| %.3g, top-1 "
                "agreement %.4f (the base's quantization error)",
                quantization["other_base"],
                quantization["max_abs_diff"],
                quantization["top1_agreement"],
            )
        size = _folder_bytes(tmp)
    write_json(
        {
            "variant": variant,
            "dtype": dtype_name,
            "base": base_kind,
            "device": device,
            "parameters": parameters,
            "size_bytes": size,
            "check_dialogues": len(sequences),
            "check_tokens": sum(map(len, sequences)),
            # the folder, loaded back, vs the base it was merged into + adapter, unmerged
            "logits": {**diff, "tolerance": gate},
            # that base without vs with the adapter: the scale to read the merge error against
            "adapter_effect": effect.summary(),
            "weights": weights,
            # QLoRA variants: the other base (4-bit / full precision) + adapter vs the reference
            "quantization": quantization,
            # mean next-token NLL on the check tokens (nats per token); null: not computed
            "nll": {name: n.mean if n.tokens else None for name, n in nll.items()},
            "runtime_s": round(time.perf_counter() - start, 1),
        },
        metrics,
    )
    log.info("merged model written to %s (%.1f MB)", merged, size / 1e6)
