"""judge_generations: a judge model compares the SFT systems' held-out answers pairwise.

The judge reads the user's question and two answers (A, B) and its verdict is constrained to
A, B or tie by the evaluation backends (`eval.backend`): vLLM's structured choice, or the
label log-likelihood with transformers. Every pair is judged in both orders (position swap);
llmlab.sft_eval turns the verdicts into win rates and the position-consistency rate. In the
same batch the judge compares each prompt's reference answer with a corrupted copy (the
sanity check, `sft.judge.sanity`): a judge that cannot tell them apart, or that shares weights
with the judged models, gets no win rate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from llmlab.config import Config
from llmlab.eval.prompts import Prompt
from llmlab.gpus import bind_gpus
from llmlab.io import write_json, write_parquet
from llmlab.runtime import check_prepared_model, require_device
from llmlab.sft_eval import (
    SANITY_PAIR,
    VERDICTS,
    judge_requests,
    judge_summary,
    read_answers,
    sanity_requests,
    self_judging,
)

log = logging.getLogger(__name__)

JUDGE_SYSTEM = (
    "You are an impartial judge of answers to a user's request. Prefer the answer that "
    "follows the request, is correct, helpful and complete, and is written in the language of "
    "the request; ignore the order of the answers and their length as such. Reply with one "
    "word: A if answer A is better, B if answer B is better, tie if they are equally good."
)
JUDGE_USER = "Request:\n{prompt}\n\n[Answer A]\n{answer_a}\n\n[Answer B]\n{answer_b}\n\nVerdict:"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " [...]"


def judge_prompt(prompt: str, answer_a: str, answer_b: str, max_chars: int) -> Prompt:
    user = JUDGE_USER.format(
        prompt=_cut(prompt, max_chars),
        answer_a=_cut(answer_a, max_chars) or "(empty)",
        answer_b=_cut(answer_b, max_chars) or "(empty)",
    )
    return Prompt(
        messages=({"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user})
    )


def run_judge_generations(
    cfg: Config, *, model_dir: Path, heldout: Path, judgements: Path, judge: Path
) -> None:
    """Judge every pair of systems on every held-out prompt in both orders; write the
    verdicts (parquet) and the win rates with CIs and position consistency (JSON)."""
    from llmlab.eval.backends import make_backend

    bind_gpus(cfg.device, cfg.eval.gpus_per_job)
    require_device(cfg.device, gpus=cfg.eval.gpus_per_job, where="eval.vllm.tensor_parallel_size")
    check_prepared_model(model_dir)
    answers, prompts, systems = read_answers(heldout, cfg)
    shared = self_judging(cfg)
    if shared:
        log.warning("self-judging, no win rate will be reported: %s", shared)
    requests = pl.concat(
        [judge_requests(answers, prompts, systems), sanity_requests(prompts, cfg.sft.judge.sanity)]
    )
    limit = cfg.sft.judge.max_answer_chars
    batch = [
        judge_prompt(r["prompt"], r["answer_a"], r["answer_b"], limit)
        for r in requests.iter_rows(named=True)
    ]
    log.info("%d judgements: %s, both orders", len(batch), ", ".join(requests["pair"].unique()))
    backend = make_backend(
        cfg.eval.backend, model_dir, cfg.eval.vllm, cfg.eval.transformers, cfg.device
    )
    verdicts = backend.classify(batch, list(VERDICTS), desc="judge")
    judged = requests.drop("answer_a", "answer_b", "prompt").with_columns(
        pl.Series("verdict", [v.prediction for v in verdicts], dtype=pl.String),
        pl.Series("raw_output", [v.raw_output for v in verdicts], dtype=pl.String),
        pl.Series("verdict_scores", [list(v.label_scores) for v in verdicts]),
    )
    summary = judge_summary(judged, cfg.sft.judge, self_judging=shared)
    summary |= {"judge_model": cfg.sft.judge.model, "backend": backend.name, "systems": systems}
    sanity = summary["sanity"]
    log.info(
        "%s: the judge preferred the reference in both orders on %d of %d prompts (%s)",
        SANITY_PAIR,
        sanity["preferred_reference"],
        sanity["prompts"],
        "passed" if sanity["passed"] else "FAILED",
    )
    for pair in summary["pairs"]:
        if pair["trusted"]:
            log.info(
                "%s: win rate %.2f [%.2f, %.2f], position consistency %.2f",
                pair["pair"],
                pair["win_rate"],
                *pair["win_rate_ci"],
                pair["position_consistency"],
            )
        else:
            log.warning("%s: judge not trusted (%s)", pair["pair"], "; ".join(pair["reasons"]))
    write_parquet(judged, judgements)
    write_json(summary, judge)
