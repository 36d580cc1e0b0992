"""eval_llm: classify the validation reviews with one model at one shot count.

One job evaluates every configured prompt x few-shot strategy (a *setting*) with one engine
load, and derives one system per calibration method from the same label scores:
- `none`: the engine's answer (vLLM's structured choice; transformers' best label);
- `contextual`: scores minus the label prior measured on content-free inputs through the same
  prompt and examples;
- `threshold`: scores shifted by a threshold fitted on a held-out train slice.
The content-free and held-out prompts are extra engine work, timed and reported in
metrics.json; a calibrated system's `seconds` are those of its uncalibrated answers.

A fixed example set (`random`, `balanced`) is drawn `eval.fewshot.draws` times: draw 0 with
`eval.fewshot.seed` (one draw is exactly the single-set evaluation), draw d >= 1 with
`draw_seed(seed, d)`. Each draw is a setting of its own, scored in its own engine call, so
its examples are one shared prefix (prefix caching works per draw).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from llmlab.config import Config, EvalConfig, PlainFormat, check_key
from llmlab.errors import UserError
from llmlab.eval.backends import Backend, Prediction, make_backend
from llmlab.eval.calibration import (
    apply_bias,
    argmax_labels,
    contextual_bias,
    fit_threshold_bias,
)
from llmlab.eval.fewshot import (
    FIXED_STRATEGIES,
    check_no_leakage,
    select_fixed,
    select_similar,
    split_pool,
)
from llmlab.eval.prompts import Prompt, build_prompt, token_lengths, truncate_reviews
from llmlab.eval.shards import shard_rows
from llmlab.gpus import bind_gpus
from llmlab.io import read_parquet, write_json, write_parquet
from llmlab.runtime import check_prepared_model, require_device
from llmlab.schemas import PREDICTIONS_SCHEMA, SPLIT_SCHEMA

log = logging.getLogger(__name__)

NO_STRATEGY = "-"  # the strategy of zero-shot systems (and baselines)


@dataclass(frozen=True)
class Setting:
    prompt: str
    strategy: str  # a few-shot strategy, or "-" at zero shots
    draw: int = 0  # which draw of a fixed example set (0: drawn with eval.fewshot.seed)

    @property
    def name(self) -> str:
        """Its name in progress and log lines: system/balanced, system/balanced/draw1."""
        base = f"{self.prompt}/{self.strategy}"
        return f"{base}/draw{self.draw}" if self.draw else base


def system_id(
    model: str,
    prompt: str,
    shots: int,
    strategy: str,
    backend: str,
    calibration: str,
    draw: int = 0,
) -> str:
    """Readable unique id, e.g. "instruct_lm/system/5shot/balanced/vllm/contextual"; draws
    d >= 1 of a fixed example set get a "/draw<d>" suffix (draw 0 keeps the plain id)."""
    parts = [model, prompt, f"{shots}shot", strategy, backend, calibration]
    sid = "/".join(p for p in parts if p != NO_STRATEGY)
    return f"{sid}/draw{draw}" if draw else sid


def draw_seed(seed: int, draw: int) -> int:
    """The example-selection seed of few-shot draw `draw`: `seed` itself for draw 0, else a
    32-bit seed derived from (seed, draw) by numpy's SeedSequence (distinct, reproducible)."""
    if draw == 0:
        return seed
    return int(np.random.SeedSequence([seed, draw]).generate_state(1)[0])


def plan_settings(eval_cfg: EvalConfig, shots: int) -> list[Setting]:
    """Every prompt x strategy x draw evaluated at this shot count (strategies need shots >
    0; only the fixed strategies have more than one draw)."""
    if shots == 0:
        return [Setting(p, NO_STRATEGY) for p in eval_cfg.prompts]
    draws = eval_cfg.fewshot.draws
    return [
        Setting(p, s, d)
        for p in eval_cfg.prompts
        for s in eval_cfg.fewshot.strategies
        for d in range(draws if s in FIXED_STRATEGIES else 1)
    ]


