"""Backends: label tokens, log-likelihood scoring, and vLLM vs transformers on the demo model.

Fast tests use `tiny_llama_dir` (a random model: only the arithmetic is checked). Slow tests
load SmolLM2-135M-Instruct once per module in each backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmlab.config import PlainFormat, PromptTemplate, TransformersConfig
from llmlab.errors import UserError
from llmlab.eval.backends import (
    TransformersBackend,
    common_prefix_length,
    distinct_first_tokens,
    label_token_ids,
    parse_output,
)
from llmlab.eval.prompts import build_prompt, prompt_token_ids

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

LABELS = ["negative", "positive"]
TEMPLATE = PromptTemplate(
    system="You classify the sentiment of movie reviews. Reply with one word: {labels}.",
    user="{review}",
)
REVIEWS = [
    "An absolute masterpiece. The acting is superb and the story moved me to tears.",
    "Dreadful. Two hours of my life I will never get back; the plot makes no sense.",
    "I loved every minute, the best film I have seen this year.",
    "Boring, predictable and badly acted. Avoid.",
    "A charming, funny and warm film with a great cast.",
    "The worst movie ever made. Terrible script, terrible direction.",
    "Wonderful soundtrack and beautiful photography; a delight.",
    "I walked out after thirty minutes. Awful.",
]
EXAMPLES = [
    ("Great fun from start to finish.", "positive"),
    ("Painfully dull and far too long.", "negative"),
    ("A moving, beautifully made drama.", "positive"),
    ("Cheap, ugly and stupid.", "negative"),
    ("One of the best films of the decade.", "positive"),
]


def prompts(fmt: str = "chat", examples=(), reviews=REVIEWS):
    return [build_prompt(TEMPLATE, r, LABELS, list(examples), fmt, PlainFormat()) for r in reviews]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_label_tokens_in_context(tokenizer):
    chat = label_token_ids(tokenizer, prompts()[0], LABELS)
    plain = label_token_ids(tokenizer, prompts("plain")[0], LABELS)
    assert [tokenizer.decode(ids) for ids in chat] == LABELS
    assert [tokenizer.decode(ids) for ids in plain] == [" negative", " positive"]
    assert len(set(distinct_first_tokens(chat, LABELS, tokenizer))) == 2


def test_labels_sharing_a_first_token_are_refused(tokenizer):
    labels = ["good", "good enough"]
    ids = label_token_ids(tokenizer, prompts()[0], labels)
    with pytest.raises(UserError, match="start with the same token"):
        distinct_first_tokens(ids, labels, tokenizer)


def test_parse_output_never_coerces():
    assert parse_output("positive", LABELS, "", "choice") == "positive"
    assert parse_output(" positive", LABELS, " ", "choice") == "positive"
    for text in ("Positive", "positive.", " positive", "pos"):
        assert parse_output(text, LABELS, "", "choice") is None
    assert parse_output('{"sentiment": "negative"}', LABELS, "", "json") == "negative"
    assert parse_output('{"sentiment": "meh"}', LABELS, "", "json") is None
    assert parse_output("{not json", LABELS, "", "json") is None


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0


def _manual_loglik(model, ids: list[int], cont: list[int]) -> float:
    """Sum of log P(cont | ids) from one unbatched forward pass, for reference."""
    import torch

    with torch.inference_mode():
        logits = model(torch.tensor([ids + cont])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(logp[len(ids) - 1 + i, t].item() for i, t in enumerate(cont))


@pytest.mark.parametrize("labels", [LABELS, ["bad film", "good film overall"]])
@pytest.mark.parametrize("reuse_prefix", [True, False])
def test_transformers_scores_match_unbatched_log_likelihood(tiny_llama_dir, labels, reuse_prefix):
    backend = TransformersBackend(
        tiny_llama_dir,
        TransformersConfig(dtype="float32", batch_size=3, reuse_prefix=reuse_prefix),
        "cpu",
    )
    batch = prompts(examples=EXAMPLES)
    preds = backend.classify(batch, labels)
    for prompt, pred in zip(batch, preds, strict=True):
        ids = prompt_token_ids(prompt, backend.tokenizer)
        conts = label_token_ids(backend.tokenizer, prompt, labels)
        raw = np.array([_manual_loglik(backend.model, ids, c) for c in conts])
        expected = raw - np.logaddexp.reduce(raw)
        np.testing.assert_allclose(pred.label_scores, expected, atol=2e-4)
        assert pred.prediction == labels[int(np.argmax(expected))] == pred.raw_output
        assert pred.seconds > 0


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def demo_eval():
    from llmlab.config import load_params

    return load_params(PARAMS, preset="demo").eval


@pytest.fixture(scope="module")
def smol_transformers(smollm2_dir, demo_eval):
    return TransformersBackend(smollm2_dir, demo_eval.transformers, "cpu")


@pytest.fixture(scope="module")
def smol_vllm(smollm2_dir, demo_eval):
    from llmlab.eval.backends import VllmBackend

    # The demo preset's engine settings, with a batch small enough to show progress.
    return VllmBackend(smollm2_dir, demo_eval.vllm.model_copy(update={"batch_size": 64}), "cpu")


def demo_prompts(demo_eval, tokenizer, prompt: str, shots: int, n: int = 40):
    """Synthetic reviews through the demo preset's template, budgets and a balanced set."""
    from llmlab.eval.fewshot import select_fixed
    from llmlab.eval.prompts import truncate_reviews
    from llmlab.synthetic.imdb import generate_imdb

    df = generate_imdb(n + 100, seed=1).with_row_index("review_id")
    queries, pool = df.head(n), df.slice(n)
    chosen = select_fixed(pool, "balanced", shots, demo_eval.labels, seed=0)
    cut = truncate_reviews(chosen["review"].to_list(), tokenizer, demo_eval.fewshot.example_tokens)
    examples = list(zip(cut, chosen["sentiment"], strict=True))
    texts = truncate_reviews(queries["review"].to_list(), tokenizer, demo_eval.review_tokens)
    template = demo_eval.prompts[prompt]
    return [
        build_prompt(template, t, demo_eval.labels, examples, "chat", demo_eval.plain_format)
        for t in texts
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "shots"), [("system", 0), ("minimal", 0), ("system", 5)])
def test_backends_agree_on_the_demo_model(smol_vllm, smol_transformers, demo_eval, prompt, shots):
    batch = demo_prompts(demo_eval, smol_vllm.tokenizer, prompt, shots)
    # Both engines read the same tokens.
    assert prompt_token_ids(batch[0], smol_vllm.tokenizer) == prompt_token_ids(
        batch[0], smol_transformers.tokenizer
    )
    v = smol_vllm.classify(batch, LABELS)
    t = smol_transformers.classify(batch, LABELS)
    assert all(p.prediction in LABELS for p in v)  # structured choice: never invalid
    agree = np.mean([a.prediction == b.prediction for a, b in zip(v, t, strict=True)])
    assert agree >= 0.9
    # Single-token labels: vLLM's first-token scores are the full label log-likelihoods
    # (bf16 engines differ a little).
    np.testing.assert_allclose([p.label_scores for p in v], [p.label_scores for p in t], atol=0.2)


