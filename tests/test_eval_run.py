"""eval_llm's plain function with a fake scorer: systems, schema, calibration, no leakage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmlab.config import load_params
from llmlab.eval.backends import Prediction
from llmlab.eval.calibration import normalize
from llmlab.eval.metrics import metrics_by_system
from llmlab.eval.prompts import Prompt
from llmlab.eval.run import evaluate, plan_settings, system_id
from llmlab.schemas import PREDICTIONS_SCHEMA

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

LABELS = ["negative", "positive"]


class WordTokenizer:
    def __call__(self, texts, add_special_tokens=False, return_offsets_mapping=False):
        import re

        return {"offset_mapping": [[m.span() for m in re.finditer(r"\S+", t)] for t in texts]}


class BiasedKeywordBackend:
    """Scores "great" as positive evidence, "awful" as negative, plus a pull to `negative`.

    Records the query review (the last user turn) of every prompt, by call.
    """

    name = "fake"

    def __init__(self) -> None:
        self.calls: dict[str, list[str]] = {}

    def classify(
        self, prompts: Sequence[Prompt], labels: Sequence[str], *, desc: str = "fake"
    ) -> list[Prediction]:
        out = []
        for p in prompts:
            query = p.messages[-1]["content"]
            self.calls.setdefault(desc, []).append(query)
            evidence = 2.0 * ("great" in query) - 2.0 * ("awful" in query)
            scores = normalize(np.array([3.0, evidence]))
            best = labels[int(np.argmax(scores))]
            out.append(Prediction(best, best, tuple(scores), 0.01))
        return out


def frame(start: int, n: int) -> pl.DataFrame:
    ids = list(range(start, start + n))
    return pl.DataFrame(
        {
            "review_id": ids,
            "review": [f"review {i} was {'great' if i % 2 else 'awful'}" for i in ids],
            "sentiment": ["positive" if i % 2 else "negative" for i in ids],
        }
    )


def small_eval_cfg():
    """The demo eval config with every strategy and calibration method, fewer resamples."""
    cfg = load_params(PARAMS, preset="demo").eval
    return cfg.model_copy(
        update={
            "prompts": {k: cfg.prompts[k] for k in ("minimal", "system")},
            "fewshot": cfg.fewshot.model_copy(
                update={"strategies": ["random", "balanced", "similar"]}
            ),
            "calibration": cfg.calibration.model_copy(
                update={"methods": ["none", "contextual", "threshold"], "threshold_rows": 20}
            ),
            "bootstrap": cfg.bootstrap.model_copy(update={"resamples": 200}),
        }
    )


@pytest.fixture(scope="module")
def eval_cfg():
    return small_eval_cfg()


@pytest.mark.parametrize("shots", [0, 3])
def test_evaluate_every_setting_and_calibration(eval_cfg, shots):
    train, val = frame(0, 100), frame(1000, 30)
    backend = BiasedKeywordBackend()
    preds, info = evaluate(
        backend,
        WordTokenizer(),
        model="instruct_lm",
        shots=shots,
        train=train,
        val=val,
        eval_cfg=eval_cfg,
        prompt_format="chat",
    )
    settings = plan_settings(eval_cfg, shots)
    draws = eval_cfg.fewshot.draws  # the demo's: random and balanced have `draws` settings
    assert draws == 2
    assert len(settings) == (2 if shots == 0 else 2 * (2 * draws + 1))
    assert preds.schema == PREDICTIONS_SCHEMA
    assert preds["system"].n_unique() == len(settings) * 3
    assert preds.height == len(settings) * 3 * val.height
    assert sorted(preds["review_id"].unique()) == val["review_id"].to_list()
    metrics = metrics_by_system(preds, eval_cfg)
    # The fake scorer is always pulled to "negative": uncalibrated it never says positive,
    # both calibrations undo the pull exactly (keywords decide every review).
    zero = system_id("instruct_lm", "system", shots, settings[-1].strategy, "fake", "none")
    assert metrics[zero]["predicted_positive_rate"] == 0.0
    for method in ("contextual", "threshold"):
        sid = system_id("instruct_lm", "system", shots, settings[-1].strategy, "fake", method)
        assert metrics[sid]["accuracy"] == 1.0
    # Threshold slice and in-context examples: train rows only, never an evaluated review.
    val_text = set(val["review"])
    for desc, queries in backend.calls.items():
        if "threshold" in desc or "content-free" in desc:
            assert not val_text & set(queries), desc
    for s in info["settings"]:
        assert not set(s["fixed_example_ids"]) & set(val["review_id"])
    assert info["threshold_rows"] == 20


def test_few_shot_turns_come_from_train(eval_cfg):
    backend = BiasedKeywordBackend()
    seen: list[Prompt] = []
    original = backend.classify

    def spy(prompts, labels, *, desc="fake"):
        seen.extend(prompts)
        return original(prompts, labels, desc=desc)

    backend.classify = spy
    train, val = frame(0, 100), frame(1000, 10)
    evaluate(backend, WordTokenizer(), model="m", shots=3, train=train, val=val,
             eval_cfg=eval_cfg, prompt_format="chat")  # fmt: skip
    train_text = set(train["review"])
    for prompt in seen:
        examples = [m["content"] for m in prompt.messages if m["role"] == "user"][:-1]
        assert len(examples) == 3
        assert all(any(t in e for t in train_text) for e in examples)


@pytest.fixture()
def split_files(tmp_path):
    from llmlab.io import write_parquet

    write_parquet(frame(0, 40), tmp_path / "train.parquet")
    write_parquet(frame(1000, 10), tmp_path / "val.parquet")
    return tmp_path


def _run(cfg, split_files, model_dir, **kw):
    from llmlab.eval.run import run_eval_llm

    args = {
        "model": "instruct_lm",
        "shots": 0,
        "shard": 0,
        "model_dir": model_dir,
        "train": split_files / "train.parquet",
        "val": split_files / "val.parquet",
        "predictions": split_files / "out" / "0.parquet",
        "info": split_files / "out" / "0.json",
    }
    run_eval_llm(cfg, **(args | kw))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": "sft_lm"}, "--model: 'sft_lm' is not in eval.models"),
        ({"shots": 3}, "--shots: 3 is not in eval.shots"),
        ({"shard": 1}, "--shard: 1 is not in 0..0"),
        ({"val": "train.parquet"}, "are also in"),
    ],
)
def test_bad_inputs_fail_before_any_work(split_files, tiny_llama_dir, kw, message):
    from llmlab.errors import UserError

    cfg = load_params(PARAMS, preset="demo")
    if "val" in kw:
        kw = {"val": split_files / kw["val"]}
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        _run(cfg, split_files, tiny_llama_dir, **kw)
    assert not (split_files / "out").exists()


def test_chat_format_needs_a_chat_template(split_files, tiny_llama_dir, tmp_path):
    import json
    import shutil

    from llmlab.errors import UserError

    plain_dir = tmp_path / "no_template"
    shutil.copytree(tiny_llama_dir, plain_dir)
    (plain_dir / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain_dir / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain_dir / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="prompt_format: chat, but"):
        _run(load_params(PARAMS, preset="demo"), split_files, plain_dir)
    assert not (split_files / "out").exists()


def test_few_shot_draws_are_deterministic_distinct_and_draw0_is_the_single_draw(eval_cfg):
    from llmlab.eval.run import draw_seed

    def with_draws(k):
        return eval_cfg.model_copy(
            update={"fewshot": eval_cfg.fewshot.model_copy(update={"draws": k})}
        )

    three = with_draws(3)
    train, val = frame(0, 100), frame(1000, 12)
    kw = {"model": "m", "shots": 3, "train": train, "val": val, "prompt_format": "chat"}
    single, _ = evaluate(BiasedKeywordBackend(), WordTokenizer(), eval_cfg=with_draws(1), **kw)
    seen: dict[str, list[Prompt]] = {}
    backend = BiasedKeywordBackend()
    original = backend.classify

    def spy(prompts, labels, *, desc="fake"):
        seen.setdefault(desc, []).extend(prompts)
        return original(prompts, labels, desc=desc)

    backend.classify = spy
    preds, info = evaluate(backend, WordTokenizer(), eval_cfg=three, **kw)
    again, again_info = evaluate(BiasedKeywordBackend(), WordTokenizer(), eval_cfg=three, **kw)
    timing = {"seconds", "calibration_seconds"}

    def untimed(settings):
        return [{k: v for k, v in s.items() if k not in timing} for s in settings]

    assert preds.equals(again)  # deterministic
    assert untimed(info["settings"]) == untimed(again_info["settings"])
    # K = 1 is draw 0 of K = 3, row for row (ids unchanged), and K = 1 has only draw 0.
    assert preds.filter(pl.col("draw") == 0).equals(single)
    assert set(single["draw"]) == {0}
    # 2 prompts x (random 3 draws + balanced 3 draws + similar 1) settings x 3 calibrations
    assert len(info["settings"]) == 2 * (3 + 3 + 1)
    assert preds["system"].n_unique() == 2 * (3 + 3 + 1) * 3
    for strategy in ("random", "balanced"):
        sets = {
            s["draw"]: tuple(s["fixed_example_ids"])
            for s in info["settings"]
            if s["strategy"] == strategy and s["prompt"] == "system"
        }
        assert sorted(sets) == [0, 1, 2] and len(set(sets.values())) == 3  # distinct draws
        seeds = [s["seed"] for s in info["settings"] if s["strategy"] == strategy]
        assert seeds[:3] == [three.fewshot.seed, draw_seed(42, 1), draw_seed(42, 2)]
        # The same draw is the same examples under every prompt (the seed decides).
        other = {
            s["draw"]: tuple(s["fixed_example_ids"])
            for s in info["settings"]
            if s["strategy"] == strategy and s["prompt"] == "minimal"
        }
        assert other == sets
    assert {s["draw"] for s in info["settings"] if s["strategy"] == "similar"} == {0}
    assert len({draw_seed(42, d) for d in range(50)}) == 50
    # Draws d >= 1 are suffixed; each draw's prompts share their examples (one prefix).
    sid = system_id("m", "system", 3, "balanced", "fake", "contextual", 2)
    assert sid == "m/system/3shot/balanced/fake/contextual/draw2" and sid in set(preds["system"])
    prompts = seen["system/balanced/draw2"]
    assert len(prompts) == val.height and all(p.messages[:-1] == prompts[0].messages[:-1]
                                              for p in prompts)  # fmt: skip
    assert prompts[0].messages[:-1] != seen["system/balanced"][0].messages[:-1]


def test_review_tokens_are_lengths_before_truncation(eval_cfg):
    short = eval_cfg.model_copy(update={"review_tokens": 3})
    train, val = frame(0, 60), frame(1000, 4)
    val = val.with_columns(pl.Series("review", ["a b", "a b c", "a b c d e", "x " * 9]))
    preds, _ = evaluate(BiasedKeywordBackend(), WordTokenizer(), model="m", shots=0,
                        train=train, val=val, eval_cfg=short, prompt_format="chat")  # fmt: skip
    first = preds.filter(pl.col("system") == preds["system"][0])
    assert first["review_tokens"].to_list() == [2, 3, 5, 9]
    assert preds.schema == PREDICTIONS_SCHEMA
