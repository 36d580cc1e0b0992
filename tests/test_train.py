"""train_lora: device fallbacks, checkpoints and their fingerprint, the assistant-only labels,
QLoRA gradients on a CPU, resume after a kill, adapter reload, and a short real run."""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from llmlab.config import Config, ConfigError, SftVariant, read_params_file, resolve
from llmlab.errors import UserError
from llmlab.runtime import Runtime
from llmlab.schemas import MESSAGE_DTYPE
from llmlab.sft_data.chat import expected_trained_text, load_tokenizer
from llmlab.train import (
    FINGERPRINT_FILE,
    build_trainer,
    checkpoint_to_resume,
    keep_trainable_fp32,
    plot_loss_curve,
    resolve_runtime,
    run_train_lora,
    save_adapter,
    sft_config,
    training_log,
)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
REPO = PARAMS.parent

# Small, fast settings for a tiny model: no gradient checkpointing, short sequences.
FAST = {
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "per_device_eval_batch_size": 8,
    "max_length": 160,
    "gradient_checkpointing": False,
    "warmup_steps": 1,
    "logging_steps": 1,
}


# --------------------------------------------------------------------------- helpers


def dialogues(n: int, seed: int) -> list[list[dict[str, str]]]:
    """Learnable single-turn arithmetic dialogues, some with a system prompt."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        turns = [
            {"role": "user", "content": f"Сколько будет {a} плюс {b}?"},
            {"role": "assistant", "content": f"{a} плюс {b} равно {a + b}. Ответ: {a + b}."},
        ]
        if i % 3 == 0:
            turns.insert(0, {"role": "system", "content": "Ты считаешь в уме."})
        out.append(turns)
    return out


def write_dialogues(path: Path, conversations: list[list[dict[str, str]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    messages = pl.Series("messages", conversations, dtype=pl.List(MESSAGE_DTYPE))
    pl.DataFrame([messages]).write_parquet(path)
    return path


@pytest.fixture
def sft_data(tmp_path: Path) -> tuple[Path, Path]:
    train = write_dialogues(tmp_path / "data" / "train.parquet", dialogues(48, seed=0))
    eval = write_dialogues(tmp_path / "data" / "eval.parquet", dialogues(12, seed=1))
    return train, eval


def demo_params(**variant_a: Any) -> dict[str, Any]:
    """The repo's params with `presets.demo.sft.variants.a` overridden (mappings merged)."""
    raw = copy.deepcopy(read_params_file(PARAMS))
    demo = raw["presets"].setdefault("demo", {}) or {}
    raw["presets"]["demo"] = demo
    variant = demo.setdefault("sft", {}).setdefault("variants", {}).setdefault("a", {})
    for key, value in variant_a.items():
        if isinstance(value, dict):
            variant.setdefault(key, {}).update(value)
        else:
            variant[key] = value
    return raw


def demo_config(**variant_a: Any) -> Config:
    return resolve(demo_params(**variant_a), "demo")


def outputs(root: Path) -> dict[str, Path]:
    return {
        "checkpoints": root / "checkpoints" / "a",
        "adapter": root / "adapters" / "a",
        "train_log": root / "sft" / "train_log.json",
        "metrics": root / "sft" / "metrics.json",
        "curve": root / "figures" / "loss_a.png",
    }


# --------------------------------------------------------------------------- config and device


def test_training_settings_reject_warmup_beyond_steps() -> None:
    with pytest.raises(ConfigError, match=r"sft\.variants\.a\.training: warmup_steps \(10\)"):
        demo_config(training={"max_steps": 5, "warmup_steps": 10})


def test_cpu_falls_back_to_fp32_and_torch_adamw() -> None:
    spec = demo_config(training={"optim": "paged_adamw_8bit", "precision": "auto"}).sft.variants[
        "a"
    ]
    runtime = resolve_runtime(spec.model_copy(update={"quantize": False}), "cpu", "sft.variants.a")
    assert (runtime.precision, runtime.optim) == ("fp32", "adamw_torch")
    args = sft_config(spec, runtime, Path("unused"))
    assert args.use_cpu and not args.bf16 and not args.fp16  # TRL would default bf16 to True
    assert args.optim == "adamw_torch" and args.assistant_only_loss


