"""compare_generations: answer decoding, adapter switching, seeded decoding and the tables."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from llmlab.config import Config, read_params_file, resolve
from llmlab.errors import UserError
from llmlab.generate import (
    BASE,
    Answer,
    attach_adapters,
    compare_generations,
    decode_answer,
    generate_answers,
    run_compare_generations,
)
from llmlab.schemas import GENERATIONS_SCHEMA
from llmlab.sft_data.chat import END_OF_TURN

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
PROMPTS = ["Расскажи коротко, что такое лог регрессия?", "Сколько будет 2 плюс 3?", "Привет!"]


def demo_config(**generation: Any) -> Config:
    """The repo's demo config with `sft.generation` values overridden."""
    raw = copy.deepcopy(read_params_file(PARAMS))
    demo = raw["presets"].setdefault("demo", {}) or {}
    raw["presets"]["demo"] = demo
    demo.setdefault("sft", {}).setdefault("generation", {}).update(generation)
    return resolve(raw, "demo")


# --------------------------------------------------------------------------- inputs


def test_adapter_folders_must_be_variants(tmp_path: Path) -> None:
    cfg = demo_config()
    (tmp_path / "config.json").write_text("{}")  # the model folder is checked first
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "adapter_config.json").write_text("{}")
    out = tmp_path / "g.parquet"
    with pytest.raises(UserError, match="adapter folder name 'z' is not a key of sft.variants"):
        run_compare_generations(cfg, tmp_path, [tmp_path / "z"], out)
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError, match="not a LoRA adapter folder"):
        run_compare_generations(cfg, tmp_path, [tmp_path / "a"], out)
    assert not out.exists()


# --------------------------------------------------------------------------- with a tiny model


@pytest.fixture(scope="module")
def tiny_adapters(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two random (non-zero) LoRA adapters `a` and `b` of the tiny model, plus metrics."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmlab.sft_data.chat import load_tokenizer
    from llmlab.train import save_adapter

    root = tmp_path_factory.mktemp("adapters")
    tokenizer = load_tokenizer(tiny_llama_dir)
    for seed, variant in enumerate(("a", "b")):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        config = LoraConfig(
            r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        save_adapter(get_peft_model(base, config), tokenizer, root / variant)
        metrics = {"variant": variant, "eval_loss": 1.0 + seed, "perplexity": 2.7, "steps": 3}
        (root / f"{variant}.json").write_text(json.dumps(metrics))
    return root


@pytest.mark.slow
def test_decode_answer_stops_at_eos_or_end_of_turn(tiny_llama_dir: Path) -> None:
    from llmlab.sft_data.chat import load_tokenizer

    tok = load_tokenizer(tiny_llama_dir)
    ids = tok("Ответ: 5.", add_special_tokens=False)["input_ids"]
    eot = tok(END_OF_TURN + " хвост", add_special_tokens=False)["input_ids"]
    stop = {tok.eos_token_id}
    finished = Answer(text="Ответ: 5.", new_tokens=len(ids), finished=True)
    assert decode_answer(tok, [*ids, tok.eos_token_id, *ids], stop) == finished
    answer = decode_answer(tok, [*ids, *eot], stop)
    assert (answer.text, answer.finished) == ("Ответ: 5.", True)
    assert decode_answer(tok, ids, stop).finished is False


@pytest.mark.slow
def test_adapters_switch_on_one_base_and_decoding_is_seeded(
    tiny_llama_dir: Path, tiny_adapters: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmlab.sft_data.chat import load_tokenizer

    gen = demo_config(prompts=PROMPTS, max_new_tokens=6, batch_size=2, do_sample=True).sft
    gen = gen.generation
    tok = load_tokenizer(tiny_llama_dir)
    tok.padding_side = "left"
    adapters = {v: tiny_adapters / v for v in ("a", "b")}
    model = attach_adapters(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), adapters)
    df = compare_generations(model, tok, [BASE, "a", "b"], gen)
    assert df.height == 3 * len(PROMPTS)
    assert df.select("prompt_id", "system").is_unique().all()
    by = {s: df.filter(pl.col("system") == s)["answer"].to_list() for s in (BASE, "a", "b")}
    assert by["a"] != by[BASE] and by["b"] != by["a"]  # the adapters are really applied
    # Seeded: the same texts again, whatever ran before.
    assert compare_generations(model, tok, [BASE, "a", "b"], gen).equals(df)
    # Switching to `b` on the shared base equals a model that only ever had `b`.
    only_b = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir), adapters["b"]
    ).eval()
    assert [a.text for a in generate_answers(only_b, tok, PROMPTS, gen)] == by["b"]