@dataclass
class SettingRequests:
    """All prompts of one setting: the evaluated reviews and the calibration inputs."""

    setting: Setting
    val: list[Prompt]
    content_free: list[Prompt]  # (queries x inputs) flattened for `similar`, else inputs
    per_query_prior: bool  # content_free holds one group of inputs per evaluated review
    holdout: list[Prompt]
    example_ids: list[int]  # every train review_id used as an in-context example
    fixed_example_ids: list[int] = field(default_factory=list)  # the shared set, if any


def _examples(rows: pl.DataFrame, text: dict[int, str]) -> list[tuple[str, str]]:
    return [(text[i], s) for i, s in zip(rows["review_id"], rows["sentiment"], strict=True)]


def similar_sets(
    pool: pl.DataFrame, val: pl.DataFrame, holdout: pl.DataFrame, shots: int
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Nearest pool examples of each evaluated and each held-out review (`similar`)."""
    val_sets = select_similar(pool, val["review"].to_list(), shots)
    holdout_sets = (
        select_similar(pool, holdout["review"].to_list(), shots) if holdout.height else []
    )
    return val_sets, holdout_sets


def build_requests(
    setting: Setting,
    *,
    shots: int,
    val: pl.DataFrame,
    pool: pl.DataFrame,
    holdout: pl.DataFrame,
    eval_cfg: EvalConfig,
    prompt_format: str,
    tokenizer,
    neighbours: tuple[list[pl.DataFrame], list[pl.DataFrame]] | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> SettingRequests:
    """Prompts of one setting; in-context examples come from `pool` only (checked).

    `neighbours` are precomputed `similar_sets` (they do not depend on the prompt, and the
    TF-IDF search over the pool is the slow part).
    """
    labels = eval_cfg.labels
    template = eval_cfg.prompts[setting.prompt]
    plain: PlainFormat = eval_cfg.plain_format
    methods = eval_cfg.calibration.methods

    def cut(texts: Sequence[str], budget: int) -> list[str]:
        return truncate_reviews(texts, tokenizer, budget, eval_cfg.review_head_fraction)

    def make(review: str, examples: list[tuple[str, str]]) -> Prompt:
        return build_prompt(
            template, review, labels, examples, prompt_format, plain, template_kwargs
        )

    val_text = cut(val["review"].to_list(), eval_cfg.review_tokens)
    holdout_text = cut(holdout["review"].to_list(), eval_cfg.review_tokens)
    content_free = eval_cfg.calibration.content_free
    seed = draw_seed(eval_cfg.fewshot.seed, setting.draw)

    if shots == 0 or setting.strategy in FIXED_STRATEGIES:
        chosen = (
            select_fixed(pool, setting.strategy, shots, labels, seed) if shots else pool.clear()
        )
        ids = chosen["review_id"].to_list()
        cut_examples = cut(chosen["review"].to_list(), eval_cfg.fewshot.example_tokens)
        text = dict(zip(ids, cut_examples, strict=True))
        examples = _examples(chosen, text)
        return SettingRequests(
            setting,
            val=[make(r, examples) for r in val_text],
            content_free=[make(c, examples) for c in content_free]
            if "contextual" in methods
            else [],
            per_query_prior=False,
            holdout=[make(r, examples) for r in holdout_text] if "threshold" in methods else [],
            example_ids=ids,
            fixed_example_ids=ids,
        )

    # `similar`: each query (and each held-out row) has its own nearest examples.
    val_sets, holdout_sets = neighbours or similar_sets(pool, val, holdout, shots)
    used = pl.concat([*val_sets, *holdout_sets]).unique("review_id")
    text = dict(
        zip(
            used["review_id"].to_list(),
            cut(used["review"].to_list(), eval_cfg.fewshot.example_tokens),
            strict=True,
        )
    )
    val_examples = [_examples(rows, text) for rows in val_sets]
    return SettingRequests(
        setting,
        val=[make(r, ex) for r, ex in zip(val_text, val_examples, strict=True)],
        # The prior depends on the examples, so it is measured per query with its examples.
        content_free=[make(c, ex) for ex in val_examples for c in content_free]
        if "contextual" in methods
        else [],
        per_query_prior=True,
        holdout=[
            make(r, _examples(rows, text))
            for r, rows in zip(holdout_text, holdout_sets, strict=True)
        ],
        example_ids=sorted(text),
    )


def calibrate(
    requests: SettingRequests,
    answers: Sequence[Prediction],
    content_free: Sequence[Prediction],
    holdout: Sequence[Prediction],
    holdout_gold: Sequence[str],
    labels: Sequence[str],
    methods: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per method: predictions, their label scores and the bias that was subtracted."""
    scores = np.array([a.label_scores for a in answers])
    out: dict[str, dict[str, Any]] = {
        "none": {
            "predictions": [a.prediction for a in answers],
            "scores": scores,
            "bias": np.zeros(len(labels)),
        }
    }
    biases: dict[str, np.ndarray] = {}
    if "contextual" in methods:
        cf = np.array([c.label_scores for c in content_free])
        if requests.per_query_prior:
            cf = cf.reshape(len(answers), -1, len(labels))
        biases["contextual"] = contextual_bias(cf)
    if "threshold" in methods:
        gold = [labels.index(g) for g in holdout_gold]
        biases["threshold"] = fit_threshold_bias(np.array([h.label_scores for h in holdout]), gold)
    for method, bias in biases.items():
        calibrated = apply_bias(scores, bias)
        out[method] = {
            "predictions": argmax_labels(calibrated, labels),
            "scores": calibrated,
            "bias": bias,
        }
    return out


def prediction_rows(
    *,
    model: str,
    shots: int,
    backend: str,
    setting: Setting,
    calibration: str,
    val: pl.DataFrame,
    answers: Sequence[Prediction],
    predictions: Sequence[str | None],
    scores: np.ndarray,
    labels: Sequence[str],
    review_tokens: Sequence[int] | None = None,
) -> pl.DataFrame:
    """Rows of one system in PREDICTIONS_SCHEMA. `review_tokens`: each review's length in the
    model's tokens before truncation (null when not given)."""
    n = val.height
    valid = [p is not None and p in labels for p in predictions]
    sid = system_id(
        model, setting.prompt, shots, setting.strategy, backend, calibration, setting.draw
    )
    return pl.DataFrame(
        {
            "system": [sid] * n,
            "model": [model] * n,
            "prompt": [setting.prompt] * n,
            "shots": [shots] * n,
            "strategy": [setting.strategy] * n,
            "draw": [setting.draw] * n,
            "backend": [backend] * n,
            "calibration": [calibration] * n,
            "review_id": val["review_id"],
            "gold": val["sentiment"],
            "prediction": [p if ok else None for p, ok in zip(predictions, valid, strict=True)],
            "valid": valid,
            "raw_output": [a.raw_output for a in answers],
            "label_scores": [list(map(float, s)) for s in scores],
            "seconds": [a.seconds for a in answers],
            "review_tokens": list(review_tokens) if review_tokens is not None else [None] * n,
        },
        schema=PREDICTIONS_SCHEMA,
    )


def evaluate(
    backend: Backend,
    tokenizer,
    *,
    model: str,
    shots: int,
    train: pl.DataFrame,
    val: pl.DataFrame,
    eval_cfg: EvalConfig,
    prompt_format: str,
    template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every setting x calibration of one model at one shot count: (predictions, run info).

    `template_kwargs`: extra chat template variables of the model (e.g. a pinned date).
    """
    labels = list(eval_cfg.labels)
    holdout_rows = (
        eval_cfg.calibration.threshold_rows if "threshold" in eval_cfg.calibration.methods else 0
    )
    pool, holdout = split_pool(train, holdout_rows, eval_cfg.calibration.seed)
    val_ids = val["review_id"].to_list()
    check_no_leakage(holdout["review_id"].to_list(), val_ids, "calibration threshold slice")
    # Lengths before truncation: the error analysis compares truncated with whole reviews.
    review_tokens = token_lengths(val["review"].to_list(), tokenizer)
    frames: list[pl.DataFrame] = []
    settings_info: list[dict[str, Any]] = []
    neighbours = None
    for setting in plan_settings(eval_cfg, shots):
        name = setting.name
        if setting.strategy == "similar" and neighbours is None:
            neighbours = similar_sets(pool, val, holdout, shots)
        req = build_requests(
            setting,
            shots=shots,
            val=val,
            pool=pool,
            holdout=holdout,
            eval_cfg=eval_cfg,
            prompt_format=prompt_format,
            tokenizer=tokenizer,
            neighbours=neighbours if setting.strategy == "similar" else None,
            template_kwargs=template_kwargs,
        )
        check_no_leakage(req.example_ids, val_ids, f"{name}: in-context examples")
        check_no_leakage(req.example_ids, holdout["review_id"].to_list(), f"{name}: examples")
        log.info(
            "%s: %d reviews, %d calibration prompts",
            name,
            len(req.val),
            len(req.content_free) + len(req.holdout),
        )
        t0 = time.perf_counter()
        answers = backend.classify(req.val, labels, desc=name)
        t1 = time.perf_counter()
        content_free = backend.classify(req.content_free, labels, desc=f"{name} content-free")
        holdout_answers = backend.classify(req.holdout, labels, desc=f"{name} threshold slice")
        t2 = time.perf_counter()
        results = calibrate(
            req,
            answers,
            content_free,
            holdout_answers,
            holdout["sentiment"].to_list(),
            labels,
            eval_cfg.calibration.methods,
        )
        for method in eval_cfg.calibration.methods:
            result = results[method]
            frames.append(
                prediction_rows(
                    model=model,
                    shots=shots,
                    backend=backend.name,
                    setting=setting,
                    calibration=method,
                    val=val,
                    answers=answers,
                    predictions=result["predictions"],
                    scores=result["scores"],
                    labels=labels,
                    review_tokens=review_tokens,
                )
            )
        raw_scores = results["none"]["scores"]
        argmax = argmax_labels(raw_scores, labels)
        settings_info.append(
            {
                "prompt": setting.prompt,
                "strategy": setting.strategy,
                "draw": setting.draw,
                # the example-selection seed of this draw (fixed strategies only)
                "seed": draw_seed(eval_cfg.fewshot.seed, setting.draw)
                if setting.strategy in FIXED_STRATEGIES
                else None,
                "fixed_example_ids": req.fixed_example_ids,
                "example_ids": req.example_ids,  # eval_llm_gather keeps only their count
                "seconds": t1 - t0,
                "calibration_seconds": t2 - t1,
                # How often the engine's answer is the best-scored label (1.0 for
                # transformers; vLLM's choice text vs its first-token scores).
                "answer_matches_scores": float(
                    np.mean([a.prediction == b for a, b in zip(answers, argmax, strict=True)])
                ),
                # Per-query biases (`similar` + contextual) are averaged over queries.
                "bias": {
                    m: np.atleast_2d(results[m]["bias"]).mean(axis=0).tolist()
                    for m in eval_cfg.calibration.methods
                },
            }
        )
    info = {
        "model": model,
        "shots": shots,
        "backend": backend.name,
        "load_seconds": getattr(backend, "load_seconds", None),
        "labels": labels,
        "val_rows": val.height,
        "pool_rows": pool.height,
        "threshold_rows": holdout.height,
        "settings": settings_info,
    }
    return pl.concat(frames), info


def _check_inputs(
    cfg: Config, model: str, shots: int, model_dir: Path, train: Path, val: Path
) -> tuple[pl.DataFrame, pl.DataFrame]:
    check_key(model, cfg.eval.models, flag="--model:", where="eval.models")
    check_key(shots, cfg.eval.shots, flag="--shots:", where="eval.shots")
    check_prepared_model(model_dir)
    train_df = read_parquet(train, SPLIT_SCHEMA)
    val_df = read_parquet(val, SPLIT_SCHEMA)
    for path, df in ((train, train_df), (val, val_df)):
        unknown = sorted(set(df["sentiment"].unique().to_list()) - set(cfg.eval.labels))
        if unknown:
            raise UserError(f"{path}: sentiments {unknown} are not in eval.labels")
        if df.is_empty():
            raise UserError(f"{path}: no rows")
    overlap = set(train_df["review_id"]) & set(val_df["review_id"])
    if overlap:
        raise UserError(f"{val}: {len(overlap)} review_ids are also in {train} (not a clean split)")
    return train_df, val_df


def _check_shard(shard: int, shards: int) -> None:
    if not 0 <= shard < shards:
        raise UserError(f"--shard: {shard} is not in 0..{shards - 1} (eval.shards: {shards})")


def run_eval_llm(
    cfg: Config,
    *,
    model: str,
    shots: int,
    shard: int,
    model_dir: Path,
    train: Path,
    val: Path,
    predictions: Path,
    info: Path,
) -> None:
    """CLI layer of eval-llm: check inputs, load the engine once, evaluate one shard of the
    validation rows, write its predictions and run info (eval_llm_gather joins the shards).

    Everything a shard computes besides its own reviews (few-shot examples, content-free
    priors, the threshold slice) depends on the config and train split only, so every shard
    computes the same values and the joined result equals a single job's.
    """
    bind_gpus(cfg.device, cfg.eval.gpus_per_job)
    require_device(cfg.device, gpus=cfg.eval.gpus_per_job, where="eval.vllm.tensor_parallel_size")
    _check_shard(shard, cfg.eval.shards)
    from transformers import AutoTokenizer

    train_df, val_df = _check_inputs(cfg, model, shots, model_dir, train, val)
    eval_cfg = cfg.eval
    rows = shard_rows(val_df, shard, eval_cfg.shards, eval_cfg.shard_seed)
    prompt_format = cfg.models[model].prompt_format
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if prompt_format == "chat" and not tokenizer.chat_template:
        raise UserError(
            f"models.{model}.prompt_format: chat, but {model_dir} has no chat template "
            "(a base model?); set prompt_format: plain"
        )
    log.info(
        "shard %d of %d: %d of %d validation reviews",
        shard,
        eval_cfg.shards,
        rows.height,
        val_df.height,
    )
    if rows.is_empty():
        # Possible when shards outnumber reviews: nothing to score, no engine to start.
        preds = pl.DataFrame(schema=PREDICTIONS_SCHEMA)
        run_info = {"model": model, "shots": shots, "settings": [], "load_seconds": 0.0}
    else:
        backend = make_backend(
            eval_cfg.backend, model_dir, eval_cfg.vllm, eval_cfg.transformers, cfg.device
        )
        start = time.perf_counter()
        preds, run_info = evaluate(
            backend,
            tokenizer,
            model=model,
            shots=shots,
            train=train_df,
            val=rows,
            eval_cfg=eval_cfg,
            prompt_format=prompt_format,
            template_kwargs=cfg.models[model].chat_template_kwargs,
        )
        run_info["eval_seconds"] = time.perf_counter() - start
    run_info |= {
        "shard": shard,
        "shards": eval_cfg.shards,
        "shard_seed": eval_cfg.shard_seed,
        "rows": rows.height,
        "systems": list(dict.fromkeys(preds["system"].to_list())),
    }
    write_parquet(preds, predictions)
    write_json(run_info, info)
