"""train_lora: (Q)LoRA SFT of one variant with TRL, assistant-only loss, resumable.

One code path for both presets; only `sft.variants.<variant>` values and the device differ:

- The base model is loaded 4-bit NF4 with double quantisation when `quantize: true`
  (bitsandbytes `BitsAndBytesConfig` + peft `prepare_model_for_kbit_training`), else in the
  training precision. peft `LoraConfig` adapters go on the configured projections and TRL's
  `SFTTrainer` trains them on the `messages` column with `assistant_only_loss=True`: the
  project's chat template (llmlab.sft_data) marks each assistant turn with
  `{% generation %}`, so only assistant content, `<|eot_id|>` and eos carry loss.
- The device is the config's `device` (checked at start by llmlab.runtime: a CUDA run without
  a usable GPU stops there, never falls back to the CPU). On a CPU, `auto` precision is fp32
  (bf16 autocast is about 2x slower on the CPUs we measured), fp16 is an error, and
  bitsandbytes' 8-bit/paged optimizers become `adamw_torch`; on a GPU, `auto` is bf16 where
  the GPU has it natively, else fp16.
- Checkpoints go every `save_steps` into the `--checkpoints` folder, which is not a stage
  output (Snakemake/DVC delete outputs before a rerun). A rerun resumes from the last complete
  checkpoint with `trainer.train(resume_from_checkpoint=...)`, but only if the stored
  fingerprint (config, device choices, data, model, template, this module and llmlab.runtime)
  matches; otherwise the stale checkpoints are discarded with a warning.
- Held-out loss: during training every `eval_steps` (the trainer's own evaluation, for the
  curve), and after training, token-weighted over every assistant token of eval.parquet, with
  the adapter and with it disabled (the base model on the same tokens) for metrics.json.

bitsandbytes on a CPU with AVX512-BF16 repacks a 4-bit weight into an inference-only layout
the first time it runs without grad in eval mode (any evaluation), after which LoRA gradients
are wrong. The training model object therefore keeps the trainable layout
(`llmlab.runtime.keep_4bit_layout_trainable`), which makes evaluation during 4-bit training
safe; tests/test_train.py checks the gradients. Device checks, precision, the 4-bit config and
model loading are llmlab.runtime's, shared with compare_generations and eval_llm.

torch, transformers, peft and trl are imported inside the functions that need them, so
`python -m llmlab --help` and config errors stay instant.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import seaborn as sns

import llmlab.runtime
from llmlab.config import Config, SftVariant, check_key
from llmlab.errors import UserError
from llmlab.io import atomic_dir, read_json, read_parquet, write_json
from llmlab.plots import save_figure, setup_theme
from llmlab.runtime import (
    Runtime,
    check_prepared_model,
    check_quantization_available,
    keep_4bit_layout_trainable,
    load_base_model,
    require_device,
    resolve_precision,
)
from llmlab.schemas import MESSAGES_SCHEMA
from llmlab.sft_data.chat import Conversation, load_tokenizer, to_conversations, validate_dialogues

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTConfig, SFTTrainer

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "llmlab_fingerprint.json"
# bitsandbytes optimizers: 8-bit states and paged (CUDA unified memory) variants.
BNB_OPTIMIZERS = frozenset({"adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"})
# A checkpoint folder is complete once the Trainer wrote this file: it is written last.
TRAINER_STATE = "trainer_state.json"

# --------------------------------------------------------------------------- device choices


def resolve_runtime(spec: SftVariant, device: str, where: str) -> Runtime:
    """Check `spec` against `device` and resolve precision and optimizer; UserError if impossible.

    `where` is the key path of the variant (for messages).
    """
    if spec.quantize:
        check_quantization_available(device, f"{where}.quantize")
    precision = resolve_precision(spec.training.precision, device, f"{where}.training.precision")
    optim = spec.training.optim
    if optim in BNB_OPTIMIZERS and device != "cuda":
        # bitsandbytes' 8-bit and paged optimizers are CUDA kernels.
        optim = "adamw_torch"
    return Runtime(device=device, precision=precision, optim=optim, quantize=spec.quantize)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- data


def read_dialogues(path: Path) -> list[Conversation]:
    """The `messages` of a format_chat parquet, checked to be valid training dialogues."""
    df = read_parquet(path, MESSAGES_SCHEMA)
    if df.height == 0:
        raise UserError(f"{path}: no dialogues")
    validate_dialogues(df, str(path))
    return to_conversations(df["messages"])


def to_dataset(conversations: Sequence[Conversation]) -> Dataset:
    """A conversational `datasets.Dataset` (one `messages` column) as SFTTrainer expects."""
    from datasets import Dataset

    return Dataset.from_dict({"messages": list(conversations)})


# --------------------------------------------------------------------------- trainer


def sft_config(spec: SftVariant, runtime: Runtime, output_dir: Path) -> SFTConfig:
    """TRL `SFTConfig` of one variant on `runtime`'s device."""
    from trl import SFTConfig

    t = spec.training
    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        optim=runtime.optim,
        seed=t.seed,
        data_seed=t.seed,
        # TRL defaults bf16 to True: every precision flag is set explicitly.
        bf16=runtime.precision == "bf16",
        fp16=runtime.precision == "fp16",
        use_cpu=runtime.device == "cpu",
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False}
        if t.gradient_checkpointing
        else None,
        max_length=t.max_length,
        assistant_only_loss=True,
        packing=False,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if t.eval_steps else "no",
        eval_steps=t.eval_steps,
        report_to="none",
        dataloader_num_workers=0,
    )