def test_fp16_on_cpu_is_a_config_error() -> None:
    spec = demo_config(quantize=False, training={"precision": "fp16"}).sft.variants["a"]
    with pytest.raises(UserError, match=r"^sft\.variants\.a\.training\.precision: fp16"):
        resolve_runtime(spec, "cpu", "sft.variants.a")


def test_sft_config_keeps_course_values_and_eval_schedule() -> None:
    spec = demo_config(training={"eval_steps": None}).sft.variants["a"]
    runtime = Runtime(device="cpu", precision="fp32", optim="adamw_torch", quantize=False)
    args = sft_config(spec, runtime, Path("ckpt"))
    t = spec.training
    assert args.eval_strategy == "no"
    assert (args.max_steps, args.learning_rate, args.seed) == (t.max_steps, t.learning_rate, t.seed)
    assert (args.save_strategy, args.save_steps) == ("steps", t.save_steps)
    full = resolve(read_params_file(PARAMS), "full").sft.variants["a"].training
    # The course recipe at the top level of params.yaml (the full preset).
    assert (full.per_device_train_batch_size, full.gradient_accumulation_steps) == (2, 4)
    assert (full.warmup_steps, full.max_steps, full.learning_rate) == (5, 100, 2e-4)
    assert (full.weight_decay, full.lr_scheduler_type, full.seed) == (0.01, "linear", 3407)
    assert (full.max_length, full.optim) == (2048, "adamw_8bit")


