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
  bitsandbytes' 8-bit/paged optimizers become `adamw_torch` (paged needs CUDA; the 8-bit
  CPU backend is ~100x slower a step); on a GPU, `auto` is bf16 where the GPU has it
  natively, else fp16. In every precision the LoRA weights (the only trainable
  parameters) are fp32 master weights, bf16/fp16 being the autocast compute dtype only
  (`keep_trainable_fp32`: in pure bf16, updates below half a bf16 ulp would be lost).
- Checkpoints go every `save_steps` into the `--checkpoints` folder, which is not a stage
  output (Snakemake/DVC delete outputs before a rerun). A rerun resumes from the last complete
  checkpoint with `trainer.train(resume_from_checkpoint=...)`, but only if the stored
  fingerprint (config, device choices, data, model, template, this module and llmlab.runtime)
  matches; otherwise the stale checkpoints are discarded with a warning.
- Held-out loss: during training every `eval_steps` (the trainer's own evaluation, for the
  curve), and after training, token-weighted over every assistant token of eval.parquet, with
  the adapter and with it disabled (the base model on the same tokens) for metrics.json.
- Data parallel (`distributed.num_processes: N > 1`, one node): the command checks config,
  inputs and the N GPUs, prepares the checkpoint folder, then starts itself N times under
  torchrun (`launch_ranks`) with the resolved config and waits; a failing rank fails the
  command. Each rank loads the model on its own GPU (`device_map={"": local_rank}`; on a CPU
  the gloo backend) and the Trainer wraps it in DDP: each optimizer step sees
  per_device x grad_accum x N dialogues, each rank a different 1/N of them, and the loss is
  normalised by the assistant tokens of all ranks (`average_tokens_across_devices`), so N ranks
  of batch b train like one process of batch N x b. Only rank 0 writes checkpoint model
  files, the adapter, the log, the metrics and the figure; the final held-out loss is computed
  by all ranks on disjoint parts of eval.parquet and summed.
- Packing (`training.packing: true`): TRL bins whole tokenized dialogues (labels already
  masked) into rows of at most `max_length` tokens (best-fit decreasing; a longer dialogue is
  cut at `max_length`, as without packing) and collates padding-free: the rows of a batch are
  one sequence with `position_ids` restarting at 0 per dialogue, no attention mask, and the
  label of each dialogue's first token set to -100. transformers' masking_utils turns those
  position_ids into a block-diagonal causal mask (sdpa, eager, flex; the flash-attention
  kernels take the `cu_seq_lens` boundaries), so no token attends to another dialogue and the
  loss tokens are exactly those of the unpacked batches (tests/test_train_packing.py). A batch
  is then `per_device_train_batch_size` packed rows, not dialogues. Evaluation is not packed
  (the same dialogues per batch), but also padding-free, since TRL has one collator.

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
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import seaborn as sns
import yaml

import llmlab.runtime
from llmlab.config import Config, SftVariant, check_key
from llmlab.errors import UserError
from llmlab.gpus import bind_gpus
from llmlab.io import atomic_dir, read_json, read_parquet, write_json, write_text
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
# bitsandbytes optimizers: 8-bit states and paged (CUDA unified memory) variants. The paged
# ones need CUDA; bitsandbytes 0.50's CPU backend runs adamw_8bit, but ~100x slower per step
# than torch's AdamW on LoRA-sized tensors (0.27 s vs 5 ms a tensor; ~100 s a SmolLM2 step).
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