def lora_config(spec: SftVariant) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=list(spec.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def no_final_evaluation() -> Any:
    """A callback that cancels the trainer's evaluation at the last step.

    With step-wise evaluation the trainer also evaluates when training ends; `heldout_loss`
    computes that number anyway (token-weighted, with and without the adapter), so the
    repeat would only cost a pass over the eval set.
    """
    from transformers import TrainerCallback

    class NoFinalEvaluation(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_evaluate = False
            return control

    return NoFinalEvaluation()


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Sequence[Conversation],
    eval: Sequence[Conversation],
    spec: SftVariant,
    runtime: Runtime,
    output_dir: Path,
) -> SFTTrainer:
    """An SFTTrainer that wraps `model` with the variant's LoRA adapter (TRL applies peft).

    `tokenizer` must carry the project's chat template (its `{% generation %}` markers are
    what `assistant_only_loss` masks with).
    """
    from trl import SFTTrainer

    if runtime.quantize:
        from peft import prepare_model_for_kbit_training

        # fp32 norms/embeddings and input grads for the frozen 4-bit base (peft's QLoRA recipe).
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=spec.training.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        keep_4bit_layout_trainable(model)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(spec, runtime, output_dir),
        train_dataset=to_dataset(train),
        eval_dataset=to_dataset(eval),
        processing_class=tokenizer,
        peft_config=lora_config(spec),
        callbacks=[no_final_evaluation()],
    )
    if runtime.quantize and runtime.precision != "bf16":
        # TRL stores QLoRA adapters in bf16 (the paper's recipe on bf16 GPUs). Without bf16
        # autocast they stay fp32: on a CPU bf16 matmuls are slower than fp32, and fp16
        # mixed precision cannot unscale half-precision gradients. The optimizer is created
        # in train(), so it sees the final dtype.
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return trainer


@dataclass(frozen=True)
class HeldoutLoss:
    """Mean cross-entropy over every assistant token of a held-out set (nats per token)."""

    loss: float
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)


def heldout_loss(trainer: SFTTrainer, use_adapter: bool = True) -> HeldoutLoss:
    """Token-weighted held-out loss of the trainer's model on its (prepared) eval dataset.

    The trainer's own `evaluate()` averages per-batch means, so its number depends on the
    batch composition; this one sums the loss of every assistant token and divides once,
    which is what perplexity needs. It uses TRL's fused LM head (no full logits) under the
    trainer's autocast, and with `use_adapter=False` scores the base model on the same tokens.
    """
    import contextlib

    import torch

    model = trainer.model
    model.eval()
    nll, tokens = 0.0, 0
    adapter_off = contextlib.nullcontext() if use_adapter else model.disable_adapter()
    with torch.no_grad(), adapter_off, trainer.accelerator.autocast():
        for batch in trainer.get_eval_dataloader():
            batch = {k: v.to(model.device) for k, v in batch.items() if torch.is_tensor(v)}
            out = model(**batch, fused_lm_head=True)
            nll -= out.log_probs.double().sum().item()
            tokens += int(out.label_mask.sum().item())
    if tokens == 0:
        raise UserError("the eval set has no assistant tokens within max_length")
    return HeldoutLoss(loss=nll / tokens, tokens=tokens)


