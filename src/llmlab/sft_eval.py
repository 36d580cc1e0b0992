"""What the SFT variants learned, measured on many held-out prompts instead of read off eight.

- `heldout_prompts`: the first user turns of held-out dialogues, with their reference answers.
  A prompt is held out only if no variant trained on it (variants filter the same pool
  differently, so one variant's eval split may overlap another's train split).
- Format-following metrics per answer (`answer_features`) and per system with bootstrap CIs
  (`format_metrics`): stopped at the end-of-turn marker before max_new_tokens, written in the
  prompt's script (Cyrillic vs Latin), repetition (distinct-2, repeated 4-gram rate), length
  against the reference answers, template markers leaked into the text.
- The judged pairwise comparison (`judge_pairs`, `judge_summary`): each pair of systems on
  every held-out prompt in both orders (position swap); a verdict is A, B or tie, read from a
  label-constrained judge (the eval backends: vLLM structured choice, or label log-likelihood
  with transformers). Win rate counts a tie as half a win; position consistency is the share
  of prompts whose two verdicts agree once the swap is undone.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from llmlab.config import Config
from llmlab.errors import UserError
from llmlab.eval.metrics import bootstrap_ci
from llmlab.io import read_parquet, write_json
from llmlab.schemas import BASE_SYSTEM, HELDOUT_ANSWERS

# Chat-template control tokens of the families we train or judge with: text containing one
# leaked the template instead of ending the turn.
TEMPLATE_MARKERS = (
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|begin_of_text|>",
    "<|im_start|>",
    "<|im_end|>",
    "<s>",
    "</s>",
)
VERDICTS = ("A", "B", "tie")
WORD = re.compile(r"\w+", re.UNICODE)
CYRILLIC = re.compile(r"[\u0400-\u04FF]")
LATIN = re.compile(r"[A-Za-z]")

HELDOUT_SCHEMA = {
    "prompt_id": pl.Int64,
    "prompt": pl.String,
    "reference": pl.String,
}


def _first_turns(messages: Sequence[Mapping[str, str]]) -> tuple[str, str] | None:
    """(first user turn, the assistant answer right after it), or None."""
    for i, m in enumerate(messages):
        if m["role"] == "user":
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            if nxt is not None and nxt["role"] == "assistant":
                return m["content"], nxt["content"]
            return None
    return None


def heldout_prompts(
    train: Sequence[pl.DataFrame], held: Sequence[pl.DataFrame], count: int, seed: int
) -> pl.DataFrame:
    """Up to `count` held-out (prompt, reference) pairs, in a seeded, stable order.

    `held`: every variant's eval split; `train`: every variant's train split. A prompt any
    variant trained on is dropped; duplicates are kept once.
    """
    trained = {
        turns[0]
        for df in train
        for messages in df["messages"].to_list()
        if (turns := _first_turns(messages))
    }
    pairs: dict[str, str] = {}
    for df in held:
        for messages in df["messages"].to_list():
            turns = _first_turns(messages)
            if turns and turns[0] not in trained:
                pairs.setdefault(turns[0], turns[1])

    def key(prompt: str) -> str:
        return hashlib.blake2b(f"{seed}:{prompt}".encode(), digest_size=8).hexdigest()

    chosen = sorted(pairs, key=key)[:count]
    if not chosen:
        raise UserError(
            "no held-out prompt: every eval dialogue's first user turn is in some variant's "
            "train split"
        )
    return pl.DataFrame(
        {
            "prompt_id": list(range(len(chosen))),
            "prompt": chosen,
            "reference": [pairs[p] for p in chosen],
        },
        schema=HELDOUT_SCHEMA,
    )


def read_answers(path: Path, cfg: Config) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(answers, prompts, systems in config order) of compare_generations' held-out file."""
    df = read_parquet(path)
    missing = [c for c in HELDOUT_ANSWERS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing} (not compare_generations' heldout)")
    if df.is_empty():
        raise UserError(f"{path}: no answers")
    systems = [s for s in (BASE_SYSTEM, *cfg.sft.variants) if s in set(df["system"])]
    if len(systems) < 2:
        raise UserError(f"{path}: answers of {systems} only; a comparison needs two systems")
    prompts = df.select("prompt_id", "prompt", "reference").unique("prompt_id").sort("prompt_id")
    for system in systems:
        have = set(df.filter(pl.col("system") == system)["prompt_id"])
        if have != set(prompts["prompt_id"]):
            raise UserError(f"{path}: system {system!r} did not answer every held-out prompt")
    return df, prompts, systems


def run_format_metrics(cfg: Config, *, heldout: Path, metrics: Path) -> None:
    """format_metrics: the format-following metrics of every system (JSON)."""
    answers, prompts, _ = read_answers(heldout, cfg)
    boot = cfg.sft.heldout.bootstrap
    result = format_metrics(answers, prompts, resamples=boot.resamples, seed=boot.seed)
    result["max_new_tokens"] = cfg.sft.generation.max_new_tokens
    write_json(result, metrics)


# --------------------------------------------------------------------------- format metrics


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def script(text: str) -> str | None:
    """`cyrillic` or `latin`: the script most letters of `text` are in (None: no letters)."""
    cyr, lat = len(CYRILLIC.findall(text)), len(LATIN.findall(text))
    if not cyr and not lat:
        return None
    return "cyrillic" if cyr >= lat else "latin"


def distinct_n(tokens: Sequence[str], n: int) -> float | None:
    """Distinct n-grams / n-grams (None below n tokens)."""
    grams = list(zip(*(tokens[i:] for i in range(n)), strict=False))
    return len(set(grams)) / len(grams) if grams else None


def repeated_ngram_rate(tokens: Sequence[str], n: int = 4) -> float | None:
    """Share of n-grams that already occurred earlier in the text (degenerate loops -> 1)."""
    grams = list(zip(*(tokens[i:] for i in range(n)), strict=False))
    if not grams:
        return None
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def answer_features(prompt: str, answer: str, finished: bool) -> dict[str, Any]:
    """Format-following features of one answer."""
    toks = words(answer)
    want = script(prompt)
    got = script(answer)
    return {
        "stopped": bool(finished),
        "same_script": None if want is None else got == want,
        "distinct_2": distinct_n(toks, 2),
        "repeated_4gram_rate": repeated_ngram_rate(toks, 4),
        "words": len(toks),
        "leaked_marker": any(m in answer for m in TEMPLATE_MARKERS),
        "empty": not answer.strip(),
    }


RATE_FEATURES = ("stopped", "same_script", "leaked_marker", "empty")
MEAN_FEATURES = ("distinct_2", "repeated_4gram_rate")


def format_metrics(
    answers: pl.DataFrame, prompts: pl.DataFrame, *, resamples: int, seed: int
) -> dict[str, Any]:
    """Per system: each feature's mean with a bootstrap CI, and answer length in words
    (median, quartiles) against the reference answers'."""
    ref_words = np.array([len(words(r)) for r in prompts["reference"]], dtype=float)
    reference = {
        "median_words": float(np.median(ref_words)),
        "q1_words": float(np.quantile(ref_words, 0.25)),
        "q3_words": float(np.quantile(ref_words, 0.75)),
    }
    by_prompt = dict(zip(prompts["prompt_id"], prompts["prompt"], strict=True))
    out: dict[str, Any] = {"reference": reference, "systems": {}}
    for (system,), rows in answers.group_by("system", maintain_order=True):
        feats = [
            answer_features(by_prompt[pid], ans, fin)
            for pid, ans, fin in zip(
                rows["prompt_id"], rows["answer"], rows["finished"], strict=True
            )
        ]
        entry: dict[str, Any] = {"n": len(feats)}
        for name in (*RATE_FEATURES, *MEAN_FEATURES):
            values = np.array([f[name] for f in feats if f[name] is not None], dtype=float)
            entry[name] = float(values.mean()) if values.size else None
            entry[f"{name}_ci"] = (
                list(bootstrap_ci(values, resamples=resamples, seed=seed)) if values.size else None
            )
        lengths = np.array([f["words"] for f in feats], dtype=float)
        entry |= {
            "median_words": float(np.median(lengths)),
            "q1_words": float(np.quantile(lengths, 0.25)),
            "q3_words": float(np.quantile(lengths, 0.75)),
            # >1: longer than the reference answers of the same prompts, typically.
            "length_ratio_to_reference": float(
                np.median(lengths) / max(reference["median_words"], 1.0)
            ),
        }
        out["systems"][system] = entry
    return out


# --------------------------------------------------------------------------- judge


def judge_pairs(systems: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair, in config order: (base, a), (base, b), (a, b)."""
    return list(itertools.combinations(systems, 2))


def judge_requests(
    answers: pl.DataFrame, prompts: pl.DataFrame, systems: Sequence[str]
) -> pl.DataFrame:
    """One row per (pair, prompt, order): which system is shown as A and which as B."""
    text = {(s, p): a for s, p, a in answers.select("system", "prompt_id", "answer").iter_rows()}
    rows = []
    for first, second in judge_pairs(systems):
        for pid, prompt in zip(prompts["prompt_id"], prompts["prompt"], strict=True):
            for swapped in (False, True):
                a, b = (second, first) if swapped else (first, second)
                rows.append(
                    {
                        "pair": f"{first} vs {second}",
                        "first": first,
                        "second": second,
                        "prompt_id": pid,
                        "swapped": swapped,
                        "system_a": a,
                        "system_b": b,
                        "prompt": prompt,
                        "answer_a": text[(a, pid)],
                        "answer_b": text[(b, pid)],
                    }
                )
    return pl.DataFrame(rows)


def unswap(verdict: str | None, swapped: bool) -> str | None:
    """The verdict in the pair's own order (A = first system)."""
    if verdict is None or not swapped or verdict == "tie":
        return verdict
    return "B" if verdict == "A" else "A"


def judge_summary(
    judged: pl.DataFrame, *, resamples: int, seed: int, min_consistency: float
) -> dict[str, Any]:
    """Per pair: the first system's win rate over the second (tie = 1/2, both orders
    averaged per prompt) with a bootstrap CI over prompts, the verdict counts, and the
    position-consistency rate; `trusted` is False below `min_consistency`."""
    out: dict[str, Any] = {"min_consistency": min_consistency, "pairs": []}
    score = {"A": 1.0, "tie": 0.5, "B": 0.0}
    for (pair,), rows in judged.group_by("pair", maintain_order=True):
        rows = rows.with_columns(
            pl.struct("verdict", "swapped")
            .map_elements(lambda r: unswap(r["verdict"], r["swapped"]), return_dtype=pl.String)
            .alias("own")
        )
        per_prompt = rows.group_by("prompt_id", maintain_order=True).agg(
            pl.col("own").filter(~pl.col("swapped")).first().alias("plain"),
            pl.col("own").filter(pl.col("swapped")).first().alias("swap"),
        )
        valid = per_prompt.drop_nulls(["plain", "swap"])
        wins = np.array(
            [(score[a] + score[b]) / 2 for a, b in zip(valid["plain"], valid["swap"], strict=True)]
        )
        consistent = (valid["plain"] == valid["swap"]).to_numpy()
        first = rows["first"][0]
        second = rows["second"][0]
        counts = {v: int((rows["own"] == v).sum()) for v in VERDICTS}
        consistency = float(consistent.mean()) if consistent.size else None
        out["pairs"].append(
            {
                "pair": pair,
                "first": first,
                "second": second,
                "prompts": valid.height,
                "invalid_verdicts": int(rows["own"].null_count()),
                "win_rate": float(wins.mean()) if wins.size else None,
                "win_rate_ci": list(bootstrap_ci(wins, resamples=resamples, seed=seed))
                if wins.size
                else None,
                "verdicts": counts,
                "position_consistency": consistency,
                "trusted": consistency is not None and consistency >= min_consistency,
            }
        )
    return out