def sft_config(
    spec: SftVariant, runtime: Runtime, output_dir: Path, world_size: int = 1
) -> SFTConfig:
    """TRL `SFTConfig` of one variant on `runtime`'s device.

    Creating it sets up the process's device; in a torchrun rank (`world_size` > 1) that
    joins the process group, so create it before anything that needs a barrier.
    """
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
        # Labels are built (assistant masks applied) before packing, so packing keeps them.
        # "bfd" (TRL 1.16's default, pinned here) keeps each dialogue whole in one row and cuts
        # a longer one at max_length as without packing ("wrapped" and "bfd_split" would cut
        # dialogues across rows), and makes TRL collate padding-free (position_ids per
        # dialogue), which is what keeps dialogues from attending to each other. `padding_free`
        # stays False: TRL sets it for bfd packing, and refuses it alone with a max_length.
        packing=t.packing,
        packing_strategy="bfd",
        # The eval set stays one dialogue per example: heldout_loss counts per dialogue (DDP
        # drops the repeated ones), and the held-out numbers do not depend on the packing.
        eval_packing=False,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if t.eval_steps else "no",
        eval_steps=t.eval_steps,
        report_to="none",
        dataloader_num_workers=0,
        # DDP (world_size > 1). The Trainer would look for unused parameters on a peft model,
        # an extra pass per step that fails with reentrant checkpointing: every LoRA weight is
        # used in every forward. Batches of all ranks share one token count
        # (average_tokens_across_devices), so N ranks of batch b train like one of N x b.
        ddp_find_unused_parameters=False,
        average_tokens_across_devices=True,
        # accelerate would pick MPI over gloo on a CPU where torch has it; NCCL on GPUs. Only in
        # a rank: without a process group accelerate fails on a backend.
        ddp_backend="gloo" if runtime.device == "cpu" and world_size > 1 else None,
    )


def check_packing_attention(model: PreTrainedModel, where: str) -> None:
    """UserError unless `model`'s attention keeps packed dialogues apart.

    Padding-free batches carry no attention mask: transformers derives the block-diagonal
    mask from position_ids only for the implementations masking_utils builds masks for
    (sdpa, eager, flex_attention, flash_attention_2/3/4); any other one would silently let
    every dialogue of a row attend to the ones before it.
    """
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    implementation = model.config.get_text_config()._attn_implementation
    if implementation not in ALL_MASK_ATTENTION_FUNCTIONS:
        raise UserError(
            f"{where}: true, but the model's attention implementation {implementation!r} gets "
            "no per-dialogue mask from transformers in padding-free batches (packed dialogues "
            f"would attend to each other); supported: {', '.join(ALL_MASK_ATTENTION_FUNCTIONS)}; "
            "set it to false"
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
    args: SFTConfig | None = None,
    where: str = "sft.variants.<variant>",
) -> SFTTrainer:
    """An SFTTrainer that wraps `model` with the variant's LoRA adapter (TRL applies peft).

    `tokenizer` must carry the project's chat template (its `{% generation %}` markers are
    what `assistant_only_loss` masks with). `args`: `sft_config(...)` unless given (a rank
    creates it earlier, see there). `where`: the variant's key path, for messages.
    """
    from trl import SFTTrainer

    if spec.training.packing:
        check_packing_attention(model, f"{where}.training.packing")
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
        args=args if args is not None else sft_config(spec, runtime, output_dir),
        train_dataset=to_dataset(train),
        eval_dataset=to_dataset(eval),
        processing_class=tokenizer,
        peft_config=lora_config(spec),
        callbacks=[no_final_evaluation()],
    )
    # TRL has just cast a quantized model's adapter to bf16. The optimizer is created in
    # train(), so it sees (and checkpoints) the fp32 parameters.
    keep_trainable_fp32(trainer.model)
    return trainer


