"""Prompt construction: cleaning, truncation, templates, few-shot turns, plain format."""

from __future__ import annotations

import re

import pytest

from llmlab.config import PlainFormat, PromptTemplate
from llmlab.eval.prompts import (
    ELLIPSIS,
    Prompt,
    build_messages,
    build_prompt,
    clean_review,
    format_labels,
    render_plain,
    render_text,
    truncate_reviews,
)

LABELS = ["negative", "positive"]


class WordTokenizer:
    """Whitespace 'tokenizer' with offsets, enough to test truncation without a model."""

    def __call__(self, texts, add_special_tokens=False, return_offsets_mapping=False):
        return {
            "offset_mapping": [
                [(m.start(), m.end()) for m in re.finditer(r"\S+", t)] for t in texts
            ]
        }


def test_clean_review_replaces_html_breaks():
    assert clean_review("Great.<br /><br />Really  great.<br/>End ") == "Great.\nReally great.\nEnd"
    assert clean_review("a <BR> b") == "a\nb"


def test_truncate_keeps_head_and_tail_within_budget():
    text = " ".join(f"w{i}" for i in range(100))
    short = "just five words here ok"
    out = truncate_reviews([text, short], WordTokenizer(), max_tokens=10, head_fraction=0.3)
    assert out[1] == short
    head, tail = out[0].split(ELLIPSIS)
    assert head.split() == ["w0", "w1", "w2"]
    assert tail.split() == [f"w{i}" for i in range(93, 100)]


def test_truncate_with_a_real_tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    review = "An opening line.<br /><br />" + "filler words " * 300 + "Verdict: a masterpiece."
    (out,) = truncate_reviews([review], tok, max_tokens=40)
    assert out.endswith("Verdict: a masterpiece.") and out.startswith("An opening line.\n")
    assert len(tok(out, add_special_tokens=False)["input_ids"]) <= 40 + 5  # + the marker


def test_messages_zero_and_few_shot():
    template = PromptTemplate(system="Answer {labels}.", user="Review: {review}")
    zero = build_messages(template, "Fine {film}", LABELS)
    assert zero == [
        {"role": "system", "content": "Answer negative or positive."},
        {"role": "user", "content": "Review: Fine {film}"},  # braces in reviews survive
    ]
    examples = [("Bad.", "negative"), ("Good.", "positive")]
    few = build_messages(template, "Query.", LABELS, examples)
    assert [m["role"] for m in few] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert few[1]["content"] == "Review: Bad." and few[2]["content"] == "negative"
    assert few[-1]["content"] == "Review: Query."
    # Without a system message the first turn is the first example.
    assert (
        build_messages(PromptTemplate(user="{review}"), "q", LABELS, examples)[0]["role"] == "user"
    )


def test_plain_format_moves_trailing_space_into_the_answer():
    plain = PlainFormat()
    messages = build_messages(
        PromptTemplate(user="Review: {review}"), "Nice.", LABELS, [("Bad.", "negative")]
    )
    text, prefix = render_plain(messages, plain)
    assert text == "Review: Bad.\nSentiment: negative\n\nReview: Nice.\nSentiment:"
    assert prefix == " "
    prompt = build_prompt(PromptTemplate(user="{review}"), "x", LABELS, [], "plain", plain)
    assert prompt == Prompt(text="x\nSentiment:", answer_prefix=" ")
    assert not prompt.is_chat and render_text(prompt, tokenizer=None) == "x\nSentiment:"


def test_chat_prompt_renders_with_the_chat_template(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    prompt = build_prompt(
        PromptTemplate(user="{review}"), "Loved it.", LABELS, [], "chat", PlainFormat()
    )
    assert prompt.is_chat and prompt.answer_prefix == ""
    text = render_text(prompt, tok)
    assert "Loved it." in text
    assert text.endswith(
        tok.apply_chat_template(
            [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
        ).split("x")[-1]
    )


def test_format_labels():
    assert format_labels(["a"]) == "a"
    assert format_labels(LABELS) == "negative or positive"
    assert format_labels(["a", "b", "c"]) == "a, b or c"


@pytest.mark.parametrize(
    ("user", "message"),
    [("no placeholder", "must contain {review}"), ("{review} {stars}", "unknown placeholder")],
)
def test_template_validation(user, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PromptTemplate(user=user)
