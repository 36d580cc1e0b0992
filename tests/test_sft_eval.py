"""Held-out prompts, format-following metrics and the judged pairwise comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from llmlab.config import JudgeConfig, JudgeSanityConfig, load_params, read_params_file, resolve
from llmlab.errors import UserError
from llmlab.io import write_parquet
from llmlab.schemas import HELDOUT_ANSWERS
from llmlab.sft_eval import (
    SANITY_PAIR,
    answer_features,
    corpus_distinct_n,
    corrupted_references,
    distinct_n,
    format_metrics,
    heldout_prompts,
    judge_requests,
    judge_summary,
    read_answers,
    repeated_ngram_rate,
    sanity_requests,
    script,
    self_judging,
    unswap,
)

ROOT = Path(__file__).resolve().parents[1]


def dialogues(*pairs: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "messages": [
                [{"content": q, "role": "user"}, {"content": a, "role": "assistant"}]
                for q, a in pairs
            ]
        }
    )


def test_heldout_prompts_skip_what_any_variant_trained_on():
    train_a = dialogues(("q1", "a1"), ("q2", "a2"))
    train_b = dialogues(("q3", "a3"))
    eval_a = dialogues(("q3", "a3"), ("q4", "a4"), ("q5", "a5"))  # q3: in b's train split
    eval_b = dialogues(("q4", "a4 again"), ("q6", "a6"))
    held = heldout_prompts([train_a, train_b], [eval_a, eval_b], count=10, seed=0)
    assert sorted(held["prompt"]) == ["q4", "q5", "q6"]
    assert dict(zip(held["prompt"], held["reference"], strict=True))["q4"] == "a4"  # first seen
    assert held["prompt_id"].to_list() == [0, 1, 2]
    # Seeded and stable: the same `count` prompts whatever the order of the inputs.
    two = heldout_prompts([train_b, train_a], [eval_b, eval_a], count=2, seed=0)
    assert two["prompt"].to_list() == held["prompt"].to_list()[:2]
    assert heldout_prompts([train_a], [eval_a], count=2, seed=1)["prompt"].to_list() != []
    with pytest.raises(UserError, match="no held-out prompt"):
        heldout_prompts([eval_a], [eval_a], count=2, seed=0)


def test_answer_features_on_hand_made_answers():
    assert script("Привет, как дела?") == "cyrillic" and script("Hello there") == "latin"
    assert script("123 ...") is None
    tokens = ["a", "b", "a", "b", "a", "b"]
    assert distinct_n(tokens, 2) == pytest.approx(2 / 5)  # ab, ba, ab, ba, ab
    # 4-grams: abab, baba, abab(repeat): 1 of 3
    assert repeated_ngram_rate(tokens, 4) == pytest.approx(1 / 3)
    assert repeated_ngram_rate(["a", "b"], 4) is None
    # Corpus-level distinct-2: bigrams pooled over the answers (ab, bc | ab, bd: 3 distinct of
    # 4), not the mean of each answer's ratio (1.0); no bigram across two answers.
    assert corpus_distinct_n([["a", "b", "c"], ["a", "b", "d"]], 2) == pytest.approx(3 / 4)
    assert np.mean([distinct_n(t, 2) for t in (["a", "b", "c"], ["a", "b", "d"])]) == 1.0
    assert corpus_distinct_n([["a"], ["b"]], 2) is None

    good = answer_features("Что такое логистическая регрессия?", "Это модель классификации.", True)
    assert good["stopped"] and good["same_script"] and not good["leaked_marker"]
    assert good["words"] == 3 and good["distinct_2"] == 1.0
    english = answer_features("Что такое регрессия?", "It is a model.", True)
    assert english["same_script"] is False
    leak = answer_features("Вопрос", "Ответ<|start_header_id|>user<|end_header_id|>", False)
    assert leak["leaked_marker"] and not leak["stopped"]
    assert answer_features("Вопрос", "   ", True)["empty"]


def _answers(systems: dict[str, list[tuple[str, bool]]], prompts: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for system, answers in systems.items():
        for (pid, prompt, ref), (answer, finished) in zip(
            prompts.iter_rows(), answers, strict=True
        ):
            rows.append(
                {
                    "prompt_id": pid,
                    "prompt": prompt,
                    "reference": ref,
                    "system": system,
                    "answer": answer,
                    "new_tokens": len(answer.split()),
                    "finished": finished,
                }
            )
    return pl.DataFrame(rows).select(HELDOUT_ANSWERS)


PROMPTS = pl.DataFrame(
    {
        "prompt_id": [0, 1, 2, 3],
        "prompt": ["Вопрос один?", "Вопрос два?", "Вопрос три?", "Вопрос четыре?"],
        "reference": ["один два три", "четыре пять шесть", "семь восемь", "девять"],
    }
)


def test_format_metrics_per_system_with_cis():
    answers = _answers(
        {
            "base": [
                ("go go go go go go", False),
                ("user: hi", False),
                ("Ответ", True),
                ("", False),
            ],
            "a": [("Ответ один", True), ("Ответ два", True), ("Ответ три", True), ("x", False)],
        },
        PROMPTS,
    )
    out = format_metrics(answers, PROMPTS, resamples=200, seed=0)
    base, a = out["systems"]["base"], out["systems"]["a"]
    assert base["stopped"] == 0.25 and a["stopped"] == 0.75
    assert a["same_script"] == 0.75  # "x" is Latin
    assert base["empty"] == 0.25
    # One answer has four words or more: 3 identical 4-grams, the last two repeats.
    assert base["repeated_4gram_rate"] == pytest.approx(2 / 3)
    # Shares: Wilson intervals (statsmodels as the reference), not a bootstrap that collapses
    # to [0%, 0%] when nothing leaked.
    for system in (base, a):
        for name in ("stopped", "same_script", "leaked_marker", "empty"):
            k = round(system[name] * 4)
            assert system[f"{name}_ci"] == pytest.approx(
                proportion_confint(k, 4, alpha=0.05, method="wilson"), abs=1e-12
            )
    assert a["leaked_marker"] == 0.0 and a["leaked_marker_ci"][1] > 0.4
    # Corpus-level distinct-2: base's bigrams are go-go x5 and user-hi: 2 distinct of 6.
    assert base["corpus_distinct_2"] == pytest.approx(2 / 6)
    assert out["reference"]["median_words"] == 2.5
    assert a["median_words"] == 2.0 and a["length_ratio_to_reference"] == pytest.approx(0.8)
    # a's cut answer ("x", 1 word) cannot move its median (2, 2, 2, >= 1 words): exact.
    assert a["cut_share"] == 0.25 and not a["length_ratio_is_lower_bound"]


def test_length_ratio_is_withheld_or_a_bound_when_answers_were_cut():
    long = "один два три четыре пять шесть"
    answers = _answers(
        {
            # Every answer cut at max_new_tokens: the ratio would only restate the cut-off.
            "base": [(long, False)] * 4,
            # Only the longest answer cut: lengthening it cannot move the median.
            "a": [("Ответ", True), ("Ответ два", True), ("Ответ три", True), (long, False)],
            # Half cut: their true lengths set the median, which is only a lower bound.
            "b": [("Ответ", True), ("Ответ два", True), (long, False), (long, False)],
        },
        PROMPTS,
    )
    systems = format_metrics(answers, PROMPTS, resamples=50, seed=0)["systems"]
    assert systems["base"]["cut_share"] == 1.0
    assert systems["base"]["length_ratio_to_reference"] is None
    assert systems["a"]["length_ratio_to_reference"] == pytest.approx(2.0 / 2.5)
    assert not systems["a"]["length_ratio_is_lower_bound"]
    assert systems["b"]["length_ratio_is_lower_bound"]


def test_both_orders_are_requested_and_unswapped():
    answers = _answers(
        {s: [(f"{s}{i}", True) for i in range(4)] for s in ("base", "a", "b")}, PROMPTS
    )
    req = judge_requests(answers, PROMPTS, ["base", "a", "b"])
    assert req.height == 3 * 4 * 2
    assert req["pair"].unique(maintain_order=True).to_list() == ["base vs a", "base vs b", "a vs b"]
    swapped = req.filter(pl.col("swapped") & (pl.col("pair") == "base vs a")).row(0, named=True)
    assert swapped["system_a"] == "a" and swapped["answer_a"] == "a0"
    assert swapped["system_b"] == "base" and swapped["answer_b"] == "base0"
    assert [unswap(v, True) for v in ("A", "B", "tie", None)] == ["B", "A", "tie", None]
    assert unswap("A", False) == "A"


def _judged(
    plain: list[str | None],
    swap: list[str | None],
    *,
    pair: tuple[str, str] = ("base", "a"),
) -> pl.DataFrame:
    """Verdicts as the judge gave them (as shown), per prompt: `plain` with the first system
    as A, `swap` with it as B."""
    n = len(plain)
    first, second = pair
    name = SANITY_PAIR if pair == ("reference", "corrupted") else f"{first} vs {second}"
    return pl.DataFrame(
        {
            "pair": [name] * 2 * n,
            "first": [first] * 2 * n,
            "second": [second] * 2 * n,
            "prompt_id": list(range(n)) * 2,
            "swapped": [False] * n + [True] * n,
            "verdict": plain + swap,
        },
        schema_overrides={"verdict": pl.String},
    )


def _sanity(passing: int, n: int = 10) -> pl.DataFrame:
    """The sanity rows: the reference preferred in both orders on `passing` prompts; on the
    others the judge picks position A both times (it prefers the reference once)."""
    plain = ["A"] * n
    swap = ["B"] * passing + ["A"] * (n - passing)
    return _judged(plain, swap, pair=("reference", "corrupted"))


JUDGE = JudgeConfig()


def _summary(*frames: pl.DataFrame, **kwargs) -> dict:
    return judge_summary(pl.concat(frames), JUDGE, **kwargs)


def test_judge_summary_win_rate_and_position_consistency():
    # Prompt 0: base wins in both orders (A, then B once swapped); prompt 1: a wins in both;
    # prompt 2: the judge always says A (position bias): inconsistent, 1/2; prompt 3: tie.
    judged = _judged(["A", "B", "A", "tie"], ["B", "A", "A", "tie"])
    (pair,) = _summary(judged, _sanity(10))["pairs"]
    assert pair["position_consistency"] == pytest.approx(3 / 4) and pair["trusted"]
    assert pair["reasons"] == [] and pair["better"] is None
    assert pair["verdicts"] == {"A": 3, "B": 3, "tie": 2}
    assert pair["verdicts_as_shown"] == {"A": 4, "B": 2, "tie": 2}
    assert pair["win_rate"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    # The interval and the test of 1/2 against statsmodels: Wilson with the summed scores,
    # and the score test (variance under the null).
    assert pair["win_rate_ci"] == pytest.approx(
        proportion_confint(2.0, 4, alpha=0.05, method="wilson"), abs=1e-12
    )
    assert pair["p_value"] == pytest.approx(proportions_ztest(2.0, 4, value=0.5, prop_var=0.5)[1])


def test_degenerate_judges_get_no_win_rate():
    # An always-tie judge agrees with itself on every prompt: it used to be trusted at
    # "50% [50%, 50%]". It says nothing: degenerate, no win rate.
    (tie,) = _summary(_judged(["tie"] * 10, ["tie"] * 10), _sanity(10))["pairs"]
    assert tie["position_consistency"] == 1.0 and not tie["trusted"]
    assert tie["reasons"] == ["degenerate verdicts (100% 'tie', max 80%)"]
    assert tie["win_rate"] is None and tie["win_rate_ci"] is None and tie["better"] is None
    # An always-"A" judge: 50% once unswapped, but pure position bias.
    (first,) = _summary(_judged(["A"] * 10, ["A"] * 10), _sanity(10))["pairs"]
    assert first["verdicts"] == {"A": 10, "B": 10, "tie": 0}
    assert first["reasons"] == [
        "degenerate verdicts (100% 'A', max 80%)",
        "position consistency 0% < 60%",
    ]
    assert first["win_rate"] is None
    # At the threshold (8 of 10 verdicts of one kind per order: 80%) the judge is not
    # degenerate; above it, it is.
    assert _summary(_judged(["tie"] * 8 + ["A", "B"], ["tie"] * 8 + ["B", "A"]), _sanity(10))[
        "pairs"
    ][0]["trusted"]
    assert not _summary(_judged(["tie"] * 9 + ["A"], ["tie"] * 9 + ["B"]), _sanity(10))["pairs"][0][
        "trusted"
    ]


def test_the_sanity_check_reads_most_prompts_with_wilson():
    good = _judged(["A", "B"] * 5, ["B", "A"] * 5)  # consistent, balanced
    for passing, passed in ((10, True), (9, True), (8, False), (0, False)):
        out = _summary(good, _sanity(passing))
        sanity = out["sanity"]
        low, high = proportion_confint(passing, 10, alpha=0.05, method="wilson")
        assert sanity["share_ci"] == pytest.approx([low, high], abs=1e-12)
        # "Most prompts": the Wilson lower bound above 1/2 (8 of 10: 0.49; 9 of 10: 0.60).
        assert sanity["passed"] is passed is (low > 0.5)
        (pair,) = out["pairs"]
        assert pair["trusted"] is passed
        assert ("failed the sanity check" in pair["reasons"]) is not passed
        assert (pair["win_rate"] is None) is not passed
    # No sanity rows at all (no usable reference): not passed.
    assert not _summary(good)["sanity"]["passed"]
    # A tie in either order is not a preference for the reference.
    ties = _judged(["A"] * 10, ["tie"] * 10, pair=("reference", "corrupted"))
    assert _summary(good, ties)["sanity"]["preferred_reference"] == 0


def test_a_self_judging_judge_gets_no_win_rate():
    good = _judged(["A"] * 9 + ["B"], ["B"] * 9 + ["A"])
    out = _summary(good, _sanity(10), self_judging="the judge is the SFT base model itself")
    (pair,) = out["pairs"]
    assert out["self_judging"] == "the judge is the SFT base model itself"
    assert pair["reasons"] == ["self-judging"] and not pair["trusted"]
    assert pair["win_rate"] is None and pair["better"] is None and pair["p_adjusted"] is None
    # The same verdicts from another model: trusted, and base is better.
    assert _summary(good, _sanity(10))["pairs"][0]["better"] == "base"


def _pair_with(first_wins: int, second_wins: int, ties: int, pair: tuple[str, str]):
    plain = ["A"] * first_wins + ["B"] * second_wins + ["tie"] * ties
    swap = ["B"] * first_wins + ["A"] * second_wins + ["tie"] * ties
    return _judged(plain, swap, pair=pair)


def test_better_only_where_the_bonferroni_interval_excludes_one_half():
    pairs = [("base", "a"), ("base", "b"), ("a", "b")]
    out = _summary(
        _pair_with(30, 10, 0, pairs[0]),
        _pair_with(26, 14, 0, pairs[1]),
        _pair_with(8, 12, 20, pairs[2]),
        _sanity(10),
    )
    assert out["family_size"] == 3
    base_a, base_b, a_b = out["pairs"]
    for pair, wins in zip(out["pairs"], (30, 26, 18), strict=True):
        p = proportions_ztest(wins, 40, value=0.5, prop_var=0.5)[1]
        assert pair["p_value"] == pytest.approx(p)
        assert pair["p_adjusted"] == pytest.approx(min(1.0, 3 * p))
        assert pair["win_rate_ci"] == pytest.approx(
            proportion_confint(wins, 40, alpha=0.05 / 3, method="wilson"), abs=1e-12
        )
    assert base_a["better"] == "base"  # 75%, p = 0.0016, 0.0047 corrected
    assert base_b["better"] is None  # 65%, p = 0.058: not even before the correction
    assert a_b["better"] is None and a_b["win_rate"] == pytest.approx(0.45)
    # Every split of 40 prompts: "better" exactly when the corrected interval excludes 1/2.
    for k in range(41):
        out = _summary(
            _pair_with(k, 40 - k, 0, pairs[0]),
            _pair_with(20, 20, 0, pairs[1]),
            _pair_with(20, 20, 0, pairs[2]),
            _sanity(10),
        )
        pair = out["pairs"][0]
        low, high = pair["win_rate_ci"]
        excludes = low > 0.5 or high < 0.5
        assert (pair["better"] is not None) is excludes is (pair["p_adjusted"] < 0.05), k
        if excludes:
            assert pair["better"] == ("base" if k > 20 else "a")


def test_judges_without_preference_are_not_believed():
    """The benchmark's no-effect simulation, few runs: random and position-biased judges are
    not trusted, and a good judge of equal systems claims "better" at most ~5% of runs."""
    rates = dict(_benchmark().simulate_judge(120, seed=1))
    assert len(rates) == 16, rates
    for claim, rate in rates.items():
        # 120 runs: the binomial SD at 5% is 2 points; this is 2.5 SD above.
        assert rate <= 0.10, (claim, rate)


def _benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_false_claims", ROOT / "scripts" / "benchmark_false_claims.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sanity_requests_corrupt_the_reference_seeded():
    refs = ["one two three four five", "alpha beta\n gamma", "single", "x x x"]
    shuffled = corrupted_references(refs, JudgeSanityConfig(corruption="shuffled_words", seed=3))
    ref, bad = shuffled[0]
    assert ref == "one two three four five" and sorted(bad.split()) == sorted(ref.split())
    assert bad != ref
    assert shuffled[1][0] == "alpha beta gamma"  # whitespace collapsed on both sides
    assert shuffled[2] is None and shuffled[3] is None  # nothing to shuffle
    again = corrupted_references(refs, JudgeSanityConfig(corruption="shuffled_words", seed=3))
    assert again == shuffled
    truncated = corrupted_references(refs, JudgeSanityConfig(corruption="truncated"))
    assert truncated[0] == ("one two three four five", "one two")
    assert truncated[2] is None
    other = corrupted_references(refs, JudgeSanityConfig(corruption="other_reference"))
    assert all(o is not None and o[0] == r and o[1] != r for o, r in zip(other, refs, strict=True))
    assert sorted(o[1] for o in other) == sorted(refs)  # each reference given to another
    assert corrupted_references(["alone"], JudgeSanityConfig(corruption="other_reference")) == [
        None
    ]

    prompts = PROMPTS.with_columns(pl.Series("reference", ["a b c", "d e", "f", "g h i j"]))
    req = sanity_requests(prompts, JudgeSanityConfig())
    assert req["pair"].unique().to_list() == [SANITY_PAIR]
    assert req.height == 3 * 2  # prompt 2's one-word reference cannot be shuffled
    plain = req.filter(~pl.col("swapped")).row(0, named=True)
    swapped = req.filter(pl.col("swapped")).row(0, named=True)
    assert plain["answer_a"] == "a b c" == swapped["answer_b"]
    assert plain["answer_b"] == swapped["answer_a"] != "a b c"
    answers = _answers({s: [(f"{s}{i}", True) for i in range(4)] for s in ("base", "a")}, PROMPTS)
    both = pl.concat([judge_requests(answers, PROMPTS, ["base", "a"]), req])
    assert both.height == 8 + 6


def test_self_judging_is_read_from_the_models_config():
    raw = read_params_file(ROOT / "params.yaml")
    demo, full = resolve(raw, "demo"), resolve(raw, "full")
    # The demo judges with the same SmolLM2 GGUF its SFT starts from: self-judging.
    reason = self_judging(demo)
    assert reason and "SmolLM2-135M-Instruct" in reason and "models.judge_lm" in reason
    assert self_judging(full) is None  # Qwen2.5-7B-Instruct judges a YandexGPT fine-tune
    same_key = full.model_copy(
        update={"sft": full.sft.model_copy(update={"judge": JudgeConfig(model="sft_lm")})}
    )
    assert "itself" in self_judging(same_key)
    # Another revision of the same hub repository is the same model.
    models = dict(full.models)
    models["judge_lm"] = models["judge_lm"].model_copy(
        update={"source": models["sft_lm"].source.model_copy(update={"revision": "abc"})}
    )
    assert "hub yandex/yandexgpt-5-lite-8b-pretrain" in self_judging(
        full.model_copy(update={"models": models})
    )


def test_read_answers_names_what_is_wrong(tmp_path):
    cfg = load_params(ROOT / "params.yaml", "demo")
    good = _answers({s: [("x", True)] * 4 for s in ("base", "a")}, PROMPTS)
    write_parquet(good, tmp_path / "ok.parquet")
    _, prompts, systems = read_answers(tmp_path / "ok.parquet", cfg)
    assert systems == ["base", "a"] and prompts.height == 4
    write_parquet(good.filter(pl.col("system") == "a"), tmp_path / "one.parquet")
    with pytest.raises(UserError, match="a comparison needs two systems"):
        read_answers(tmp_path / "one.parquet", cfg)
    write_parquet(good.head(6), tmp_path / "gap.parquet")
    with pytest.raises(UserError, match="did not answer every held-out prompt"):
        read_answers(tmp_path / "gap.parquet", cfg)


def test_judge_stage_on_a_tiny_model(tmp_path, tiny_llama_dir):
    """The real stage with the transformers backend: every request judged (the pairs and
    the sanity check), valid verdicts; the demo config is self-judging, so no win rate."""
    from llmlab.judge import run_judge_generations

    cfg = load_params(ROOT / "params.yaml", "demo")
    answers = _answers(
        {s: [(f"Ответ {s} {i}", True) for i in range(4)] for s in ("base", "a", "b")}, PROMPTS
    )
    write_parquet(answers, tmp_path / "heldout.parquet")
    run_judge_generations(
        cfg,
        model_dir=tiny_llama_dir,
        heldout=tmp_path / "heldout.parquet",
        judgements=tmp_path / "judgements.parquet",
        judge=tmp_path / "judge.json",
    )
    judged = pl.read_parquet(tmp_path / "judgements.parquet")
    # 3 pairs x 4 prompts x 2 orders, and the sanity check on the 3 references of two words
    # or more (PROMPTS' last reference is one word) x 2 orders.
    assert judged.height == 24 + 6 and set(judged["verdict"]) <= {"A", "B", "tie"}
    assert judged.filter(pl.col("pair") == SANITY_PAIR).height == 6
    summary = json.loads((tmp_path / "judge.json").read_text())
    assert [p["pair"] for p in summary["pairs"]] == ["base vs a", "base vs b", "a vs b"]
    assert summary["self_judging"] and summary["sanity"]["prompts"] == 3
    for pair in summary["pairs"]:
        assert not pair["trusted"] and "self-judging" in pair["reasons"]
        assert pair["win_rate"] is None and 0 <= pair["position_consistency"] <= 1
        assert np.isclose(sum(pair["verdicts"].values()), 8)


def _context(judge: dict, fm: dict | None = None) -> dict:
    answers = _answers(
        {s: [(f"Ответ {s} {i}", True) for i in range(4)] for s in ("base", "a")}, PROMPTS
    )
    merge = {
        "dtype": "float32",
        "base": "full precision",
        "parameters": 134515008,
        "size_bytes": 538 << 20,
        "logits": {"max_abs_diff": 1.2e-5, "tolerance": {"max_abs_diff": 1e-4}},
    }
    return {
        "format_metrics": fm
        or format_metrics(answers, PROMPTS, resamples=100, seed=0) | {"max_new_tokens": 64},
        "judge": judge | {"judge_model": "judge_lm", "backend": "transformers"},
        "merges": {"a": merge},
        "merged_dirs": {"a": "models/merged/a"},
        "files": {"format_metrics": "f.json", "judge": "j.json"},
    }


def test_report_section_renders_the_tables_and_withholds_untrusted_win_rates():
    from llmlab.report import render

    # Self-judging (the demo): the reason, no win rate, and the paragraph under the table is
    # a paragraph (a blank line after the last row), not another table row.
    good = _judged(["A"] * 9 + ["B"], ["B"] * 9 + ["A"])
    selfish = _summary(good, _sanity(10), self_judging="The judge is the SFT base model itself")
    text = render(_context(selfish), "sft_eval.md.j2")
    assert "| base | 100.0% [51.0%, 100.0%] |" in text  # Wilson at 4 of 4
    assert "**Self-judging: no win rate is reported.** The judge is the SFT base model" in text
    assert "| base vs a | 10 | – | 18 / 2 / 0 | 100.0% | **no**: self-judging |\n\n" in text
    assert "**The judge is not trusted on base vs a**" in text
    judge_part = text[text.index("**Judged pairwise") : text.index("**Merged models**")]
    assert "90.0%" not in judge_part and "better" not in judge_part.split("| pair |")[1]
    assert (
        "| a | `models/merged/a` | float32 | full precision | 134,515,008 | 538 MiB "
        "| 1.2e-05 (1e-04) |" in text
    )
    # A trusted judge: the win rate with its Bonferroni interval (one pair: 95%) and the
    # verdict, which holds because the interval excludes 50%.
    trusted = _summary(good, _sanity(10))
    text = render(_context(trusted), "sft_eval.md.j2")
    assert "| base vs a | 10 | 90.0% [59.6%, 98.2%] | 18 / 2 / 0 | 100.0% | yes |\n\n" in text
    assert "- base vs a: **base is better** (win rate of base 90.0%" in text
    assert "not trusted" not in text and "Self-judging" not in text
    assert "preferred the reference in both orders on 10\n(100.0% [72.2%, 100.0%]" in text
    # Failing the sanity check is said, and withholds the win rate.
    text = render(_context(_summary(good, _sanity(5))), "sft_eval.md.j2")
    assert "**failed**, so none of its win rates is reported" in text
    assert "| base vs a | 10 | – |" in text


def test_report_section_says_when_answer_lengths_are_only_the_cut_off():
    from llmlab.report import render

    long = "один два три четыре пять шесть"
    answers = _answers(
        {"base": [(long, False)] * 4, "a": [("Ответ", True)] * 2 + [(long, False)] * 2},
        PROMPTS,
    )
    fm = format_metrics(answers, PROMPTS, resamples=50, seed=0) | {"max_new_tokens": 64}
    text = render(_context(_summary(_judged(["A"], ["B"]), _sanity(10)), fm), "sft_eval.md.j2")
    base_row = next(line for line in text.splitlines() if line.startswith("| base | 0.0%"))
    assert base_row.endswith("| – (all cut at 64 tokens) |")
    assert "| 0.0% [0.0%, 49.0%] |" in base_row  # stopped 0 of 4: Wilson, not [0%, 0%]
    a_row = next(line for line in text.splitlines() if line.startswith("| a | 50.0%"))
    assert a_row.endswith("| ≥ 1.40x (50% cut) |")  # median (1 + 6) / 2 words / 2.5