def keep_trainable_fp32(model: Any) -> int:
    """Cast `model`'s trainable floating-point parameters to fp32 in place (a no-op for those
    already fp32); frozen ones (the 4-bit or half-precision base) are left alone. Returns how
    many were cast.

    TRL 1.16 casts the trainable parameters of a quantized model to bf16 (the QLoRA paper's
    recipe). Trained that way, with bitsandbytes' AdamW8bit, the adapter has no fp32 master
    copy and every update below half a bf16 ulp of its weight rounds away. Simulated at the
    full preset's learning rates, schedules and LoRA shapes (scripts/benchmark_lora_bf16.py),
    that is 11-30% of all lora_A/lora_B updates of variant a and 27-43% of variant b's (from
    consistent to pure-noise gradients), 31-53% and 70-78% of those in the last third of the
    steps, as the learning rate decays. In fp32 nothing is lost, and bf16 autocast still runs
    the LoRA matmuls in bf16; the cost is 4 more bytes per adapter weight (weight and
    gradient: ~0.7 GB for variant b's 168M). Without autocast (fp32 on a CPU) fp32 is also
    the faster dtype, and fp16 mixed precision cannot unscale half-precision gradients.
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


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
    Under DDP every rank must call it: each scores its share of the eval set and all get the
    total (the same number as one process, up to summation order). With packing the eval
    batches are padding-free (one row of dialogues): they are split back per dialogue.
    """
    import contextlib

    import torch

    model = trainer.model
    model.eval()
    nll, tokens = 0.0, 0
    adapter_off = contextlib.nullcontext() if use_adapter else model.disable_adapter()
    with torch.no_grad(), adapter_off, trainer.accelerator.autocast():
        for batch in trainer.get_eval_dataloader():
            # Padding-free batches also carry the dialogue boundaries (tensors and ints).
            batch = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            out = model(**batch, fused_lm_head=True)
            # Per dialogue, so that gather_for_metrics can drop the dialogues accelerate
            # repeats to give every rank the same number of batches (a no-op in one process).
            token_nll, scored = -out.log_probs.double(), out.label_mask.double()
            if "seq_idx" in batch:
                # Padding-free: the batch is one row. A label's dialogue is that of its token
                # (labels are shifted by one; each dialogue's first label is -100).
                dialogue = batch["seq_idx"][:, 1:].flatten().long()
                count = len(batch["cu_seq_lens_q"]) - 1
                token_nll, scored = (
                    x.new_zeros(count).index_add_(0, dialogue, x.flatten())[:, None]
                    for x in (token_nll, scored)
                )
            rows = torch.stack([token_nll.flatten(1).sum(1), scored.flatten(1).sum(1)], dim=1)
            rows = trainer.accelerator.gather_for_metrics(rows)
            nll += rows[:, 0].sum().item()
            tokens += int(rows[:, 1].sum().item())
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
            # The number of ranks changes the batch, and a checkpoint holds one RNG per rank.
            "distributed": spec.distributed.model_dump(mode="json"),
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


def checkpoint_complete(checkpoint: Path, num_processes: int = 1) -> bool:
    """Whether the Trainer finished writing `checkpoint`.

    Rank 0 writes trainer_state.json last of its files, but under DDP every rank writes its
    own RNG state without waiting for the others (a rank may die before writing it).
    """
    if not (checkpoint / TRAINER_STATE).exists():
        return False
    return num_processes == 1 or all(
        (checkpoint / f"rng_state_{i}.pth").exists() for i in range(num_processes)
    )


def checkpoint_to_resume(
    folder: Path, fingerprint: dict[str, Any], num_processes: int = 1
) -> Path | None:
    """Prepare `folder` for a run with `fingerprint`; return the checkpoint to resume from.

    Checkpoints of a run with another fingerprint are deleted with a warning naming what
    changed; so are incomplete ones (killed while saving: `checkpoint_complete`).
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
        if not checkpoint_complete(checkpoint, num_processes):
            log.warning("%s: incomplete checkpoint (killed while saving?), removed", checkpoint)
            shutil.rmtree(checkpoint)
    last = get_last_checkpoint(str(folder))
    return Path(last) if last else None


def last_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a rank other than 0 resumes from, after rank 0 ran
    `checkpoint_to_resume` (which leaves only complete checkpoints of this run); reads only."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    return Path(last) if last else None


# --------------------------------------------------------------------------- data parallel


@dataclass(frozen=True)
class Rank:
    """This process's place in a torchrun group (its environment variables)."""

    rank: int
    local_rank: int  # its GPU on this node
    world_size: int


def current_rank(environ: Mapping[str, str] = os.environ) -> Rank | None:
    """The rank torchrun (or accelerate launch) made this process; None outside a group."""
    if "LOCAL_RANK" not in environ and "WORLD_SIZE" not in environ:
        return None
    return Rank(
        rank=int(environ.get("RANK", "0")),
        local_rank=int(environ.get("LOCAL_RANK", "0")),
        world_size=int(environ.get("WORLD_SIZE", "1")),
    )


def should_launch(num_processes: int, environ: Mapping[str, str] = os.environ) -> bool:
    """True when this process must start the `num_processes` ranks: it is not one itself."""
    return num_processes > 1 and current_rank(environ) is None