@pytest.mark.slow
def test_run_compare_generations_writes_the_answers(
    tiny_llama_dir: Path, tiny_adapters: Path, tmp_path: Path
) -> None:
    from llmlab.io import write_parquet
    from llmlab.schemas import HELDOUT_ANSWERS, HELDOUT_LOSS

    cfg = demo_config(prompts=PROMPTS, max_new_tokens=4)
    out = tmp_path / "generations.parquet"

    def dialogues(pairs):
        return pl.DataFrame(
            {
                "messages": [
                    [{"content": q, "role": "user"}, {"content": a, "role": "assistant"}]
                    for q, a in pairs
                ]
            }
        )

    splits = {
        "train_a": [("Что такое LoRA?", "Адаптер.")],
        "eval_a": [("Что такое LoRA?", "Адаптер."), ("Сколько будет 2+2?", "4.")],
        "eval_b": [("Назови столицу Франции.", "Париж.")],
    }
    for name, pairs in splits.items():
        write_parquet(dialogues(pairs), tmp_path / f"{name}.parquet")
    run_compare_generations(
        cfg,
        tiny_llama_dir,
        [tiny_adapters / "b", tiny_adapters / "a"],  # any order: systems follow params.yaml
        out,
        train=[tmp_path / "train_a.parquet"],
        eval=[tmp_path / "eval_a.parquet", tmp_path / "eval_b.parquet"],
        heldout=tmp_path / "heldout.parquet",
    )
    df = pl.read_parquet(out)
    assert df.schema == pl.Schema(GENERATIONS_SCHEMA)
    assert df["system"].to_list()[:3] == [BASE, "a", "b"]
    assert df.height == 3 * len(PROMPTS)
    # The held-out prompts: eval first turns no variant trained on, answered by every system.
    held = pl.read_parquet(tmp_path / "heldout.parquet")
    assert held.columns == [*HELDOUT_ANSWERS, *HELDOUT_LOSS]
    assert set(held["prompt"]) == {"Сколько будет 2+2?", "Назови столицу Франции."}
    assert held.group_by("system").len().sort("system")["len"].to_list() == [2, 2, 2]
    assert set(held["reference"]) == {"4.", "Париж."}
    # Every system scored on the same reference tokens; the adapters change the loss.
    tokens = held.group_by("prompt_id").agg(pl.col("reference_tokens").n_unique())
    assert tokens["reference_tokens"].to_list() == [1, 1]
    nll = {s: tuple(r.sort("prompt_id")["reference_nll"]) for (s,), r in held.group_by("system")}
    assert len(set(nll.values())) == 3


