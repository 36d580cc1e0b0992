"""What the SFT variants learned, measured on many held-out prompts instead of read off eight.

- `heldout_prompts`: the first user turns of held-out dialogues, with their reference answers.
  A prompt is held out only if no variant trained on it (variants filter the same pool
  differently, so one variant's eval split may overlap another's train split).
- Format-following metrics per answer (`answer_features`) and per system (`format_metrics`):
  stopped at the end-of-turn marker before max_new_tokens, written in the prompt's script
  (Cyrillic vs Latin), template markers leaked, empty (shares, Wilson CIs); repetition
  (corpus-level distinct-2, repeated 4-gram rate); length against the reference answers,
  which is only a lower bound (or nothing) where answers were cut at max_new_tokens.
- The judged pairwise comparison (`judge_pairs`, `judge_summary`): each pair of systems on
  every held-out prompt in both orders (position swap); a verdict is A, B or tie, read from a
  label-constrained judge (the eval backends: vLLM structured choice, or label log-likelihood
  with transformers). Win rate counts a tie as half a win; position consistency is the share
  of prompts whose two verdicts agree once the swap is undone. A win rate is reported only
  for a pair the judge is trusted on: not self-judging (`self_judging`), passing the sanity
  check (reference answer vs a corrupted copy, `sanity_requests`), non-degenerate verdicts and
  position-consistent.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import norm

from llmlab.config import Config, JudgeConfig, JudgeSanityConfig
from llmlab.errors import UserError
from llmlab.eval.metrics import bootstrap_ci
from llmlab.io import read_parquet, write_json
from llmlab.schemas import BASE_SYSTEM, HELDOUT_ANSWERS, HELDOUT_LOSS
from llmlab.sources import HubModel, LocalModel, WheelGGUF
from llmlab.stats import ALPHA, bonferroni, paired_mean_difference, proportion_ci, wilson_ci

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
    answers, prompts, systems = read_answers(heldout, cfg)
    boot = cfg.sft.heldout.bootstrap
    result = format_metrics(answers, prompts, resamples=boot.resamples, seed=boot.seed)
    result["max_new_tokens"] = cfg.sft.generation.max_new_tokens
    result["heldout_loss"] = heldout_loss_comparison(answers, systems)
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


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(tokens[i:] for i in range(n)), strict=False))


def distinct_n(tokens: Sequence[str], n: int) -> float | None:
    """Distinct n-grams / n-grams of one text (None below n tokens)."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else None


def corpus_distinct_n(texts: Sequence[Sequence[str]], n: int) -> float | None:
    """Corpus-level distinct-n (Li et al. 2016): distinct n-grams over all texts / all their
    n-grams (n-grams do not cross texts). Not the mean of the per-text ratios: answers that
    repeat each other's phrases lower it. It falls with the number and length of the texts,
    so compare it only between systems answering the same prompts."""
    grams = [g for toks in texts for g in ngrams(toks, n)]
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
# Means of per-answer values in [0, 1] that are not 0/1: no closed-form interval, bootstrap.
MEAN_FEATURES = ("repeated_4gram_rate",)


def format_metrics(
    answers: pl.DataFrame, prompts: pl.DataFrame, *, resamples: int, seed: int
) -> dict[str, Any]:
    """Per system: each share in RATE_FEATURES with a Wilson 95% CI, the mean repeated 4-gram
    rate with a bootstrap CI, corpus-level distinct-2, and answer length in words (median,
    quartiles) against the reference answers'.

    `cut_share`: answers that did not stop before max_new_tokens. Their length is the cut-off,
    not the model's: with every answer cut the length ratio would only restate
    max_new_tokens, so it is None; where the cut answers' true lengths could move the median
    the ratio is a lower bound (`length_ratio_is_lower_bound`)."""
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
            if name in RATE_FEATURES:
                entry[f"{name}_ci"] = proportion_ci(values)
            else:
                entry[f"{name}_ci"] = (
                    list(bootstrap_ci(values, resamples=resamples, seed=seed))
                    if values.size
                    else None
                )
        entry["corpus_distinct_2"] = corpus_distinct_n([words(a) for a in rows["answer"]], 2)
        lengths = np.array([f["words"] for f in feats], dtype=float)
        cut = ~np.array([f["stopped"] for f in feats], dtype=bool)
        # The cut answers' own lengths lie anywhere above their cut length: the median is
        # exact only if it stays put with them made infinitely long, else a lower bound.
        median_if_uncut = np.median(np.where(cut, np.inf, lengths))
        entry |= {
            "median_words": float(np.median(lengths)),
            "q1_words": float(np.quantile(lengths, 0.25)),
            "q3_words": float(np.quantile(lengths, 0.75)),
            "cut_share": float(cut.mean()),
            # >1: longer than the reference answers of the same prompts, typically.
            "length_ratio_to_reference": None
            if cut.all()
            else float(np.median(lengths) / max(reference["median_words"], 1.0)),
            "length_ratio_is_lower_bound": bool(median_if_uncut != np.median(lengths)),
        }
        out["systems"][system] = entry
    return out