def check_rank(rank: Rank | None, num_processes: int, where: str) -> None:
    """UserError unless a launched group has the configured size (`where`: the variant key)."""
    world = rank.world_size if rank else 1
    if rank is not None and world != num_processes:
        raise UserError(
            f"{where}.distributed.num_processes: {num_processes}, but this process is one of "
            f"{world} started by a launcher (WORLD_SIZE={world}); run `python -m llmlab "
            "train-lora` without a launcher (it starts the processes itself), or set it to "
            f"{world}"
        )


def rank_command(
    params_file: Path, preset: str, variant: str, num_processes: int, paths: Mapping[str, Path]
) -> list[str]:
    """The torchrun command that starts `num_processes` ranks of this stage on this node.

    `paths`: the stage's path arguments by parameter name (model_dir, train, ..., curve);
    each is the CLI flag of the same name. `--standalone` takes a free port, so two such
    jobs on one node do not collide.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1"]
    command += [f"--nproc-per-node={num_processes}", "-m", "llmlab", "train-lora"]
    command += ["--params", str(params_file), "--preset", preset, "--variant", variant]
    for name, path in paths.items():
        command += [f"--{name.replace('_', '-')}", str(path)]
    return command


def launch_ranks(command: Sequence[str], where: str) -> None:
    """Run `command` (torchrun), forwarding SIGTERM to it; SystemExit with its status if it
    fails. torchrun stops every rank when one fails; the ranks' own errors are on stderr."""
    log.info("%s: starting the training processes: %s", where, " ".join(command))
    proc = subprocess.Popen(command)
    # Snakemake and SLURM stop a job with SIGTERM to this process: pass it on, so that no
    # rank keeps a GPU busy. (Ctrl-C reaches torchrun and the ranks directly.)
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:
        status = code if code > 0 else 128 - code  # killed by a signal: the shell's convention
        log.error(
            "%s: the training processes failed (torchrun exit status %d); the failing rank's "
            "error is above",
            where,
            status,
        )
        raise SystemExit(status)


