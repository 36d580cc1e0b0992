"""Every file contract between stages: the column schemas of the tables they pass on, the value
sets those columns hold, and the keys of the JSON files other stages read.

One definition serves the writer and every reader: the synthetic generators
(`llmlab.synthetic`) and the loaders (`llmlab.acquire`) of the raw datasets, so a synthetic
demo table and the real hub table are checked against the same thing; the split files; the
SFT dialogues; the predictions every evaluated system writes; the generations; the metrics of
train_lora.

Sources of the saiga facts: shared/data/SAIGA_SCHEMA.md (the dataset card's metadata and the
dataset author's public pipeline code).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from llmlab.errors import UserError

# ---------------------------------------------------------------------------------------
# IMDB (`scikit-learn/imdb`: the Kaggle "IMDB Dataset.csv")
# ---------------------------------------------------------------------------------------

IMDB_SCHEMA = pl.Schema({"review": pl.String, "sentiment": pl.String})

# Sorted, so code that enumerates labels (prompts, confusion matrices) has one fixed order.
SENTIMENTS: tuple[str, ...] = ("negative", "positive")

# split_imdb's train/test/val files: the raw columns plus the stable row id.
SPLIT_SCHEMA = pl.Schema({"review_id": pl.Int64, **IMDB_SCHEMA})

# The predictions table every evaluated system writes, LLM or baseline, whoever produced it.
# One row per (system, review). A *system* is one way of producing labels: a model with a
# prompt, shot count, few-shot strategy, backend and calibration, or a baseline. `eval_summary`
# reads these files only, so anything scored here is comparable with everything else.
PREDICTIONS_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.Utf8(),  # unique, human-readable id, e.g. "instruct_lm/system/5shot/balanced"
    "model": pl.Utf8(),  # key of `models`, or "tfidf" / "rnn"
    "prompt": pl.Utf8(),  # key of eval.prompts; "-" for baselines
    "shots": pl.Int64(),  # in-context examples; 0 for baselines
    "strategy": pl.Utf8(),  # few-shot strategy; "-" when shots == 0 or for baselines
    # few-shot draw (eval.fewshot.draws) of a fixed example set; 0 for baselines, zero-shot,
    # `similar` and the first draw (whose system ids carry no `/draw<d>` suffix)
    "draw": pl.Int64(),
    "backend": pl.Utf8(),  # "vllm", "transformers", "tfidf", "rnn"
    "calibration": pl.Utf8(),  # "none", "contextual", ...
    "review_id": pl.Int64(),  # row id of the review in data/raw/imdb.parquet
    "gold": pl.Utf8(),
    "prediction": pl.Utf8(),  # a label, or null when the output was not a label
    "valid": pl.Boolean(),  # prediction is one of the labels (never coerced)
    "raw_output": pl.Utf8(),  # what the engine produced, verbatim
    # log P(label) normalized over the labels, in eval.labels order (calibrated in calibrated
    # rows, whose prediction is their argmax; vLLM's uncalibrated prediction is its choice text)
    "label_scores": pl.List(pl.Float64()),
    "seconds": pl.Float64(),  # wall time attributed to this prompt (batch time / batch size)
    # the cleaned review's length in the model's tokens before truncation to eval.review_tokens
    # (it was cut when longer); null for baselines
    "review_tokens": pl.Int64(),
}

# ---------------------------------------------------------------------------------------
# saiga (`IlyaGusev/saiga_scored`)
# ---------------------------------------------------------------------------------------

# Field order matters: polars compares struct dtypes field by field, and the hub has
# (content, role).
MESSAGE_DTYPE = pl.Struct({"content": pl.String, "role": pl.String})

# Columns every revision has, in the hub's column order.
SAIGA_SCHEMA = pl.Schema(
    {
        "messages": pl.List(MESSAGE_DTYPE),
        "source": pl.String,
        "opus_score": pl.Int64,
        "language": pl.String,
        "turns": pl.Int64,
        "sonnet_topic": pl.String,
        "sonnet_topic_explanation": pl.String,
        "sonnet_complexity": pl.String,
        "sonnet_complexity_explanation": pl.String,
        "is_bad_by_regex": pl.Boolean,
    }
)

# Columns only later revisions have. `llmlab.acquire` adds them as all-null when a source
# lacks them, so `data/raw/saiga.parquet` always has SAIGA_FULL_SCHEMA; code reading other
# saiga tables should still check with SAIGA_SCHEMA and treat these as optional.
SAIGA_OPTIONAL_SCHEMA = pl.Schema({"score_explanation": pl.String})

SAIGA_FULL_SCHEMA = pl.Schema({**SAIGA_SCHEMA, **SAIGA_OPTIONAL_SCHEMA})

# The dialogues of rename_roles and format_chat (and train_lora's train/eval files): the
# `messages` column, whatever else a file carries.
MESSAGES_SCHEMA = pl.Schema({"messages": pl.List(MESSAGE_DTYPE)})

SAIGA_ROLES: tuple[str, ...] = ("system", "user", "bot")
SAIGA_LANGUAGES: tuple[str, ...] = ("Russian", "English", "Ukrainian", "Mixed")
SAIGA_COMPLEXITIES: tuple[str, ...] = ("easy", "medium", "hard")
OPUS_SCORE_RANGE: tuple[int, int] = (1, 10)  # inclusive

# The judge's 24 topic labels. Off-list values occur rarely in the real data, so loaders
# must not reject them; analytics should group them as "off-list".
SAIGA_TOPICS: tuple[str, ...] = (
    "facts",
    "writing",
    "extract",
    "translation",
    "languages",
    "coding",
    "math",
    "stem",
    "humanities",
    "psychology",
    "finance",
    "travel",
    "entertainment",
    "ecology",
    "cooking",
    "health",
    "law",
    "career",
    "reasoning",
    "brainstorm",
    "roleplay",
    "inappropriate",
    "chit_chat",
    "other",
)

# Phrases that set `is_bad_by_regex`: the flag is true when the lowercased content of any
# bot message contains one of them as a substring (the dataset author's rule). The real list
# has about 120 entries (Russian "as an AI" self-references, refusals and knowledge-cutoff
# excuses); this is a representative subset written for the project, lowercase.
BAD_PHRASES: tuple[str, ...] = (
    # Russian self-references
    "как ии",
    "как ai",
    "как искусственный интеллект",
    "как языковая модель",
    "как нейросеть",
    "я искусственный интеллект",
    "я — искусственный интеллект",
    "я - искусственный интеллект",
    "я являюсь искусственным интеллектом",
    "я языковая модель",
    "я всего лишь программа",
    "я виртуальный помощник",
    "в качестве ии",
    # Russian refusals and evasions
    "не могу выполнить",
    "извините, но я",
    "извини, но я",
    "не могу обсуждать",
    "не могу продолжать",
    "противоречит политике",
    "давайте обсудим что-нибудь другое",
    # Russian knowledge-cutoff excuses
    "на момент моего последнего обновления",
    "моя информация ограничена",
    # Ukrainian
    "як ші",
    "я штучний інтелект",
    "вибачте, але я",
    "не можу виконати",
    # English
    "openai",
    "chatgpt",
    "as an ai",
    "as a language model",
    "i'm just an ai",
    "sorry",
)


def contains_bad_phrase(text: str, phrases: Iterable[str] = BAD_PHRASES) -> bool:
    """True if `text`, lowercased, contains one of `phrases` (the is_bad_by_regex rule)."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in phrases)