# --------------------------------------------------------------------------- judge


_REQUEST_SCHEMA = {
    "pair": pl.String,
    "first": pl.String,
    "second": pl.String,
    "prompt_id": pl.Int64,
    "swapped": pl.Boolean,
    "system_a": pl.String,
    "system_b": pl.String,
    "prompt": pl.String,
    "answer_a": pl.String,
    "answer_b": pl.String,
}


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
    return pl.DataFrame(rows, schema=_REQUEST_SCHEMA)


def unswap(verdict: str | None, swapped: bool) -> str | None:
    """The verdict in the pair's own order (A = first system)."""
    if verdict is None or not swapped or verdict == "tie":
        return verdict
    return "B" if verdict == "A" else "A"


# The judge's sanity check: the reference answer (shown as the first "system") against a
# corrupted copy of it, on every held-out prompt in both orders, in the same batch as the
# pairs. Its rows in the verdicts table carry this pair name.
SANITY_PAIR = "reference vs corrupted"


def corrupted_references(
    references: Sequence[str], sanity: JudgeSanityConfig
) -> list[tuple[str, str] | None]:
    """Per reference: (the reference as shown, its corrupted copy), or None where the
    corruption cannot change it (one word, words all alike, a single prompt).

    shuffled_words and truncated show both texts with their whitespace collapsed, so that
    layout (line breaks, lists) does not tell them apart; other_reference shows both as they
    are, each prompt getting the reference of the next prompt in a seeded cycle.
    """
    rng = np.random.default_rng(sanity.seed)
    if sanity.corruption == "other_reference":
        order = rng.permutation(len(references))
        donor = np.empty(len(references), dtype=np.int64)
        donor[order] = np.roll(order, 1)  # a cycle through all prompts: nobody keeps its own
        pairs = [(ref, references[int(d)]) for ref, d in zip(references, donor, strict=True)]
        return [(r, c) if c.strip() != r.strip() else None for r, c in pairs]
    out: list[tuple[str, str] | None] = []
    for ref in references:
        toks = ref.split()
        if sanity.corruption == "shuffled_words":
            bad = [toks[i] for i in rng.permutation(len(toks))]
            if bad == toks:  # the identity draw (likely for short answers): rotate instead
                bad = toks[1:] + toks[:1]
        else:
            bad = toks[: len(toks) // 2]
        out.append((" ".join(toks), " ".join(bad)) if bad and bad != toks else None)
    return out


def sanity_requests(prompts: pl.DataFrame, sanity: JudgeSanityConfig) -> pl.DataFrame:
    """The sanity check's requests, in `judge_requests`' layout: per usable prompt the
    reference ("reference", the first) and its corrupted copy ("corrupted"), both orders."""
    rows = []
    corrupted = corrupted_references(prompts["reference"].to_list(), sanity)
    for pid, prompt, texts in zip(prompts["prompt_id"], prompts["prompt"], corrupted, strict=True):
        if texts is None:
            continue
        for swapped in (False, True):
            a, b = ("corrupted", "reference") if swapped else ("reference", "corrupted")
            shown = dict(zip(("reference", "corrupted"), texts, strict=True))
            rows.append(
                {
                    "pair": SANITY_PAIR,
                    "first": "reference",
                    "second": "corrupted",
                    "prompt_id": pid,
                    "swapped": swapped,
                    "system_a": a,
                    "system_b": b,
                    "prompt": prompt,
                    "answer_a": shown[a],
                    "answer_b": shown[b],
                }
            )
    return pl.DataFrame(rows, schema=_REQUEST_SCHEMA)


def _weights_ids(source: object) -> set[str]:
    """Names of the weights a model source loads; two sources sharing one load the same
    model. A hub repository at another revision counts as the same model; a local folder that
    holds a copy of a hub model cannot be told apart from the config and is not caught."""
    if isinstance(source, HubModel):
        return {f"hub {source.hub.lower()}"}
    if isinstance(source, LocalModel):
        return {f"path {os.path.normpath(source.path)}"}
    if isinstance(source, WheelGGUF):
        ids = {f"gguf {' + '.join(source.gguf)}"}
        return ids | ({f"sha256 {source.sha256}"} if source.sha256 else set())
    return set()


def self_judging(cfg: Config) -> str | None:
    """Why the judge shares weights with the judged systems (the SFT base model, of which
    every variant is an adapter), or None. A model judging itself and its own fine-tunes
    prefers its own style (self-preference): its verdicts are not evidence."""
    judge, base = cfg.sft.judge.model, cfg.sft.model
    if judge == base:
        return f"The judge is the SFT base model itself (sft.model = sft.judge.model = {base})"
    shared = _weights_ids(cfg.models[judge].source) & _weights_ids(cfg.models[base].source)
    if shared:
        return (
            f"The judge (models.{judge}) loads the same weights as the SFT base model "
            f"(models.{base}): {sorted(shared)[0]}"
        )
    return None


SCORE = {"A": 1.0, "tie": 0.5, "B": 0.0}


def _with_own(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` with `own`: each verdict in the pair's own order (A = first), as `unswap`."""
    flipped = pl.col("swapped") & pl.col("verdict").is_in(["A", "B"])
    own = (
        pl.when(flipped)
        .then(pl.when(pl.col("verdict") == "A").then(pl.lit("B")).otherwise(pl.lit("A")))
        .otherwise(pl.col("verdict"))
    )
    return rows.with_columns(own.alias("own"))


def _per_prompt(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per prompt: the verdicts of both orders in the pair's own order, `plain` and
    `swap`; prompts with an invalid verdict in either order are dropped."""
    return (
        _with_own(rows)
        .group_by("prompt_id", maintain_order=True)
        .agg(
            pl.col("own").filter(~pl.col("swapped")).first().alias("plain"),
            pl.col("own").filter(pl.col("swapped")).first().alias("swap"),
        )
        .drop_nulls(["plain", "swap"])
    )


def _counts(verdicts: pl.Series) -> dict[str, int]:
    return {v: int((verdicts == v).sum()) for v in VERDICTS}


def sanity_summary(rows: pl.DataFrame, sanity: JudgeSanityConfig) -> dict[str, Any]:
    """The sanity check: on how many prompts the judge preferred the reference over its
    corrupted copy in BOTH orders (a tie or a split counts as a failure), with a Wilson 95%
    interval; `passed` when its lower bound is above `sanity.min_pass_share`."""
    valid = _per_prompt(rows) if rows.height else None
    n = valid.height if valid is not None else 0
    k = int(((valid["plain"] == "A") & (valid["swap"] == "A")).sum()) if n else 0
    ci = list(wilson_ci(k, n)) if n else None
    return {
        "corruption": sanity.corruption,
        "prompts": n,
        "preferred_reference": k,
        "share": k / n if n else None,
        "share_ci": ci,
        "min_pass_share": sanity.min_pass_share,
        "passed": ci is not None and ci[0] > sanity.min_pass_share,
    }


def win_rate_test(scores: np.ndarray, *, family_size: int, alpha: float = ALPHA) -> dict[str, Any]:
    """The first system's win rate (mean per-prompt score in [0, 1]), its interval and the
    test of "no preference" (win rate 1/2), Bonferroni over `family_size` pairs.

    The score is not a 0/1 outcome (ties and split orders give 1/4, 1/2, 3/4), but no [0, 1]
    variable of mean p varies more than a Bernoulli(p): the Wilson score interval with n =
    prompts is valid for it, conservative when ties are common, and never collapses to a
    point as the percentile bootstrap did ("50% [50%, 50%]"). Simulated at n = 10, 20, 40
    on score distributions with means 0.5 to 0.95 it covered 95.6-99.8% (the bootstrap and
    the t interval 79-98%: too narrow near 0 and 1). The test is the score test the interval
    inverts, z = (w - 1/2) / (1 / (2 sqrt(n))), so the interval at level 1 - alpha / m
    excludes 1/2 exactly when the Bonferroni-adjusted p-value is below alpha."""
    n = int(scores.size)
    w = float(scores.mean())
    z = (w - 0.5) * 2.0 * math.sqrt(n)
    p = float(2.0 * norm.sf(abs(z)))
    level = 1.0 - alpha / family_size
    return {
        "win_rate": w,
        # Wilson's formula with a fractional count: the sum of the per-prompt scores.
        "win_rate_ci": list(wilson_ci(float(scores.sum()), n, level)),
        "level": level,
        "statistic": z,
        "p_value": p,
    }


def judge_summary(
    judged: pl.DataFrame,
    judge: JudgeConfig,
    *,
    self_judging: str | None = None,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """The judge's sanity check and, per pair of systems, the verdict counts, the
    position-consistency rate and whether the judge is trusted on it (`reasons` says why
    not); for a trusted pair only, the first system's win rate (tie = 1/2, both orders
    averaged per prompt) with its `win_rate_test` interval, Bonferroni over all pairs, and
    `better`: the system the corrected test prefers (None: no significant difference).

    Trusted needs all of: no `self_judging` reason (the judge shares weights with the judged
    models), the sanity check passed, no verdict (as shown: A, B or tie) on more than
    `judge.max_verdict_share` of the pair's requests (an always-tie or always-A judge), and
    position consistency at least `judge.min_consistency`."""
    sanity_rows = judged.filter(pl.col("pair") == SANITY_PAIR)
    pair_rows = judged.filter(pl.col("pair") != SANITY_PAIR)
    sanity = sanity_summary(sanity_rows, judge.sanity)
    names = pair_rows["pair"].unique(maintain_order=True).to_list()
    family = max(len(names), 1)
    out: dict[str, Any] = {
        "min_consistency": judge.min_consistency,
        "max_verdict_share": judge.max_verdict_share,
        "self_judging": self_judging,
        "sanity": sanity,
        "alpha": alpha,
        "family_size": family,
        "win_rate_method": "Wilson score interval and score test of 1/2 over prompts, "
        f"Bonferroni over {family} pairs",
        "pairs": [],
    }
    tests = []
    for pair in names:
        rows = pair_rows.filter(pl.col("pair") == pair)
        valid = _per_prompt(rows)
        scores = np.array(
            [(SCORE[a] + SCORE[b]) / 2 for a, b in zip(valid["plain"], valid["swap"], strict=True)]
        )
        consistent = (valid["plain"] == valid["swap"]).to_numpy()
        consistency = float(consistent.mean()) if consistent.size else None
        shown = rows["verdict"].drop_nulls()
        raw = _counts(shown)
        own = _counts(_with_own(rows)["own"])
        reasons = []
        if self_judging:
            reasons.append("self-judging")
        if not sanity["passed"]:
            reasons.append("failed the sanity check")
        if shown.len():
            top = max(VERDICTS, key=lambda v: raw[v])
            if raw[top] / shown.len() > judge.max_verdict_share:
                reasons.append(
                    f"degenerate verdicts ({raw[top] / shown.len():.0%} {top!r}, "
                    f"max {judge.max_verdict_share:.0%})"
                )
        if consistency is None:
            reasons.append("no prompt with valid verdicts in both orders")
        elif consistency < judge.min_consistency:
            reasons.append(f"position consistency {consistency:.0%} < {judge.min_consistency:.0%}")
        test = win_rate_test(scores, family_size=family, alpha=alpha) if scores.size else None
        tests.append(test)
        out["pairs"].append(
            {
                "pair": pair,
                "first": rows["first"][0],
                "second": rows["second"][0],
                "prompts": valid.height,
                "invalid_verdicts": int(rows["verdict"].null_count()),
                "verdicts": own,
                "verdicts_as_shown": raw,
                "position_consistency": consistency,
                "trusted": not reasons,
                "reasons": reasons,
            }
        )
    # Bonferroni over every pair, trusted or not: the family is fixed before the data.
    adjusted = bonferroni([t["p_value"] if t else 1.0 for t in tests], alpha)
    for entry, test, adj in zip(out["pairs"], tests, adjusted, strict=True):
        shown_test = test if entry["trusted"] and test else None
        better = None
        if shown_test and adj["significant"]:
            better = entry["first"] if shown_test["win_rate"] > 0.5 else entry["second"]
        entry |= {
            "win_rate": shown_test["win_rate"] if shown_test else None,
            "win_rate_ci": shown_test["win_rate_ci"] if shown_test else None,
            "level": shown_test["level"] if shown_test else None,
            "p_value": shown_test["p_value"] if shown_test else None,
            "p_adjusted": adj["p_adjusted"] if shown_test else None,
            "better": better,
        }
    return out


# --------------------------------------------------------------------------- held-out loss
# Every system's loss on the reference answers of the same held-out prompts (no variant
# trained on them; compare_generations scores them): the comparison train_lora's own
# eval_loss cannot give, since each variant's eval split passed other filters.


def loss_pairs(systems: Sequence[str]) -> list[tuple[str, str]]:
    """Each variant against the base, then the variants against each other (config order)."""
    variants = [s for s in systems if s != BASE_SYSTEM]
    against_base = [(v, BASE_SYSTEM) for v in variants] if BASE_SYSTEM in systems else []
    return against_base + list(itertools.combinations(variants, 2))


def heldout_loss_comparison(
    answers: pl.DataFrame, systems: Sequence[str], *, alpha: float = ALPHA
) -> dict[str, Any]:
    """Every system's loss on the reference answers of the common held-out prompts, and
    each pair's difference, paired by prompt.

    Per system: `loss`, the total NLL over the total reference tokens (nats per token, as
    train_lora's eval_loss) and its perplexity; `mean_loss`, the mean over prompts of each
    prompt's per-token loss. Per pair (`loss_pairs`): the mean over prompts of first's minus
    second's per-token loss (negative: first is lower) with a paired t interval and test,
    Bonferroni over all pairs (`paired_mean_difference`); `lowest`: the system of the lowest
    `mean_loss`, the quantity the pairs compare.
    """
    missing = [c for c in HELDOUT_LOSS if c not in answers.columns]
    if missing:
        raise UserError(
            f"held-out answers: missing columns {missing} (rerun compare_generations: it "
            "scores every system on the reference answers)"
        )
    table = {
        s: answers.filter(pl.col("system") == s)
        .sort("prompt_id")
        .select("prompt_id", *HELDOUT_LOSS)
        for s in systems
    }
    first = table[systems[0]]
    tokens = first["reference_tokens"].to_numpy().astype(np.float64)
    for s, t in table.items():
        if not t["prompt_id"].equals(first["prompt_id"]):
            raise UserError(f"held-out loss: system {s!r} was not scored on every prompt")
        if not t["reference_tokens"].equals(first["reference_tokens"]):
            raise UserError(
                f"held-out loss: system {s!r} scored other reference tokens than "
                f"{systems[0]!r} (one tokenizer and template for all systems expected)"
            )
    if first.height < 2 or (tokens <= 0).any():
        raise UserError(
            f"held-out loss: {first.height} scored prompts; a paired interval needs 2 "
            "(sft.heldout.count) with reference tokens"
        )
    per_prompt = {s: t["reference_nll"].to_numpy() / tokens for s, t in table.items()}
    out_systems = {}
    for s, t in table.items():
        loss = float(t["reference_nll"].sum() / tokens.sum())
        out_systems[s] = {
            "loss": loss,
            "perplexity": float(np.exp(loss)),
            "mean_loss": float(per_prompt[s].mean()),
        }
    pairs = loss_pairs(systems)
    out_pairs = [
        {"pair": f"{a} vs {b}", "first": a, "second": b}
        | paired_mean_difference(per_prompt[a], per_prompt[b], family_size=len(pairs), alpha=alpha)
        for a, b in pairs
    ]
    return {
        "prompts": first.height,
        "tokens": int(tokens.sum()),
        "alpha": alpha,
        "family_size": len(pairs),
        "level": 1.0 - alpha / max(len(pairs), 1),
        "method": "paired t over prompts of the per-token loss, Bonferroni over the pairs",
        "systems": out_systems,
        "pairs": out_pairs,
        "lowest": min(out_systems, key=lambda s: out_systems[s]["mean_loss"]),
    }
