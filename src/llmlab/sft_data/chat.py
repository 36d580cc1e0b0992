"""The project's chat template, the SFT tokenizer, role renaming and chat formatting.

The template (src/llmlab/chat_template.jinja) is llama-3 style, but its markers
(`<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>`) are plain text for the base model's
tokenizer: they are not added as special tokens, because LoRA keeps the embedding matrix
frozen and new rows would stay random. Each assistant turn ends with `<|eot_id|>` followed by
the tokenizer's own eos token, all inside `{% generation %}`: TRL's `assistant_only_loss`
then trains exactly the assistant content, `<|eot_id|>` and eos (see `expected_trained_text`),
and generation stops on eos like any model.

transformers is imported inside the functions that need it, so the filter's cheap steps and
the tests of plain data functions do not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from llmlab.errors import UserError
from llmlab.io import read_json
from llmlab.schemas import MESSAGE_DTYPE

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

TEMPLATE_RESOURCE = "chat_template.jinja"
# Files of the package this module reads: stages that import it depend on them (llmlab.stages).
PACKAGE_DATA = ("chat_template.jinja",)
END_OF_TURN = "<|eot_id|>"
TRAINING_ROLES: tuple[str, ...] = ("system", "user", "assistant")
# Texts per call of the Rust tokenizer: large enough to amortise the call, small enough to
# show progress and bound memory.
TOKENIZE_BATCH = 2048

Conversation = list[dict[str, str]]


# --------------------------------------------------------------------------- template


def load_chat_template() -> str:
    """The project's chat template (Jinja source), read from the installed package."""
    return resources.files("llmlab").joinpath(TEMPLATE_RESOURCE).read_text(encoding="utf-8")


def apply_chat_template_to(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Set the project's chat template on `tokenizer` (in place; returned for chaining).

    No token is added to the vocabulary. The tokenizer must have an eos token: it ends every
    assistant turn, which is how generation stops.
    """
    if not tokenizer.eos_token:
        raise UserError(
            f"{getattr(tokenizer, 'name_or_path', 'tokenizer')}: the tokenizer has no eos token; "
            "the chat template ends assistant turns with it"
        )
    tokenizer.chat_template = load_chat_template()
    return tokenizer


# tokenizer_config.json classes that are tokenizer.json as it is, with no class-specific code.
GENERIC_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})


def declared_tokenizer_class(model_dir: Path) -> str | None:
    """The `tokenizer_class` of a model folder's tokenizer_config.json, if it names one."""
    try:
        config = read_json(model_dir / "tokenizer_config.json")
    except (OSError, ValueError):
        return None  # AutoTokenizer reports a missing or broken config better
    name = config.get("tokenizer_class") if isinstance(config, dict) else None
    return name if isinstance(name, str) else None


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    """Load the (fast) tokenizer of a model folder, with the project's chat template set."""
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: tokenizer folder does not exist (run prepare_model first)")
    # AutoTokenizer imports torch and scikit-learn through transformers' model registry
    # (~5 s, per stage); for a generic tokenizer the class it would pick is known without it.
    loader: Any
    if declared_tokenizer_class(model_dir) in GENERIC_TOKENIZER_CLASSES:
        from transformers import PreTrainedTokenizerFast as loader
    else:
        from transformers import AutoTokenizer as loader
    try:
        tokenizer = loader.from_pretrained(model_dir)
    except (OSError, ValueError) as err:
        raise UserError(
            f"{model_dir}: cannot load a tokenizer ({' '.join(str(err).split())})"
        ) from None
    if not tokenizer.is_fast:
        # Offsets (assistant masks) and batch speed both need the Rust tokenizer.
        raise UserError(f"{model_dir}: a fast tokenizer (tokenizer.json) is required")
    return apply_chat_template_to(tokenizer)


def expected_trained_text(conversation: Conversation, eos_token: str) -> str:
    """What assistant-only loss must train on: each assistant content, `<|eot_id|>` and eos."""
    return "".join(
        m["content"].strip() + END_OF_TURN + eos_token
        for m in conversation
        if m["role"] == "assistant"
    )


# --------------------------------------------------------------------------- tokens


@contextlib.contextmanager
def tokenizer_threads() -> Iterator[None]:
    """Let the Rust tokenizer encode a batch on every core, for the duration of the block.

    The CLI sets TOKENIZERS_PARALLELISM=false for every stage, because a process that forks
    after the tokenizer used its thread pool (DataLoader workers) warns and may deadlock.
    The SFT data stages never fork, and batch encoding is their hot loop.
    """
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def count_tokens(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], desc: str = "tokenizing"
) -> np.ndarray:
    """Number of tokens of each text (no special tokens added), in batches of the Rust tokenizer.

    Texts are treated like rendered chat text: special tokens written in them (the template's
    bos/eos) count as one token each, as in `apply_chat_template(tokenize=True)`.
    """
    backend = tokenizer.backend_tokenizer
    # Each distinct text is encoded once: chat data repeats replies (refusals, greetings) and
    # encoding is the whole cost of this function.
    position: dict[str, int] = {}
    inverse = np.fromiter(
        (position.setdefault(t, len(position)) for t in texts), dtype=np.int64, count=len(texts)
    )
    distinct = list(position)
    counts = np.empty(len(distinct), dtype=np.int64)
    starts = range(0, len(distinct), TOKENIZE_BATCH)
    for start in tqdm(starts, desc=desc, unit="batch", mininterval=5, disable=len(starts) < 4):
        batch = distinct[start : start + TOKENIZE_BATCH]
        # encode_batch_fast skips offset tracking, which counting does not need.
        with tokenizer_threads():
            encodings = backend.encode_batch_fast(batch, add_special_tokens=False)
        counts[start : start + len(batch)] = [len(e) for e in encodings]
    return counts[inverse]


