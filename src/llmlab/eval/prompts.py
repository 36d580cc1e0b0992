"""Classification prompts: review cleaning and truncation, templates, few-shot turns.

A prompt is a list of chat turns built from a `PromptTemplate`: an optional system message,
then for each in-context example a user turn (the template with the example review) and an
assistant turn (its label), then the user turn of the query review. Chat models get these
turns through their own chat template; base models (`prompt_format: plain`) get them as
plain text written with `eval.plain_format`. The answer the model is asked for is the label
text, preceded by `Prompt.answer_prefix` (e.g. the space after "Sentiment:").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llmlab.config import PlainFormat, PromptTemplate

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

_BR = re.compile(r"(?:\s*<br\s*/?>\s*)+", flags=re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")
# Marks where the middle of a long review was cut out.
ELLIPSIS = " [...] "


@dataclass(frozen=True)
class Prompt:
    """One classification request: chat `messages` or, for plain-format models, `text`.

    The label is expected right after the prompt, preceded by `answer_prefix`.
    """

    messages: tuple[Message, ...] = ()
    text: str | None = None
    answer_prefix: str = ""
    # Extra chat template variables (`models.<key>.chat_template_kwargs`), as sorted pairs so
    # the prompt stays hashable; both backends render with exactly these.
    template_kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def is_chat(self) -> bool:
        return self.text is None


def clean_review(text: str) -> str:
    """Turn IMDB's HTML line breaks into newlines and collapse runs of spaces."""
    return _SPACES.sub(" ", _BR.sub("\n", text)).strip()


def truncate_reviews(
    texts: Sequence[str], tokenizer, max_tokens: int, head_fraction: float = 0.5
) -> list[str]:
    """Clean each text and cut it to at most ~`max_tokens` tokens of `tokenizer`.

    A long review keeps its first `head_fraction` of the budget and its last tokens (the
    verdict is often at the end), joined by " [...] ". Cuts are made at token boundaries of
    the original string (offsets), so no text is re-decoded.
    """
    cleaned = [clean_review(t) for t in texts]
    if not cleaned:
        return []
    encoded = tokenizer(cleaned, add_special_tokens=False, return_offsets_mapping=True)
    head = max(1, round(max_tokens * head_fraction))
    tail = max(0, max_tokens - head)
    out = []
    for text, offsets in zip(cleaned, encoded["offset_mapping"], strict=True):
        if len(offsets) <= max_tokens:
            out.append(text)
            continue
        head_end = offsets[head - 1][1]
        tail_start = offsets[len(offsets) - tail][0] if tail else len(text)
        out.append(text[:head_end].rstrip() + ELLIPSIS + text[tail_start:].lstrip())
    return out


def token_lengths(texts: Sequence[str], tokenizer) -> list[int]:
    """Each cleaned text's length in `tokenizer`'s tokens (no special tokens): the length
    `truncate_reviews` compares with its budget, so a text is cut iff it exceeds the budget."""
    cleaned = [clean_review(t) for t in texts]
    if not cleaned:
        return []
    encoded = tokenizer(cleaned, add_special_tokens=False, return_offsets_mapping=True)
    return [len(offsets) for offsets in encoded["offset_mapping"]]


def format_labels(labels: Sequence[str]) -> str:
    """["negative", "positive"] -> "negative or positive"; three -> "a, b or c"."""
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


def build_messages(
    template: PromptTemplate,
    review: str,
    labels: Sequence[str],
    examples: Sequence[tuple[str, str]] = (),
) -> list[Message]:
    """Chat turns for one query `review` with in-context `examples` as (review, label) pairs.

    Reviews are inserted as values (str.format), so braces inside a review are kept verbatim.
    """
    fields = {"labels": format_labels(labels)}
    messages: list[Message] = []
    if template.system is not None:
        messages.append({"role": "system", "content": template.system.format(**fields)})
    for example_review, example_label in examples:
        messages.append(
            {"role": "user", "content": template.user.format(review=example_review, **fields)}
        )
        messages.append({"role": "assistant", "content": example_label})
    messages.append({"role": "user", "content": template.user.format(review=review, **fields)})
    return messages


def render_plain(messages: Sequence[Message], plain: PlainFormat) -> tuple[str, str]:
    """Write chat turns as plain text; return (prompt text, answer prefix).

    The prompt ends with the part of `plain.assistant` before `{content}`, minus its trailing
    whitespace, which becomes the answer prefix: tokenizers encode " positive" as one word,
    and a prompt ending in a space would push the model off its usual tokenization.
    """
    formats = {"system": plain.system, "user": plain.user, "assistant": plain.assistant}
    # str.replace, not format: turn contents (reviews) may hold braces.
    text = "".join(formats[m["role"]].replace("{content}", m["content"]) for m in messages)
    head = plain.assistant.split("{content}")[0]
    stripped = head.rstrip()
    return text + stripped, head[len(stripped) :]


def build_prompt(
    template: PromptTemplate,
    review: str,
    labels: Sequence[str],
    examples: Sequence[tuple[str, str]],
    prompt_format: Literal["chat", "plain"],
    plain: PlainFormat,
    template_kwargs: Mapping[str, Any] | None = None,
) -> Prompt:
    """The request for one review: chat turns, or the same turns as plain text.

    `template_kwargs` are extra variables of the model's chat template (chat format only).
    """
    messages = build_messages(template, review, labels, examples)
    if prompt_format == "chat":
        return Prompt(
            messages=tuple(messages), template_kwargs=tuple(sorted((template_kwargs or {}).items()))
        )
    text, prefix = render_plain(messages, plain)
    return Prompt(text=text, answer_prefix=prefix)


def render_text(prompt: Prompt, tokenizer) -> str:
    """The exact text a model reads: chat turns through the tokenizer's chat template."""
    if not prompt.is_chat:
        return prompt.text
    return tokenizer.apply_chat_template(
        list(prompt.messages),
        tokenize=False,
        add_generation_prompt=True,
        **dict(prompt.template_kwargs),
    )


def prompt_token_ids(prompt: Prompt, tokenizer) -> list[int]:
    """Token ids of the rendered prompt, as vLLM builds them.

    Chat templates write their own special tokens (BOS included), so the rendered chat text is
    encoded without adding any; plain text gets the tokenizer's usual ones (e.g. Gemma's BOS).
    """
    text = render_text(prompt, tokenizer)
    return tokenizer(text, add_special_tokens=not prompt.is_chat)["input_ids"]
