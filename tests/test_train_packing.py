"""train_lora with `training.packing`: packed batches train on exactly the tokens of unpacked
ones, and no dialogue of a packed row attends to another (sdpa on the CPU).

How it works (TRL 1.16, transformers 5.19): SFTTrainer builds the labels (assistant masks)
per dialogue, then `pack_dataset(..., "bfd")` bins whole dialogues into rows of max_length
tokens with their lengths (`seq_lengths`), and `DataCollatorForLanguageModeling(padding_free=
True)` concatenates a batch into one row with position_ids restarting at 0 per dialogue and no
attention mask. `masking_utils.create_causal_mask` then finds the dialogues from the
position_ids (`find_packed_sequence_indices`) and builds a block-diagonal causal mask
(`packed_sequence_mask_function`); it does so only without a 2D attention mask and without a
KV cache (a plain `model(...)` call uses the config's use_cache=True, so these tests pass
use_cache=False, as TRL's loss and the fused LM head do).

Tolerances (asserted; measured on the tiny Llama in fp32, 2-core CPU, a packed batch of one
row of ~1000 tokens, 7 dialogues): logits of a dialogue inside the packed row vs the dialogue
alone, atol 1e-5 (measured max 3.9e-7: the sdpa kernel with a materialized mask vs is_causal);
TRL's token-mean loss packed vs padded, rtol 1e-5 (measured equal to 8 digits, 10.83649063);
LoRA gradients rtol 1e-4 + atol 1e-7 (measured max difference 7.5e-9, largest gradient 4.3e-2).
Negative control: the same row without its position_ids (one causal sequence) moves the logits
of every dialogue after the first by >= 0.64, so the logits check can fail.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmlab.errors import UserError
from llmlab.runtime import Runtime
from llmlab.train import check_packing_attention, heldout_loss, run_train_lora, sft_config
from tests.test_train import FAST, demo_config, dialogues, outputs, trainer_for, write_dialogues

CPU = Runtime(device="cpu", precision="fp32", optim="adamw_torch", quantize=False)
# Dialogue ids as tuples: the key of a dialogue wherever packing put it.
Example = tuple[tuple[int, ...], tuple[int, ...]]


MAX_LENGTH = 512  # the demo preset's


def mixed_dialogues(n: int, seed: int) -> list[list[dict[str, str]]]:
    """The demo arithmetic dialogues (about 100-145 tokens), every third with a second exchange
    (up to about 280), and the first one longer than MAX_LENGTH: cut inside its second
    assistant turn, by packing as without it."""
    out = dialogues(n, seed)
    for i, turns in enumerate(out):
        if i % 3 == 1 or i == 0:
            repeats = 30 if i == 0 else 1 + i % 4
            turns += [
                {"role": "user", "content": "А теперь объясни подробно, как ты это посчитал?"},
                {"role": "assistant", "content": "Я сложил числа по одному. " * repeats},
            ]
    return out


def spec_for(packing: bool, **training: Any) -> Any:
    return demo_config(
        quantize=False, training={**FAST, "max_length": MAX_LENGTH, **training, "packing": packing}
    ).sft.variants["a"]


def split_batch(batch: dict[str, Any]) -> list[Example]:
    """(input_ids, labels) of every dialogue of a collated batch, padding removed.

    Padded batches: one dialogue per row, `attention_mask` marks the real tokens. Padding-free
    batches: one row; a dialogue starts where position_ids restart at 0.
    """
    out = []
    if "attention_mask" in batch:
        assert "position_ids" not in batch
        for ids, labels, mask in zip(
            batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
        ):
            real = mask.bool()
            out.append((tuple(ids[real].tolist()), tuple(labels[real].tolist())))
        return out
    assert batch["input_ids"].shape[0] == 1
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    ends = [*starts[1:], batch["input_ids"].shape[1]]
    for start, end in zip(starts, ends, strict=True):
        ids = batch["input_ids"][0, start:end].tolist()
        labels = batch["labels"][0, start:end].tolist()
        out.append((tuple(ids), tuple(labels)))
    return out


def loss_tokens(examples: list[Example]) -> Counter:
    """The multiset of (dialogue, position, token) that carry loss (labels != -100)."""
    return Counter(
        (ids, position, label)
        for ids, labels in examples
        for position, label in enumerate(labels)
        if label != -100
    )


# --------------------------------------------------------------------------- config


def test_packing_is_off_by_default_and_bfd_when_on() -> None:
    off = sft_config(demo_config().sft.variants["a"], CPU, Path("unused"))
    assert not off.packing and not off.padding_free
    args = sft_config(spec_for(packing=True), CPU, Path("unused"))
    assert args.packing and args.packing_strategy == "bfd" and args.assistant_only_loss
    # TRL turns padding-free on itself for bfd packing; the eval set stays one dialogue each.
    assert args.eval_packing is False


def test_packing_needs_an_attention_that_masks_packed_rows() -> None:
    model = SimpleNamespace(
        config=SimpleNamespace(get_text_config=lambda: SimpleNamespace(_attn_implementation="x"))
    )
    with pytest.raises(UserError, match=r"^sft\.variants\.a\.training\.packing: true, but .*'x'"):
        check_packing_attention(model, "sft.variants.a.training.packing")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- with a tiny model


@pytest.fixture(scope="module")
def pair(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Any]:
    """Packed and unpacked trainers on the same dialogues (the real build_trainer path)."""
    tmp = tmp_path_factory.mktemp("packing")
    conversations = mixed_dialogues(24, seed=5)
    trainers = {}
    for packing in (False, True):
        # Batch 2: a packed batch is one row of about 1000 tokens, 6-8 dialogues.
        spec = spec_for(packing, per_device_train_batch_size=2)
        trainer, _ = trainer_for(tiny_llama_dir, spec, CPU, conversations, 8, tmp / str(packing))
        trainers[packing] = trainer
    assert trainers[True].model.config._attn_implementation == "sdpa"
    return trainers


def batches(trainer: Any) -> list[dict[str, Any]]:
    return list(trainer.get_train_dataloader())


@pytest.mark.slow
def test_packed_batches_train_on_exactly_the_unpacked_tokens(pair: dict[bool, Any]) -> None:
    unpacked = [e for b in batches(pair[False]) for e in split_batch(b)]
    packed_batches = batches(pair[True])
    packed = [e for b in packed_batches for e in split_batch(b)]
    assert len(packed) == len(unpacked) == 24  # every dialogue once
    # The long one is cut at max_length in both, inside an assistant turn.
    cut = [e for e in packed if len(e[0]) == MAX_LENGTH]
    assert len(cut) == 1 and cut[0][1][-1] != -100
    # The same dialogues with the same labels, and so the same loss-carrying positions.
    assert Counter(packed) == Counter(unpacked)
    assert loss_tokens(packed) == loss_tokens(unpacked)
    assert sum(len(t) for t in loss_tokens(packed).elements()) > 0
    # Several dialogues per row, rows of at most max_length tokens, no padding at all.
    rows = [len(seq) for seq in pair[True].train_dataset["seq_lengths"]]
    assert max(rows) > 2 and len(rows) < 24
    assert all(sum(s) <= MAX_LENGTH for s in pair[True].train_dataset["seq_lengths"])
    real = sum(len(ids) for ids, _ in packed)
    assert sum(b["input_ids"].numel() for b in packed_batches) == real


def packed_row_and_padded_batch(pair: dict[bool, Any]) -> tuple[dict, dict, list[Example]]:
    """The first packed training batch, and the same dialogues as one padded batch."""
    import torch

    packed_batch = batches(pair[True])[0]
    examples = split_batch(packed_batch)
    assert len(examples) >= 4
    collate = pair[False].data_collator
    padded_batch = collate([{"input_ids": list(i), "labels": list(lab)} for i, lab in examples])
    device = pair[True].model.device
    move = lambda b: {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}  # noqa: E731
    return move(packed_batch), move(padded_batch), examples


@pytest.mark.slow
def test_no_dialogue_of_a_packed_row_sees_another(pair: dict[bool, Any]) -> None:
    """Logits of each dialogue inside a packed row equal those of the dialogue alone."""
    import torch

    packed_batch, padded_batch, examples = packed_row_and_padded_batch(pair)
    model = pair[True].model.eval()
    starts = (packed_batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    with torch.no_grad():
        row = model(
            input_ids=packed_batch["input_ids"],
            position_ids=packed_batch["position_ids"],
            use_cache=False,
        ).logits[0]
        # Negative control: the same row as one causal sequence attends across dialogues.
        crossed = model(input_ids=packed_batch["input_ids"], use_cache=False).logits[0]
        padded = model(
            input_ids=padded_batch["input_ids"],
            attention_mask=padded_batch["attention_mask"],
            use_cache=False,
        ).logits
        worst, control = 0.0, float("inf")
        for k, ((ids, _), start) in enumerate(zip(examples, starts, strict=True)):
            alone = model(input_ids=torch.tensor([ids], device=model.device), use_cache=False)
            alone = alone.logits[0]
            inside = row[start : start + len(ids)]
            torch.testing.assert_close(inside, alone, rtol=0, atol=1e-5)
            torch.testing.assert_close(padded[k, : len(ids)], alone, rtol=0, atol=1e-5)
            worst = max(worst, (inside - alone).abs().max().item())
            if k > 0:
                control = min(control, (crossed[start : start + len(ids)] - alone).abs().max())
    assert control > 0.1
    print(f"max |packed - alone| logit difference {worst:.2e}; one causal row: >= {control:.2f}")


@pytest.mark.slow
def test_packed_and_padded_batch_have_the_same_loss_and_gradients(pair: dict[bool, Any]) -> None:
    """TRL's own compute_loss (token mean over the labels) on one set of dialogues."""
    import torch

    packed_batch, padded_batch, _ = packed_row_and_padded_batch(pair)
    model = pair[True].model.train()  # LoRA dropout 0 in the demo preset: deterministic
    assert pair[True].args.gradient_accumulation_steps == 1
    results = {}
    for packing, batch in ((True, packed_batch), (False, padded_batch)):
        model.zero_grad()
        loss = pair[packing].compute_loss(model, dict(batch))
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results[packing] = (loss.detach(), grads)
    (loss_p, grads_p), (loss_u, grads_u) = results[True], results[False]
    torch.testing.assert_close(loss_p, loss_u, rtol=1e-5, atol=0)
    assert any(g.abs().max() > 0 for g in grads_u)
    for gp, gu in zip(grads_p, grads_u, strict=True):
        torch.testing.assert_close(gp, gu, rtol=1e-4, atol=1e-7)
    scale = max(g.abs().max().item() for g in grads_u)
    worst = max((gp - gu).abs().max().item() for gp, gu in zip(grads_p, grads_u, strict=True))
    print(
        f"loss packed {loss_p.item():.8f} padded {loss_u.item():.8f}; "
        f"max |grad difference| {worst:.2e} of max |grad| {scale:.2e}"
    )