def test_quantize_without_backend_fails_before_any_work(
    tmp_path: Path, sft_data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bnb = pytest.importorskip("bitsandbytes")
    monkeypatch.setattr(bnb, "supported_torch_devices", {"cuda"})
    out = outputs(tmp_path)
    with pytest.raises(UserError, match=r"^sft\.variants\.a\.quantize: true, but bitsandbytes"):
        # The model folder does not even exist: the device check comes first.
        run_train_lora(demo_config(quantize=True), "a", tmp_path / "no_model", *sft_data, **out)
    assert not any(p.exists() for p in out.values())


def test_unknown_variant_is_a_user_error(tmp_path: Path, sft_data: tuple[Path, Path]) -> None:
    with pytest.raises(UserError, match="--variant 'z' is not a key of sft.variants"):
        run_train_lora(demo_config(), "z", tmp_path, *sft_data, **outputs(tmp_path))


# --------------------------------------------------------------------------- checkpoints


def make_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_resume_picks_last_complete_checkpoint(tmp_path: Path) -> None:
    fingerprint = {"config": {"lr": 1}, "train_data": "x"}
    assert checkpoint_to_resume(tmp_path, fingerprint) is None  # first run stores it
    make_checkpoint(tmp_path, 5)
    make_checkpoint(tmp_path, 10)
    partial = make_checkpoint(tmp_path, 15, complete=False)  # killed while saving
    assert checkpoint_to_resume(tmp_path, fingerprint) == tmp_path / "checkpoint-10"
    assert not partial.exists()


def test_stale_checkpoints_are_discarded_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint_to_resume(tmp_path, {"config": {"lr": 1}, "train_data": "x"})
    make_checkpoint(tmp_path, 5)
    new = {"config": {"lr": 2}, "train_data": "x"}
    with caplog.at_level(logging.WARNING):
        assert checkpoint_to_resume(tmp_path, new) is None
    assert "discarding 1 checkpoint(s) of a different run (changed: config)" in caplog.text
    assert not (tmp_path / "checkpoint-5").exists()
    assert json.loads((tmp_path / FINGERPRINT_FILE).read_text()) == new


def test_checkpoints_without_fingerprint_are_not_resumed(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 5)
    assert checkpoint_to_resume(tmp_path, {"config": {}}) is None
    assert not (tmp_path / "checkpoint-5").exists()


# --------------------------------------------------------------------------- log and figure


HISTORY = [
    {"loss": 2.0, "grad_norm": 1.5, "learning_rate": 1e-4, "epoch": 0.1, "step": 1},
    {"loss": 1.5, "grad_norm": 1.2, "learning_rate": 2e-4, "epoch": 0.2, "step": 2},
    {"eval_loss": 1.6, "eval_runtime": 1.0, "epoch": 0.2, "step": 2},
    {"train_runtime": 3.0, "train_loss": 1.75, "epoch": 0.2, "step": 2},
]


def test_training_log_has_steps_and_eval_points() -> None:
    log = training_log(HISTORY, "a", resumed_from_step=1)
    assert log["resumed_from_step"] == 1
    assert log["train"] == [
        {"step": 1, "loss": 2.0, "lr": 1e-4, "grad_norm": 1.5, "epoch": 0.1},
        {"step": 2, "loss": 1.5, "lr": 2e-4, "grad_norm": 1.2, "epoch": 0.2},
    ]
    assert log["eval"] == [{"step": 2, "eval_loss": 1.6, "epoch": 0.2}]


def test_loss_curve_is_titled_and_labelled() -> None:
    metrics = {"steps": 2, "eval_loss": 1.55, "base_eval_loss": 2.4}
    fig = plot_loss_curve(training_log(HISTORY, "a", resumed_from_step=1), metrics)
    ax = fig.axes[0]
    assert "variant a" in ax.get_title()
    assert ax.get_xlabel() == "optimizer step" and "nats per token" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "train (per step)" and "resumed here" in labels
    fig.clf()


# --------------------------------------------------------------------------- with a tiny model


def trainer_for(
    model_dir: Path,
    spec: SftVariant,
    runtime: Runtime,
    conversations: list[list[dict[str, str]]],
    n_eval: int,
    checkpoints: Path,
) -> tuple[Any, Any]:
    """A trainer on `conversations` (the first `n_eval` also evaluate), and its tokenizer."""
    from llmlab.runtime import load_base_model

    tokenizer = load_tokenizer(model_dir)
    model = load_base_model(model_dir, runtime)
    trainer = build_trainer(
        model, tokenizer, conversations, conversations[:n_eval], spec, runtime, checkpoints
    )
    return trainer, tokenizer


@pytest.mark.slow
def test_labels_cover_exactly_the_assistant_turns(tiny_llama_dir: Path, tmp_path: Path) -> None:
    spec = demo_config(quantize=False, training=FAST).sft.variants["a"]
    runtime = Runtime(device="cpu", precision="fp32", optim="adamw_torch", quantize=False)
    conversations = dialogues(6, seed=3)
    trainer, tokenizer = trainer_for(tiny_llama_dir, spec, runtime, conversations, 2, tmp_path)
    for conversation, example in zip(conversations, trainer.train_dataset, strict=True):
        trained = [t for t in example["labels"] if t != -100]
        assert len(trained) < len(example["input_ids"])  # the prompt is masked
        assert tokenizer.decode(trained) == expected_trained_text(conversation, tokenizer.eos_token)


@pytest.mark.slow
def test_evaluation_does_not_break_4bit_lora_gradients(tiny_llama_dir: Path) -> None:
    """bitsandbytes' CPU inference repacking must not reach the training model object."""
    pytest.importorskip("bitsandbytes")
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from llmlab.runtime import keep_4bit_layout_trainable, load_base_model

    runtime = Runtime(device="cpu", precision="fp32", optim="adamw_torch", quantize=True)
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0))

    def lora_model(keep_layout: bool) -> Any:
        torch.manual_seed(0)
        model = prepare_model_for_kbit_training(
            load_base_model(tiny_llama_dir, runtime), use_gradient_checkpointing=False
        )
        if keep_layout:
            assert keep_4bit_layout_trainable(model) > 0
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        return get_peft_model(model, config)

    def grads(model: Any) -> list[Any]:
        model.train()
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        return [p.grad for p in model.parameters() if p.requires_grad]

    def grads_around_eval(model: Any) -> tuple[list[Any], list[Any]]:
        before = [g.clone() for g in grads(model)]
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
        return before, grads(model)

    before, after = grads_around_eval(lora_model(keep_layout=False))
    if all(a is not None and torch.equal(a, b) for a, b in zip(after, before, strict=True)):
        pytest.skip("bitsandbytes does not repack 4-bit weights on this CPU: nothing to guard")
    before, after = grads_around_eval(lora_model(keep_layout=True))
    for b, a in zip(before, after, strict=True):
        assert a is not None and torch.equal(a, b)