@pytest.mark.slow
def test_vllm_json_output(smol_vllm, demo_eval):
    batch = demo_prompts(demo_eval, smol_vllm.tokenizer, "system", 0, n=4)
    smol_vllm.cfg = smol_vllm.cfg.model_copy(update={"output": "json"})
    try:
        preds = smol_vllm.classify(batch, LABELS)
    finally:
        smol_vllm.cfg = smol_vllm.cfg.model_copy(update={"output": "choice"})
    assert all(p.prediction in LABELS for p in preds)
    assert all(p.raw_output.lstrip().startswith("{") for p in preds)
    assert all(len(p.label_scores) == 2 for p in preds)


@pytest.mark.slow
def test_gemma_plain_prefix_reuse_matches_full_prompts(gemma3_dir):
    """Gemma 3 mixes sliding-window (512) and global attention: a reused few-shot prefix
    longer than the window must give the same scores as full prompts."""
    long_examples = [(" ".join([r] * 20), lab) for r, lab in EXAMPLES]  # ~800 tokens
    batch = prompts("plain", long_examples, REVIEWS[:4])
    scores = {}
    for reuse in (True, False):
        backend = TransformersBackend(
            gemma3_dir, TransformersConfig(dtype="float32", batch_size=2, reuse_prefix=reuse), "cpu"
        )
        assert len(prompt_token_ids(batch[0], backend.tokenizer)) > 600
        scores[reuse] = np.array([p.label_scores for p in backend.classify(batch, LABELS)])
    np.testing.assert_allclose(scores[True], scores[False], atol=1e-3)


def test_float32_head_on_a_half_precision_model(tiny_llama_dir):
    """bf16 logits are coarse (label scores tie); the float32 head makes them fine again."""
    batch = prompts(examples=EXAMPLES[:2])
    scores = {}
    for dtype, head in (("float32", "model"), ("bfloat16", "float32"), ("bfloat16", "model")):
        backend = TransformersBackend(
            tiny_llama_dir, TransformersConfig(dtype=dtype, head_dtype=head, batch_size=4), "cpu"
        )
        scores[dtype, head] = np.array([p.label_scores for p in backend.classify(batch, LABELS)])
        if head == "float32":
            assert backend.model.get_output_embeddings().weight.dtype.is_floating_point
            assert str(backend.model.get_output_embeddings().weight.dtype) == "torch.float32"
    reference = scores["float32", "model"]
    error_fp32_head = np.abs(scores["bfloat16", "float32"] - reference).max()
    error_bf16_head = np.abs(scores["bfloat16", "model"] - reference).max()
    assert error_fp32_head < error_bf16_head