@pytest.mark.slow
def test_heldout_loss_does_not_depend_on_packing(pair: dict[bool, Any]) -> None:
    """Eval batches of a packing run are padding-free rows; heldout_loss splits them."""
    eval_batch = next(iter(pair[True].get_eval_dataloader()))
    assert "position_ids" in eval_batch and "attention_mask" not in eval_batch
    packed, unpacked = heldout_loss(pair[True]), heldout_loss(pair[False])
    assert packed.tokens == unpacked.tokens > 0
    assert packed.loss == pytest.approx(unpacked.loss, rel=1e-6)


@pytest.mark.slow
def test_train_lora_runs_with_packing(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import json

    train = write_dialogues(tmp_path / "data" / "train.parquet", mixed_dialogues(24, seed=0))
    eval = write_dialogues(tmp_path / "data" / "eval.parquet", mixed_dialogues(6, seed=1))
    training = {**FAST, "max_steps": 2, "save_steps": 2, "eval_steps": None, "packing": True}
    cfg = demo_config(quantize=False, training=training)
    out = outputs(tmp_path)
    run_train_lora(cfg, "a", tiny_llama_dir, train, eval, **out)
    metrics = json.loads(out["metrics"].read_text())
    assert metrics["steps"] == 2 and metrics["training"]["packing"] is True
    assert metrics["eval_tokens"] > 0 and (out["adapter"] / "adapter_model.safetensors").exists()