@pytest.mark.slow
def test_saved_adapter_reloads_with_identical_logits(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    from llmlab.runtime import keep_4bit_layout_trainable, load_base_model

    cfg = demo_config(training={**FAST, "max_steps": 3, "learning_rate": 1e-2, "eval_steps": None})
    spec = cfg.sft.variants["a"]
    runtime = resolve_runtime(spec, "cpu", "sft.variants.a")
    conversations = dialogues(12, seed=0)
    trainer, tokenizer = trainer_for(
        tiny_llama_dir, spec, runtime, conversations, 4, tmp_path / "ckpt"
    )
    trainer.train()
    save_adapter(trainer.model, tokenizer, tmp_path / "adapter")
    saved = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "chat_template.jinja"} <= saved

    ids = tokenizer(["Сколько будет 2 плюс 3?"], return_tensors="pt")["input_ids"]
    trained = trainer.model.eval()
    base = load_base_model(tiny_llama_dir, runtime)
    # The same 4-bit kernels as the trained object (which keeps the trainable layout).
    keep_4bit_layout_trainable(base)
    reloaded = PeftModel.from_pretrained(
        base,
        tmp_path / "adapter",
        # Keep the stored dtype (fp32: keep_trainable_fp32), as the trained model computes.
        autocast_adapter_dtype=False,
    ).eval()
    with torch.no_grad():
        expected, got = trained(input_ids=ids).logits, reloaded(input_ids=ids).logits
        with reloaded.disable_adapter():
            untrained = reloaded(input_ids=ids).logits
    assert not torch.equal(expected, untrained)  # the adapter changed something
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert load_tokenizer(tmp_path / "adapter").chat_template == tokenizer.chat_template


def test_keep_trainable_fp32_casts_the_adapter_only() -> None:
    """TRL leaves a quantized model's LoRA weights in bf16: they become fp32, exactly, and the
    frozen base keeps its dtype and its very tensors."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    base = LlamaForCausalLM(config).to(torch.bfloat16)
    lora = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, lora, autocast_adapter_dtype=False)  # as after TRL's cast
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    frozen_data = {n: (p.dtype, p.data_ptr()) for n, p in frozen.items()}
    assert len(trainable) == 6 and {p.dtype for p in trainable.values()} == {torch.bfloat16}

    assert keep_trainable_fp32(model) == 6
    params = dict(model.named_parameters())
    for name, before in trainable.items():
        assert params[name].dtype == torch.float32 and params[name].requires_grad
        assert torch.equal(params[name], before.float())
    assert {n: (params[n].dtype, params[n].data_ptr()) for n in frozen} == frozen_data
    assert keep_trainable_fp32(model) == 0  # idempotent


@pytest.mark.slow
def test_bf16_qlora_trains_fp32_adapter_and_resumes(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The full preset's setting (4-bit base, bf16 autocast, bitsandbytes AdamW8bit), on a CPU:
    the adapter trains and checkpoints in fp32, and a resumed run ends where an uninterrupted
    one does."""
    pytest.importorskip("bitsandbytes")
    import torch
    from safetensors import safe_open
    from transformers import set_seed

    training = {**FAST, "max_steps": 2, "save_steps": 1, "eval_steps": None}
    spec = demo_config(quantize=True, training={**training, "learning_rate": 1e-2}).sft.variants[
        "a"
    ]
    runtime = Runtime(device="cpu", precision="bf16", optim="adamw_8bit", quantize=True)
    conversations = dialogues(8, seed=0)

    def run(folder: Path, resume: Path | None = None) -> tuple[Any, Any]:
        set_seed(spec.training.seed)
        trainer, tokenizer = trainer_for(tiny_llama_dir, spec, runtime, conversations, 2, folder)
        assert trainer.args.bf16
        trainable = [p for p in trainer.model.parameters() if p.requires_grad]
        assert trainable and all(p.dtype == torch.float32 for p in trainable)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        assert all(p.dtype == torch.float32 for p in trainable)
        return trainer, tokenizer

    trainer, tokenizer = run(tmp_path / "ckpt")
    assert "bitsandbytes" in type(trainer.optimizer.optimizer).__module__
    # The 4-bit base stays 4-bit (packed uint8), frozen.
    frozen = {p.dtype for p in trainer.model.parameters() if not p.requires_grad}
    assert torch.uint8 in frozen
    save_adapter(trainer.model, tokenizer, tmp_path / "adapter")
    for folder in (tmp_path / "ckpt" / "checkpoint-1", tmp_path / "adapter"):
        with safe_open(folder / "adapter_model.safetensors", "pt") as f:
            names = f.keys()
            assert names and {f.get_tensor(name).dtype for name in names} == {torch.float32}

    resumed, _ = run(tmp_path / "resumed", resume=tmp_path / "ckpt" / "checkpoint-1")
    assert resumed.state.global_step == 2
    final = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    for name, param in resumed.model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param, final[name], rtol=0, atol=0)


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(
    tiny_llama_dir: Path, tmp_path: Path, sft_data: tuple[Path, Path]
) -> None:
    # Batch 2: the kill comes after the first checkpoint (step 2) of 16.
    training = {**FAST, "per_device_train_batch_size": 2, "learning_rate": 1e-3}
    params = demo_params(training={**training, "max_steps": 16, "save_steps": 2, "eval_steps": 8})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True))
    out = outputs(tmp_path / "run")
    args = ["--variant", "a", "--model-dir", str(tiny_llama_dir)]
    args += ["--train", str(sft_data[0]), "--eval", str(sft_data[1])]
    for key, path in out.items():
        args += [f"--{key.replace('_', '-')}", str(path)]
    command = [sys.executable, "-m", "llmlab", "train-lora", "--params", str(params_file)]
    command += ["--preset", "demo", *args]
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if any(out["checkpoints"].glob("checkpoint-*/trainer_state.json")):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-2000:]
    # Killed mid-run: nothing looks finished.
    assert not out["adapter"].exists() and not out["metrics"].exists()

    cfg = resolve(params, "demo")
    run_train_lora(cfg, "a", tiny_llama_dir, *sft_data, **out)
    log_json = json.loads(out["train_log"].read_text())
    metrics = json.loads(out["metrics"].read_text())
    assert log_json["resumed_from_step"] > 0
    assert log_json["resumed_from_step"] % 2 == 0  # a checkpoint step
    assert metrics["steps"] == 16 and metrics["resumed_from_step"] == log_json["resumed_from_step"]
    # The history before the kill comes back from the checkpoint: every step is logged.
    assert [e["step"] for e in log_json["train"]] == list(range(1, 17))
    # Evaluated at step 8; the end is the held-out pass of run_train_lora, not the trainer's.
    assert [e["step"] for e in log_json["eval"]] == [8]
    assert (out["adapter"] / "adapter_model.safetensors").exists() and out["curve"].exists()


