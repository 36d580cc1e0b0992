"""merge_adapter: the merged export equals base + adapter, loads without peft (transformers,
vLLM), and bad inputs or failed checks write nothing.

Tolerances (llmlab.merge): float32 exports max |logit diff| <= 1e-3 against the base with the
adapter attached (measured: ~5e-7 on the tiny model, ~1e-4 on the demo model SmolLM2-135M);
bfloat16/float16: top-1 agreement >= 0.9, and in every dtype each merged weight within one
unit in the last place of W + scaling * B @ A.
"""

from __future__ import annotations

import copy
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from llmlab.config import Config, read_params_file, resolve
from llmlab.errors import UserError
from llmlab.merge import FP32_MAX_LOGIT_DIFF, MergeCheckError, export_precision, run_merge_adapter
from llmlab.schemas import MESSAGE_DTYPE

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors"}


def demo_config(**merge: Any) -> Config:
    """The repo's demo config with `sft.merge` values overridden."""
    raw = copy.deepcopy(read_params_file(PARAMS))
    demo = raw["presets"].setdefault("demo", {}) or {}
    raw["presets"]["demo"] = demo
    demo.setdefault("sft", {}).setdefault("merge", {}).update(merge)
    return resolve(raw, "demo")


def write_dialogues(path: Path, n: int = 3) -> Path:
    """Held-out dialogues in format_chat's layout (`messages`)."""
    rows = [
        [
            {"role": "user", "content": f"Сколько будет {i} плюс {i + 2}?"},
            {"role": "assistant", "content": f"{i} плюс {i + 2} равно {2 * i + 2}."},
        ]
        for i in range(n)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame([pl.Series("messages", rows, dtype=pl.List(MESSAGE_DTYPE))]).write_parquet(path)
    return path


def outputs(root: Path) -> dict[str, Path]:
    return {"merged": root / "merged" / "a", "metrics": root / "sft" / "a" / "merge.json"}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- without weights


def test_export_dtype_follows_the_device() -> None:
    assert export_precision("auto", "cpu") == "fp32"
    assert export_precision("bfloat16", "cpu") == "bf16"
    assert export_precision("float16", "cuda") == "fp16"
    with pytest.raises(UserError, match="sft.merge.dtype: float16 needs a CUDA GPU"):
        export_precision("float16", "cpu")


def test_a_folder_without_an_adapter_is_refused(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    (tmp_path / "adapter").mkdir()
    out = outputs(tmp_path)
    with pytest.raises(UserError, match="not a LoRA adapter folder"):
        run_merge_adapter(
            demo_config(),
            "a",
            model_dir=tmp_path / "base",
            adapter=tmp_path / "adapter",
            eval=tmp_path / "eval.parquet",
            **out,
        )
    assert not out["merged"].parent.exists() and not out["metrics"].exists()


def fake_adapter(folder: Path, base: Path | str, shapes: dict[str, tuple[int, int]]) -> Path:
    """An adapter folder whose safetensors holds zero LoRA tensors of the given shapes."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "base_model_name_or_path": str(base), "r": 4}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    tensors = {f"base_model.model.{k}.weight": torch.zeros(v) for k, v in shapes.items()}
    save_file(tensors, folder / "adapter_model.safetensors")
    return folder


def lora(module: str, rank: int, n_in: int, n_out: int) -> dict[str, tuple[int, int]]:
    return {f"{module}.lora_A": (rank, n_in), f"{module}.lora_B": (n_out, rank)}


@pytest.mark.parametrize(
    ("recorded", "shapes", "message"),
    [
        (
            None,
            lora("model.layers.0.self_attn.q_proj", 4, 32, 64),
            r"model.layers.0.self_attn.q_proj is 32 -> 64 in the adapter but 64 -> 64 in .*: "
            "the adapter was trained on another model",
        ),
        (
            None,
            lora("model.layers.7.mlp.up_proj", 4, 64, 128),
            r"adapts model.layers.7.mlp.up_proj, which the base model .* does not have",
        ),
        (
            "/elsewhere/other_model",
            lora("model.layers.0.mlp.up_proj", 4, 64, 128),
            r"trained on the base model '/elsewhere/other_model', not",
        ),
    ],
    ids=["shapes", "layers", "name"],
)
def test_an_adapter_of_another_base_is_refused_before_loading_weights(
    tmp_path: Path, recorded: str | None, shapes: dict[str, tuple[int, int]], message: str
) -> None:
    """The checks read only config.json and the safetensors header: no base weights exist."""
    from transformers import LlamaConfig

    base = tmp_path / "base"
    LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    ).save_pretrained(base)
    adapter = fake_adapter(tmp_path / "adapter", recorded or base, shapes)
    out = outputs(tmp_path)
    with pytest.raises(UserError, match=message):
        run_merge_adapter(
            demo_config(), "a", model_dir=base, adapter=adapter, eval=tmp_path / "e.parquet", **out
        )
    assert not out["merged"].parent.exists() and not out["metrics"].exists()


# --------------------------------------------------------------------------- with a tiny model


def random_adapter(base_dir: Path, out: Path, *, r: int, scale: float, seed: int = 1) -> Path:
    """A LoRA adapter on all seven projections with random (non-zero) B, saved as train_lora
    saves it (peft layout, tokenizer, the project's chat template)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmlab.sft_data.chat import load_tokenizer
    from llmlab.train import save_adapter

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=r, target_modules=PROJECTIONS, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data = torch.randn(param.shape, generator=generator) * scale
    save_adapter(model, load_tokenizer(base_dir), out)
    return out


@pytest.fixture(scope="module")
def tiny_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_adapter(tiny_llama_dir, tmp_path_factory.mktemp("adapter") / "a", r=4, scale=0.05)


def peft_logits(base_dir: Path, adapter: Path, ids: Any, *, quantized: bool) -> Any:
    """Logits of the float32 base (4-bit NF4 if `quantized`, as train_lora loads it) with the
    adapter attached, unmerged, computed here."""
    import torch
    from peft import PeftModel

    from llmlab.runtime import Runtime, keep_4bit_layout_trainable, load_base_model

    runtime = Runtime(device="cpu", precision="fp32", optim="", quantize=quantized)
    base = load_base_model(base_dir, runtime)
    keep_4bit_layout_trainable(base)  # the layout train_lora computes with
    model = PeftModel.from_pretrained(base, adapter).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.slow
@pytest.mark.parametrize("base", ["original", "trained"])
def test_merged_folder_is_base_plus_adapter_without_peft(
    tiny_llama_dir: Path, tiny_adapter: Path, tmp_path: Path, base: str
) -> None:
    """Demo variant a is QLoRA: `trained` merges into the dequantized 4-bit base and is
    checked against the 4-bit base + adapter, `original` into the folder's own weights."""
    import torch
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmlab.sft_data.chat import load_chat_template

    out = outputs(tmp_path)
    eval = write_dialogues(tmp_path / "eval.parquet")
    cfg = demo_config(base=base)
    run_merge_adapter(cfg, "a", model_dir=tiny_llama_dir, adapter=tiny_adapter, eval=eval, **out)
    merged, report = out["merged"], json.loads(out["metrics"].read_text())

    # A plain, self-contained Hugging Face folder.
    files = {p.name for p in merged.iterdir()}
    assert not files & ADAPTER_FILES
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= files
    config = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert AutoTokenizer.from_pretrained(merged).chat_template == load_chat_template()
    assert leftovers(merged.parent) == ["a"]  # no temporary folder left beside it

    # The stage's own checks, and the numbers the report reads.
    assert report["dtype"] == "float32" and report["check_dialogues"] == 2  # demo preset
    assert report["base"] == ("4-bit NF4, dequantized" if base == "trained" else "full precision")
    assert report["logits"]["tolerance"]["max_abs_diff"] == FP32_MAX_LOGIT_DIFF
    assert report["logits"]["max_abs_diff"] <= 1e-5 and report["logits"]["top1_agreement"] == 1
    assert report["adapter_effect"]["max_abs_diff"] > 0.1  # the check is not trivial
    assert report["weights"]["lora_layers"] == 2 * len(PROJECTIONS)
    assert report["weights"]["max_error_ulp"] == 0  # float32: bitwise W + delta
    assert report["weights"]["delta_rounding_error"] == 0
    other = "full precision" if base == "trained" else "4-bit NF4"
    assert report["quantization"]["other_base"] == other
    assert report["quantization"]["max_abs_diff"] > report["logits"]["max_abs_diff"]
    assert all(report["nll"][k] > 0 for k in ("base", "base_adapter", "merged"))
    assert report["size_bytes"] > 0 and report["parameters"] > 0

    # Independently: transformers alone loads it, with logits of base + adapter.
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    ids = torch.tensor([[1, 504, 2310, 28, 431, 9, 2]])
    with torch.no_grad():
        got = model(input_ids=ids).logits
    expected = peft_logits(tiny_llama_dir, tiny_adapter, ids, quantized=base == "trained")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

    # ... in a process where peft cannot even be imported.
    code = (
        "import sys; sys.modules['peft'] = None\n"
        "from transformers import AutoModelForCausalLM\n"
        f"AutoModelForCausalLM.from_pretrained({str(merged)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_bfloat16_export_passes_its_checks(
    tiny_llama_dir: Path, tiny_adapter: Path, tmp_path: Path
) -> None:
    """The half-precision path a GPU run takes (auto is bfloat16 there), on the CPU."""
    out = outputs(tmp_path)
    eval = write_dialogues(tmp_path / "eval.parquet")
    cfg = demo_config(dtype="bfloat16")
    run_merge_adapter(cfg, "a", model_dir=tiny_llama_dir, adapter=tiny_adapter, eval=eval, **out)
    report = json.loads(out["metrics"].read_text())
    config = json.loads((out["merged"] / "config.json").read_text())
    assert report["dtype"] == config["dtype"] == "bfloat16"
    assert report["logits"]["tolerance"] == {"max_abs_diff": None, "min_top1_agreement": 0.9}
    assert report["logits"]["top1_agreement"] >= 0.9
    assert report["weights"]["max_error_ulp"] <= 1.0
    # bf16 keeps 8 bits: part of a small delta is lost to the rounding (and reported).
    assert 1e-4 < report["weights"]["delta_rounding_error"] < 1.0


@pytest.mark.slow
def test_a_failed_check_writes_nothing(
    tiny_llama_dir: Path, tiny_adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that fails after the folder was saved (here: a zero tolerance) leaves neither
    the folder nor merge.json, and no temporary folder beside them."""
    monkeypatch.setattr("llmlab.merge.FP32_MAX_LOGIT_DIFF", 0.0)
    out = outputs(tmp_path)
    eval = write_dialogues(tmp_path / "eval.parquet")
    with pytest.raises(MergeCheckError, match=r"logits differ from base \+ adapter by up to"):
        run_merge_adapter(
            demo_config(), "a", model_dir=tiny_llama_dir, adapter=tiny_adapter, eval=eval, **out
        )
    assert leftovers(out["merged"].parent) == [] and not out["metrics"].exists()


# --------------------------------------------------------------------------- the demo model


@pytest.mark.slow
def test_demo_model_merge_matches_and_loads_in_vllm(
    smollm2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's base (SmolLM2-135M) with a demo-sized adapter (r 16, all projections):
    float32 logits within 1e-3 of base + adapter (measured ~1e-4), and vLLM's CPU build loads
    the folder and greedy-decodes the same tokens as transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = random_adapter(smollm2_dir, tmp_path / "adapter" / "a", r=16, scale=0.01)
    out = outputs(tmp_path)
    eval = write_dialogues(tmp_path / "eval.parquet", n=4)
    run_merge_adapter(demo_config(), "a", model_dir=smollm2_dir, adapter=adapter, eval=eval, **out)
    report = json.loads(out["metrics"].read_text())
    assert report["logits"]["max_abs_diff"] <= FP32_MAX_LOGIT_DIFF
    assert report["logits"]["top1_agreement"] == 1.0
    assert report["adapter_effect"]["max_abs_diff"] > 100 * report["logits"]["max_abs_diff"]

    vllm = pytest.importorskip("vllm")
    merged = out["merged"]
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in ("Сколько будет 2 плюс 3?", "Назови столицу Франции.", "Привет!")
    ]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    expected = []
    with torch.no_grad():
        for row in ids:
            gen = model.generate(
                torch.tensor([row]),
                max_new_tokens=8,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
            expected.append(gen[0, len(row) :].tolist())
    del model

    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")  # as llmlab.eval.backends
    llm = vllm.LLM(
        model=str(merged),
        dtype="float32",
        max_model_len=512,
        enforce_eager=True,
        kv_cache_memory_bytes=256 << 20,
        seed=0,
    )
    assert llm.get_tokenizer().chat_template == tokenizer.chat_template
    params = vllm.SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    results = llm.generate([{"prompt_token_ids": row} for row in ids], params, use_tqdm=False)
    got = [list(r.outputs[0].token_ids) for r in results]
    del llm  # the engine process ends here, not at interpreter exit
    gc.collect()
    # transformers stops at eos; compare the tokens both produced.
    assert all(expected) and [g[: len(e)] for g, e in zip(got, expected, strict=True)] == expected