# ---------------------------------------------------------------------------------------
# SFT: generations and train_lora metrics
# ---------------------------------------------------------------------------------------

# compare_generations' parquet: one row per (prompt, system).
# The `system` of results/sft/generations.parquet rows of the model without an adapter.
BASE_SYSTEM = "base"
GENERATIONS_SCHEMA = {
    "prompt_id": pl.Int64,
    "prompt": pl.String,
    "system": pl.String,
    "answer": pl.String,
    "new_tokens": pl.Int64,
    "finished": pl.Boolean,  # stopped by eos / end of turn, not by max_new_tokens
}

# compare_generations' held-out answers: GENERATIONS_SCHEMA's columns plus the reference
# answer of the held-out dialogue (llmlab.sft_eval reads them).
HELDOUT_ANSWERS: tuple[str, ...] = (
    "prompt_id",
    "prompt",
    "reference",
    "system",
    "answer",
    "new_tokens",
    "finished",
)
# ...and the loss of the reference answer under each system, per (system, prompt): summed
# negative log-likelihood (nats) of its assistant tokens given the prompt, and their number.
HELDOUT_LOSS: tuple[str, ...] = ("reference_nll", "reference_tokens")

# Keys every train_lora metrics.json has (it holds more: see llmlab.train.run_train_lora).
TRAIN_METRICS_KEYS: tuple[str, ...] = ("variant", "eval_loss", "perplexity")


def load_train_metrics(path: Path) -> dict[str, Any]:
    """A train_lora metrics.json (for compare_generations and the report)."""
    if not path.is_file():
        raise UserError(f"{path}: metrics file does not exist (run train_lora first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    missing = [k for k in TRAIN_METRICS_KEYS if k not in data]
    if missing:
        raise UserError(f"{path}: not a train_lora metrics file (missing {', '.join(missing)})")
    return data