# --------------------------------------------------------------------------- with SmolLM2


@pytest.mark.slow
def test_short_training_run_lowers_held_out_loss(
    smollm2_dir: Path, tmp_path: Path, sft_data: tuple[Path, Path]
) -> None:
    """The demo preset's variant a settings (quantize included), fewer and smaller steps."""
    training = {**FAST, "per_device_train_batch_size": 2, "learning_rate": 1e-3}
    cfg = demo_config(training={**training, "max_steps": 4, "save_steps": 4, "eval_steps": 2})
    out = outputs(tmp_path)
    run_train_lora(cfg, "a", smollm2_dir, *sft_data, **out)
    metrics = json.loads(out["metrics"].read_text())
    # Measured: 2.63 -> 0.87 after 6 steps of 4 dialogues; 4 steps of 2 must show a clear drop.
    assert metrics["eval_loss"] < metrics["base_eval_loss"] - 0.3
    assert metrics["perplexity"] == pytest.approx(2.718281828 ** metrics["eval_loss"])
    assert metrics["runtime"]["quantize"] == cfg.sft.variants["a"].quantize
    log_json = json.loads(out["train_log"].read_text())
    assert [e["step"] for e in log_json["eval"]] == [2]
    assert out["curve"].stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("quantize", [False, True])
def test_gradient_checkpointing_trains_exactly_like_without(
    tiny_llama_dir: Path, tmp_path: Path, quantize: bool
) -> None:
    """The full preset trains with gradient checkpointing (the demo without): the losses of
    the same steps must match, for LoRA and for the 4-bit QLoRA path."""
    if quantize:
        pytest.importorskip("bitsandbytes")
    losses = {}
    for checkpointing in (False, True):
        training = {**FAST, "max_steps": 3, "eval_steps": None, "learning_rate": 1e-2}
        training["gradient_checkpointing"] = checkpointing
        spec = demo_config(quantize=quantize, training=training).sft.variants["a"]
        runtime = resolve_runtime(spec, "cpu", "sft.variants.a")
        from transformers import set_seed

        set_seed(spec.training.seed)
        trainer, _ = trainer_for(
            tiny_llama_dir, spec, runtime, dialogues(12, seed=0), 4, tmp_path / str(checkpointing)
        )
        assert trainer.args.gradient_checkpointing is checkpointing
        trainer.train()
        losses[checkpointing] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