def to_conversations(messages: pl.Series) -> list[Conversation]:
    """A `messages` column as plain lists of {"role", "content"} dicts (chat-template input)."""
    return [
        [{"role": m["role"], "content": m["content"]} for m in dialogue] for dialogue in messages
    ]


def render_chats(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation]
) -> list[str]:
    """Render whole dialogues (ending with an assistant turn) with the tokenizer's template."""
    if not conversations:
        return []
    return tokenizer.apply_chat_template(list(conversations), tokenize=False)


def formatted_token_counts(
    tokenizer: PreTrainedTokenizerBase, messages: pl.Series, role_map: Mapping[str, str]
) -> np.ndarray:
    """Tokens of each dialogue as it will be trained: roles renamed, rendered, tokenized.

    Roles outside `role_map` are kept as they are (the template rejects them), so call this on
    well-formed dialogues only.
    """
    renamed = messages.list.eval(
        pl.element().struct.with_fields(
            pl.field("role").replace(dict(role_map))  # unknown roles stay, see docstring
        )
    )
    return count_tokens(tokenizer, render_chats(tokenizer, to_conversations(renamed)))


# --------------------------------------------------------------------------- roles


def rename_roles(df: pl.DataFrame, role_map: Mapping[str, str]) -> pl.DataFrame:
    """Map every message's role through `role_map`; raise UserError on an unmapped role.

    The error names the first offending row (0-based index in `df`) and role.
    """
    roles = pl.col("messages").list.eval(pl.element().struct.field("role"))
    unmapped = (
        df.select(roles.alias("roles"))
        .with_row_index("row")
        .explode("roles")
        .filter(~pl.col("roles").is_in(list(role_map)) | pl.col("roles").is_null())
    )
    if unmapped.height:
        row, role = unmapped.row(0)
        raise UserError(
            f"row {row}: role {role!r} is not a key of sft_data.role_map "
            f"({', '.join(role_map)}); {unmapped.height} message(s) affected"
        )
    return df.with_columns(
        pl.col("messages").list.eval(
            pl.element().struct.with_fields(pl.field("role").replace_strict(dict(role_map)))
        )
    )


def dialogue_problems(df: pl.DataFrame) -> pl.DataFrame:
    """One row per invalid dialogue: `row` (0-based) and `problem`, in row order.

    A valid training dialogue: roles in system/user/assistant, an optional system message
    first, then user and assistant alternating from user, ending with assistant, and no empty
    message.
    """
    msgs = pl.col("messages")
    roles = msgs.list.eval(pl.element().struct.field("role"))
    rest = pl.col("_roles").list.slice(pl.col("_has_system").cast(pl.Int64))
    expected = (
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("user")).otherwise(pl.lit("assistant"))
    )
    checks = df.select(
        roles.alias("_roles"),
        (roles.list.first() == "system").fill_null(False).alias("_has_system"),
        msgs.list.eval(pl.element().struct.field("content").str.strip_chars().str.len_chars() == 0)
        .list.any()
        .alias("_empty"),
        msgs.list.eval(pl.element().struct.field("content").is_null()).list.any().alias("_null"),
    ).with_columns(rest.alias("_rest"))
    bad_role = pl.col("_roles").list.eval(~pl.element().is_in(TRAINING_ROLES)).list.any()
    first_bad_role = (
        pl.col("_roles")
        .list.eval(pl.element().filter(~pl.element().is_in(TRAINING_ROLES)))
        .list.first()
    )
    alternates = pl.col("_rest").list.eval(pl.element() == expected).list.all()
    problem = (
        pl.when(pl.col("_roles").list.len().fill_null(0) == 0)
        .then(pl.lit("no messages"))
        .when(bad_role.fill_null(True))
        .then(
            pl.lit("role ")
            + first_bad_role.fill_null("null")
            + pl.lit(" is not one of system, user, assistant")
        )
        .when(pl.col("_rest").list.eval(pl.element() == "system").list.any())
        .then(pl.lit("a system message that is not the first message"))
        .when(pl.col("_rest").list.len() == 0)
        .then(pl.lit("no user or assistant message"))
        .when(~alternates)
        .then(pl.lit("user and assistant do not alternate starting with user"))
        .when(pl.col("_roles").list.last() != "assistant")
        .then(pl.lit("the last message is not from the assistant"))
        .when(pl.col("_null") | pl.col("_empty"))
        .then(pl.lit("an empty message"))
    )
    return (
        checks.select(problem.alias("problem"))
        .with_row_index("row")
        .filter(pl.col("problem").is_not_null())
    )