# --------------------------------------------------------------------------- checkpoints


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_digest(folder: Path, full_below: int = 64 << 20) -> str:
    """Identity of a model folder without reading gigabytes of weights.

    Files below `full_below` bytes (config, tokenizer, llmlab_model.json with the resolved
    revision) are hashed whole; larger ones by name, size and their first and last MiB.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        h.update(f"{path.relative_to(folder)}\0{size}\0".encode())
        with path.open("rb") as f:
            if size < full_below:
                h.update(f.read())
            else:
                h.update(f.read(1 << 20))
                f.seek(size - (1 << 20))
                h.update(f.read())
    return h.hexdigest()


def run_fingerprint(
    spec: SftVariant, runtime: Runtime, model_dir: Path, train: Path, eval: Path, template: str
) -> dict[str, Any]:
    """What a checkpoint must have been trained with to be resumed by this run."""
    return {
        "config": {
            "lora": spec.lora.model_dump(mode="json"),
            "training": spec.training.model_dump(mode="json"),
            "runtime": asdict(runtime),
        },
        "train_data": file_digest(train),
        "eval_data": file_digest(eval),
        "model": folder_digest(model_dir),
        "chat_template": _sha256_bytes(template.encode()),
        # This module and llmlab.runtime (model loading, the 4-bit config).
        "code": _sha256_bytes(
            Path(__file__).read_bytes() + Path(llmlab.runtime.__file__).read_bytes()
        ),
    }


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rpartition("-")[2])


def checkpoint_to_resume(folder: Path, fingerprint: dict[str, Any]) -> Path | None:
    """Prepare `folder` for a run with `fingerprint`; return the checkpoint to resume from.

    Checkpoints of a run with another fingerprint are deleted with a warning naming what
    changed; so are incomplete ones (killed while saving: no trainer_state.json).
    """
    from transformers.trainer_utils import get_last_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    stored_path = folder / FINGERPRINT_FILE
    stored = read_json(stored_path) if stored_path.exists() else None
    checkpoints = sorted(
        (p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()),
        key=_step_of,
    )
    if stored != fingerprint:
        if checkpoints:
            changed = (
                [k for k in fingerprint if stored.get(k) != fingerprint[k]]
                if isinstance(stored, dict)
                else ["no fingerprint stored"]
            )
            log.warning(
                "%s: discarding %d checkpoint(s) of a different run (changed: %s); "
                "training starts at step 0",
                folder,
                len(checkpoints),
                ", ".join(changed),
            )
            for checkpoint in checkpoints:
                shutil.rmtree(checkpoint)
        write_json(fingerprint, stored_path)
        return None
    for checkpoint in checkpoints:
        if not (checkpoint / TRAINER_STATE).exists():
            log.warning("%s: incomplete checkpoint (killed while saving?), removed", checkpoint)
            shutil.rmtree(checkpoint)
    last = get_last_checkpoint(str(folder))
    return Path(last) if last else None


# --------------------------------------------------------------------------- outputs


def training_log(history: Sequence[dict[str, Any]], variant: str, resumed_from_step: int) -> dict:
    """The per-step log of train_log.json from the trainer's `state.log_history`.

    `train`: one entry per logged optimizer step (step, loss, lr, grad_norm, epoch); `eval`:
    the held-out loss during training (step, eval_loss, epoch). A resumed run's history
    includes the steps before the interruption (restored from the checkpoint).
    """
    train = [
        {
            "step": e["step"],
            "loss": e["loss"],
            "lr": e.get("learning_rate"),
            "grad_norm": e.get("grad_norm"),
            "epoch": e.get("epoch"),
        }
        for e in history
        if "loss" in e
    ]
    evals = [
        {"step": e["step"], "eval_loss": e["eval_loss"], "epoch": e.get("epoch")}
        for e in history
        if "eval_loss" in e
    ]
    return {
        "variant": variant,
        "resumed_from_step": resumed_from_step,
        "train": train,
        "eval": evals,
    }


def plot_loss_curve(log_json: dict, metrics: dict) -> plt.Figure:
    """Training loss per step, held-out loss during training and at the end, base model loss."""
    setup_theme()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    # seaborn takes a mapping of columns (it does not read polars frames).
    train = {k: [e[k] for e in log_json["train"]] for k in ("step", "loss")}
    sns.lineplot(data=train, x="step", y="loss", ax=ax, label="train (per step)", linewidth=1.2)
    if log_json["eval"]:
        evals = {k: [e[k] for e in log_json["eval"]] for k in ("step", "eval_loss")}
        sns.lineplot(
            data=evals,
            x="step",
            y="eval_loss",
            ax=ax,
            marker="o",
            label="held-out (during training)",
        )
    ax.scatter(
        [metrics["steps"]],
        [metrics["eval_loss"]],
        marker="*",
        s=180,
        color="C3",
        zorder=5,
        label=f"held-out, final ({metrics['eval_loss']:.3f})",
    )
    ax.axhline(
        metrics["base_eval_loss"],
        linestyle=":",
        color="0.4",
        label=f"base model, held-out ({metrics['base_eval_loss']:.3f})",
    )
    if log_json["resumed_from_step"]:
        ax.axvline(log_json["resumed_from_step"], linestyle="--", color="0.6", label="resumed here")
    ax.set_title(f"LoRA SFT, variant {log_json['variant']}: loss on assistant tokens")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.legend(loc="upper right", fontsize=9)
    return fig


def save_adapter(model: Any, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """Write the adapter (peft layout: adapter_config.json + adapter_model.safetensors, which
    PeftModel.from_pretrained and vLLM's LoRARequest load) with the tokenizer and the chat
    template (chat_template.jinja), atomically."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


# --------------------------------------------------------------------------- stage


def run_train_lora(
    cfg: Config,
    variant: str,
    model_dir: Path,
    train: Path,
    eval: Path,
    checkpoints: Path,
    adapter: Path,
    train_log: Path,
    metrics: Path,
    curve: Path,
) -> None:
    """train_lora: train one variant's adapter; write adapter, train log, metrics, curve."""
    from transformers import set_seed

    require_device(cfg.device)
    check_key(variant, cfg.sft.variants, flag="--variant", where="sft.variants")
    spec = cfg.sft.variants[variant]
    where = f"sft.variants.{variant}"
    runtime = resolve_runtime(spec, cfg.device, where)
    check_prepared_model(model_dir)
    train_dialogues = read_dialogues(train)
    eval_dialogues = read_dialogues(eval)
    tokenizer = load_tokenizer(model_dir)
    log.info(
        "variant %s: %d train / %d eval dialogues; %s, precision %s, optimizer %s, %s",
        variant,
        len(train_dialogues),
        len(eval_dialogues),
        runtime.device,
        runtime.precision,
        runtime.optim,
        "4-bit NF4 base (QLoRA)" if runtime.quantize else "full-precision base (LoRA)",
    )
    fingerprint = run_fingerprint(spec, runtime, model_dir, train, eval, tokenizer.chat_template)
    resume = checkpoint_to_resume(checkpoints, fingerprint)
    resumed_from_step = _step_of(resume) if resume else 0
    if resume:
        log.info("resuming from %s (step %d)", resume, resumed_from_step)

    set_seed(spec.training.seed)  # peft initialises LoRA A randomly
    model = load_base_model(model_dir, runtime)
    trainer = build_trainer(
        model, tokenizer, train_dialogues, eval_dialogues, spec, runtime, checkpoints
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime_s = time.perf_counter() - start

    final = heldout_loss(trainer, use_adapter=True)
    base = heldout_loss(trainer, use_adapter=False)
    log.info(
        "held-out loss %.4f (perplexity %.2f); base model %.4f (%.2f); %d tokens",
        final.loss,
        final.perplexity,
        base.loss,
        base.perplexity,
        final.tokens,
    )
    log_json = training_log(trainer.state.log_history, variant, resumed_from_step)
    metrics_json = {
        "variant": variant,
        "eval_loss": final.loss,
        "perplexity": final.perplexity,
        "base_eval_loss": base.loss,
        "base_perplexity": base.perplexity,
        "eval_tokens": final.tokens,
        "eval_dialogues": len(eval_dialogues),
        "train_dialogues": len(train_dialogues),
        "final_train_loss": log_json["train"][-1]["loss"] if log_json["train"] else None,
        "steps": trainer.state.global_step,
        "resumed_from_step": resumed_from_step,
        "train_runtime_s": round(runtime_s, 1),
        "trainable_params": trainable,
        "total_params": total,
        "runtime": asdict(runtime),
        "lora": spec.lora.model_dump(mode="json"),
        "training": spec.training.model_dump(mode="json"),
    }
    save_adapter(trainer.model, tokenizer, adapter)
    write_json(log_json, train_log)
    write_json(metrics_json, metrics)
    save_figure(plot_loss_curve(log_json, metrics_json), curve)
    log.info("adapter written to %s", adapter)