def test_reference_losses_are_the_loss_of_the_answer_tokens(
    tiny_llama_dir: Path, tiny_adapters: Path
) -> None:
    """Each system's summed NLL of the reference answer given the prompt, over the tokens
    train_lora's loss scores (after the generation prompt: the answer, end of turn, eos),
    against a plain forward pass of a model that only ever had that adapter; batching and
    padding change nothing, and the patched LM head is gone afterwards."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmlab.generate import reference_losses
    from llmlab.sft_data.chat import load_tokenizer

    tok = load_tokenizer(tiny_llama_dir)
    tok.padding_side = "left"  # as compare_generations leaves it
    held = pl.DataFrame(
        {
            "prompt_id": [0, 1, 2],
            "prompt": PROMPTS,
            "reference": ["Логистическая регрессия — линейный классификатор.", "5.", "Привет."],
        }
    )
    adapters = {v: tiny_adapters / v for v in ("a", "b")}
    model = attach_adapters(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), adapters)
    got = reference_losses(model, tok, [BASE, "a", "b"], held, batch_size=2)
    assert "forward" not in vars(model.get_base_model())  # generation runs the plain forward
    assert got.columns == ["system", "prompt_id", "reference_nll", "reference_tokens"]
    one_by_one = reference_losses(model, tok, ["a"], held, batch_size=1)
    batched = got.filter(pl.col("system") == "a")
    assert one_by_one["reference_tokens"].equals(batched["reference_tokens"])
    assert one_by_one["reference_nll"].to_list() == pytest.approx(
        batched["reference_nll"].to_list(), rel=1e-5
    )

    def expected(one: torch.nn.Module) -> list[tuple[float, int]]:
        out = []
        for prompt, answer in zip(held["prompt"], held["reference"], strict=True):
            user = [{"role": "user", "content": prompt}]
            head = tok.apply_chat_template(
                user, tokenize=True, add_generation_prompt=True, return_dict=True
            )["input_ids"]
            dialogue = [*user, {"role": "assistant", "content": answer}]
            ids = tok.apply_chat_template(dialogue, tokenize=True, return_dict=True)["input_ids"]
            assert ids[: len(head)] == head
            with torch.no_grad():
                logits = one(input_ids=torch.tensor([ids])).logits[0]
            nll = torch.nn.functional.cross_entropy(
                logits[len(head) - 1 : -1], torch.tensor(ids[len(head) :]), reduction="sum"
            )
            out.append((nll.item(), len(ids) - len(head)))
        return out

    for system in (BASE, "a"):
        one = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        if system != BASE:
            one = PeftModel.from_pretrained(one, adapters[system]).eval()
        rows = got.filter(pl.col("system") == system).sort("prompt_id")
        want = expected(one)
        assert rows["reference_tokens"].to_list() == [n for _, n in want]
        assert rows["reference_nll"].to_list() == pytest.approx([x for x, _ in want], rel=1e-5)
    by_system = {s: r["reference_nll"].to_list() for (s,), r in got.group_by("system")}
    assert by_system["a"] != pytest.approx(by_system[BASE])  # the adapter is applied


@pytest.mark.slow
def test_vllm_serves_every_adapter_like_peft(
    tiny_llama_dir: Path, tiny_adapters: Path, tmp_path: Path
) -> None:
    """`sft.generation.backend: vllm` (vLLM's CPU build here): one engine serves the
    dequantized 4-bit base with a LoRARequest per QLoRA adapter; greedy answers equal those of
    transformers + peft on the 4-bit base itself (the model train_lora trained), on the same
    input tokens. The held-out reference losses (transformers forward passes on the weights
    vLLM serves) equal those on the 4-bit base."""
    pytest.importorskip("vllm")
    from llmlab.io import write_parquet

    cfg = demo_config(
        prompts=PROMPTS, max_new_tokens=4, do_sample=False, quantize=False, backend="vllm"
    )
    assert all(v.quantize for v in cfg.sft.variants.values()), "QLoRA variants"
    split = tmp_path / "eval.parquet"
    pairs = [("Сколько будет 2+2?", "4."), ("Назови столицу Франции.", "Столица Франции — Париж.")]
    write_parquet(
        pl.DataFrame(
            {
                "messages": [
                    [{"content": q, "role": "user"}, {"content": a, "role": "assistant"}]
                    for q, a in pairs
                ]
            }
        ),
        split,
    )
    out = tmp_path / "vllm.parquet"
    adapters = [tiny_adapters / "a", tiny_adapters / "b"]
    held = {"eval": [split], "heldout": tmp_path / "vllm_heldout.parquet"}
    run_compare_generations(cfg, tiny_llama_dir, adapters, out, **held)
    vllm = pl.read_parquet(out)
    assert vllm.schema == pl.Schema(GENERATIONS_SCHEMA)
    plain = tmp_path / "transformers.parquet"
    hf_cfg = demo_config(
        prompts=PROMPTS, max_new_tokens=4, do_sample=False, quantize=True, backend="transformers"
    )
    hf_held = {"eval": [split], "heldout": tmp_path / "hf_heldout.parquet"}
    run_compare_generations(hf_cfg, tiny_llama_dir, adapters, plain, **hf_held)
    key = ["system", "prompt_id"]
    losses = (
        pl.read_parquet(held["heldout"])
        .join(pl.read_parquet(hf_held["heldout"]), on=key, suffix="_hf")
        .select(
            *key, "reference_nll", "reference_nll_hf", "reference_tokens", "reference_tokens_hf"
        )
    )
    assert losses.height == 3 * len(pairs)
    assert (losses["reference_tokens"] == losses["reference_tokens_hf"]).all()
    assert losses["reference_nll"].to_list() == pytest.approx(
        losses["reference_nll_hf"].to_list(), rel=1e-4
    )
    hf = pl.read_parquet(plain)
    joined = vllm.join(hf, on=key, suffix="_hf")
    assert joined.height == 3 * len(PROMPTS)
    # A random tiny model has near-tied logits: count agreement, not equality of every row.
    agree = (joined["answer"] == joined["answer_hf"]).mean()
    assert agree >= 0.75, joined.select(*key, "answer", "answer_hf")
    # The adapters are applied: answers differ between systems somewhere.
    by_system = {s: tuple(r["answer"]) for (s,), r in vllm.group_by("system")}
    assert len(set(by_system.values())) > 1


@pytest.mark.slow
def test_the_dequantized_base_computes_what_the_4bit_base_computes(tiny_llama_dir: Path) -> None:
    """What vLLM serves for QLoRA adapters (it has no bitsandbytes): the NF4 weights,
    dequantized. Its logits equal the 4-bit model's, the model the adapters were trained on;
    the original folder's weights are another model (the quantization error)."""
    import torch

    from llmlab.generate import load_trained_base
    from llmlab.merge import load_base
    from llmlab.runtime import Runtime, load_base_model

    runtime = Runtime(device="cpu", precision="fp32", optim="", quantize=False)
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        nf4 = load_base(tiny_llama_dir, Runtime("cpu", "fp32", "", quantize=True))(ids).logits
        served = load_trained_base(tiny_llama_dir, runtime)
        assert not served.config.to_dict().get("quantization_config")
        dequantized = served(ids).logits
        original = load_base_model(tiny_llama_dir, runtime)(ids).logits
    assert (dequantized - nf4).abs().max() < 1e-4
    assert (original - nf4).abs().max() > 100 * (dequantized - nf4).abs().max()