def launch_distributed(
    cfg: Config, variant: str, num_processes: int, paths: Mapping[str, Path]
) -> None:
    """Start `num_processes` ranks of train-lora on the resolved `cfg` and wait for them.

    The ranks read `cfg` from a temporary params file, not the user's: the same values
    whatever the caller was (the CLI or a test), and no re-resolution of presets.
    """
    with tempfile.TemporaryDirectory(prefix="llmlab-train-lora-") as tmp:
        params_file = Path(tmp) / "params.yaml"
        write_text(
            yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False),
            params_file,
        )
        command = rank_command(params_file, cfg.preset, variant, num_processes, paths)
        launch_ranks(command, f"sft.variants.{variant}.distributed")


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
    """train_lora: train one variant's adapter; write adapter, train log, metrics, curve.

    With `distributed.num_processes` N > 1 and outside a torchrun group, it checks everything
    it can, then starts N ranks of itself and waits (module docstring).
    """
    from transformers import set_seed

    check_key(variant, cfg.sft.variants, flag="--variant", where="sft.variants")
    spec = cfg.sft.variants[variant]
    where = f"sft.variants.{variant}"
    num_processes = spec.distributed.num_processes
    rank = current_rank()
    if rank is None:
        # Before anything probes CUDA; torchrun's ranks inherit the binding.
        bind_gpus(cfg.device, num_processes)
    require_device(cfg.device)
    check_rank(rank, num_processes, where)
    if num_processes > 1:
        require_device(cfg.device, gpus=num_processes, where=f"{where}.distributed.num_processes")
    runtime = resolve_runtime(spec, cfg.device, where)
    check_prepared_model(model_dir)
    train_dialogues = read_dialogues(train)
    eval_dialogues = read_dialogues(eval)
    tokenizer = load_tokenizer(model_dir)
    fingerprint = run_fingerprint(spec, runtime, model_dir, train, eval, tokenizer.chat_template)
    if should_launch(num_processes):
        # Stale checkpoints go before any rank starts, so the ranks find the folder settled.
        checkpoint_to_resume(checkpoints, fingerprint, num_processes)
        paths = {"model_dir": model_dir, "train": train, "eval": eval}
        paths |= {"checkpoints": checkpoints, "adapter": adapter, "train_log": train_log}
        paths |= {"metrics": metrics, "curve": curve}
        launch_distributed(cfg, variant, num_processes, paths)
        return

    # In a rank, this joins the process group: the barriers below need it.
    args = sft_config(spec, runtime, checkpoints, world_size=num_processes)
    is_main = args.process_index == 0
    if not is_main:
        # Rank 0 speaks for all; warnings and errors of any rank still show.
        logging.getLogger("llmlab").setLevel(logging.WARNING)
    log.info(
        "variant %s: %d train / %d eval dialogues; %s, precision %s, optimizer %s, %s; "
        "%d process(es), %d %s per optimizer step",
        variant,
        len(train_dialogues),
        len(eval_dialogues),
        runtime.device,
        runtime.precision,
        runtime.optim,
        "4-bit NF4 base (QLoRA)" if runtime.quantize else "full-precision base (LoRA)",
        num_processes,
        effective_batch_size(spec),
        f"packed rows of up to {spec.training.max_length} tokens"
        if spec.training.packing
        else "dialogues",
    )
    with args.main_process_first(local=False, desc="checkpoint check"):
        # Rank 0 settles the folder (a rank started by hand, not by launch_distributed, finds
        # it unsettled); the others then only read it.
        resume = (
            checkpoint_to_resume(checkpoints, fingerprint, num_processes)
            if is_main
            else last_checkpoint(checkpoints)
        )
    resumed_from_step = _step_of(resume) if resume else 0
    if resume:
        log.info("resuming from %s (step %d)", resume, resumed_from_step)

    set_seed(spec.training.seed)  # peft initialises LoRA A randomly
    gpu = rank.local_rank if rank is not None and runtime.device == "cuda" else None
    model = load_base_model(model_dir, runtime, gpu=gpu)
    trainer = build_trainer(
        model, tokenizer, train_dialogues, eval_dialogues, spec, runtime, checkpoints, args, where
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime_s = time.perf_counter() - start

    # Every rank: each scores part of the eval set.
    final = heldout_loss(trainer, use_adapter=True)
    base = heldout_loss(trainer, use_adapter=False)
    if is_main:
        write_outputs(
            trainer,
            tokenizer,
            spec,
            variant,
            runtime,
            final=final,
            base=base,
            counts={"eval_dialogues": len(eval_dialogues), "train_dialogues": len(train_dialogues)},
            resumed_from_step=resumed_from_step,
            runtime_s=runtime_s,
            outputs={"adapter": adapter, "train_log": train_log, "metrics": metrics}
            | {"curve": curve},
        )
    if args.world_size > 1:
        # The group ends together: no rank tears it down while rank 0 still writes.
        trainer.accelerator.wait_for_everyone()


def effective_batch_size(spec: SftVariant) -> int:
    """Dialogues (packed rows with `packing`) per optimizer step: per device x gradient
    accumulation x processes."""
    t = spec.training
    return (
        t.per_device_train_batch_size
        * t.gradient_accumulation_steps
        * spec.distributed.num_processes
    )


def write_outputs(
    trainer: SFTTrainer,
    tokenizer: PreTrainedTokenizerBase,
    spec: SftVariant,
    variant: str,
    runtime: Runtime,
    *,
    final: HeldoutLoss,
    base: HeldoutLoss,
    counts: Mapping[str, int],
    resumed_from_step: int,
    runtime_s: float,
    outputs: Mapping[str, Path],
) -> None:
    """Adapter, train log, metrics and loss curve of a finished run (rank 0 only)."""
    trainable, total = trainer.model.get_nb_trainable_parameters()
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
        **counts,
        "final_train_loss": log_json["train"][-1]["loss"] if log_json["train"] else None,
        "steps": trainer.state.global_step,
        "resumed_from_step": resumed_from_step,
        "train_runtime_s": round(runtime_s, 1),
        "trainable_params": trainable,
        "total_params": total,
        "runtime": asdict(runtime),
        "lora": spec.lora.model_dump(mode="json"),
        "training": spec.training.model_dump(mode="json"),
        "distributed": spec.distributed.model_dump(mode="json"),
        "effective_batch_size": effective_batch_size(spec),
    }
    save_adapter(trainer.model, tokenizer, outputs["adapter"])
    write_json(log_json, outputs["train_log"])
    write_json(metrics_json, outputs["metrics"])
    save_figure(plot_loss_curve(log_json, metrics_json), outputs["curve"])
    log.info("adapter written to %s", outputs["adapter"])