def validate_dialogues(df: pl.DataFrame, where: str) -> None:
    """Raise UserError naming the first invalid dialogue (see `dialogue_problems`)."""
    problems = dialogue_problems(df)
    if problems.height:
        row, problem = problems.row(0)
        more = f" ({problems.height - 1} more invalid rows)" if problems.height > 1 else ""
        raise UserError(f"{where}: row {row}: {problem}{more}")


# --------------------------------------------------------------------------- formatting


@dataclass
class ChatTokenization:
    """How TRL will tokenize each dialogue, and where that departs from the intent."""

    num_tokens: list[int]
    # (row, expected, got): the assistant mask does not decode to `expected_trained_text`.
    mask_mismatches: list[tuple[int, str, str]]
    # rows whose generation prompt is not a token prefix of the whole dialogue.
    prompt_mismatches: list[int]


def tokenize_chats(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation]
) -> ChatTokenization:
    """Tokenize dialogues exactly as TRL's SFTTrainer(assistant_only_loss=True) does and check.

    The mask comes from `apply_chat_template(..., return_assistant_tokens_mask=True)`, TRL's
    own call: a token straddling the edge of a `{% generation %}` block (the tokenizer merges
    across it) makes the decoded mask differ from `expected_trained_text`. The generation
    prompt (every message before the last, with `add_generation_prompt`) must tokenize to a
    prefix of the dialogue, or inference would see other tokens than training.
    """
    result = ChatTokenization([], [], [])
    starts = range(0, len(conversations), TOKENIZE_BATCH)
    for start in tqdm(starts, desc="checking masks", unit="batch", disable=len(starts) < 4):
        batch = list(conversations[start : start + TOKENIZE_BATCH])
        with tokenizer_threads():
            full = tokenizer.apply_chat_template(
                batch, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            prompts = tokenizer.apply_chat_template(
                [c[:-1] for c in batch], tokenize=True, return_dict=True, add_generation_prompt=True
            )["input_ids"]
        rows = zip(full["input_ids"], full["assistant_masks"], prompts, strict=True)
        for i, (ids, mask, prompt) in enumerate(rows):
            result.num_tokens.append(len(ids))
            got = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
            expected = expected_trained_text(batch[i], tokenizer.eos_token)
            if got != expected:
                result.mask_mismatches.append((start + i, expected, got))
            if ids[: len(prompt)] != prompt:
                result.prompt_mismatches.append(start + i)
    return result


def format_chats(
    df: pl.DataFrame, tokenizer: PreTrainedTokenizerBase
) -> tuple[pl.DataFrame, ChatTokenization]:
    """`messages`, the rendered `text` and its `num_tokens` per (validated) dialogue.

    Also returns the tokenization check (see `tokenize_chats`); `num_tokens` comes from it,
    so it is the length TRL trains on.
    """
    conversations = to_conversations(df["messages"])
    check = tokenize_chats(tokenizer, conversations)
    formatted = pl.DataFrame(
        {
            "messages": df["messages"].cast(pl.List(MESSAGE_DTYPE)),
            "text": pl.Series(render_chats(tokenizer, conversations), dtype=pl.String),
            "num_tokens": pl.Series(check.num_tokens, dtype=pl.Int64),
        }
    )
    return formatted, check


def split_train_eval(
    df: pl.DataFrame, eval_fraction: float, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Seeded random train/eval split; both parts keep the input's row order.

    The eval part has round(eval_fraction * rows) rows, at least one, and the train part
    at least one too.
    """
    if df.height < 2:
        raise UserError(f"cannot split {df.height} dialogue(s) into train and eval parts")
    n_eval = min(max(1, round(eval_fraction * df.height)), df.height - 1)
    rng = np.random.Generator(np.random.PCG64(seed))
    is_eval = np.zeros(df.height, dtype=bool)
    is_eval[rng.permutation(df.height)[:n_eval]] = True
    mask = pl.Series("is_eval", is_eval)
    return df.filter(~mask), df.filter(mask)


def describe_template(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """A short, JSON-able description of how the template renders (for logs)."""
    sample = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    return {
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "rendered_example": tokenizer.apply_chat_template(sample, tokenize=False),
    }
