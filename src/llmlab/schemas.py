"""The two raw datasets as tables: column schemas and the value sets their columns hold.

One definition serves the synthetic generators (`llmlab.synthetic`), the loaders
(`llmlab.acquire`) and the stages that read `data/raw/*.parquet`, so a synthetic demo table
and the real hub table are checked against the same thing.

Sources of the saiga facts: shared/data/SAIGA_SCHEMA.md (the dataset card's metadata and the
dataset author's public pipeline code).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

# ---------------------------------------------------------------------------------------
# IMDB (`scikit-learn/imdb`: the Kaggle "IMDB Dataset.csv")
# ---------------------------------------------------------------------------------------

IMDB_SCHEMA = pl.Schema({"review": pl.String, "sentiment": pl.String})

# Sorted, so code that enumerates labels (prompts, confusion matrices) has one fixed order.
SENTIMENTS: tuple[str, ...] = ("negative", "positive")

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
