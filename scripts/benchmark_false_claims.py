"""How often the report's computed sentences claim an effect that is not there.

Every conclusion the report generates is rebuilt here by the project's own functions from
data simulated with NO true effect (same layout as the demo preset: its number of scored
reviews, systems, prompts, draws, held-out prompts), many times, and the share of runs in
which the sentence claims an effect, a dominance or a significant difference is printed.
Each should be at most the nominal 5% (up to simulation error: +-1.9 points, two standard
errors, at 500 runs):

    .venv/bin/python scripts/benchmark_false_claims.py [--reps 500] [--seed 0]

The README's table of false-claim rates is this script's output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each simulation: (reps, seed) -> [(claim, false-claim rate)]; defined below, listed in
# SIMULATIONS at the bottom.


def _eval_null_predictions(preset: str, rng, correlated: bool):
    """The predictions of every LLM system `preset` evaluates (its models, prompts, shots,
    strategies, draws, calibration methods, on its number of scored reviews), all with the
    same accuracy: each review is right with probability p_i in every system, independently
    (p_i = 0.7, or, `correlated`, one p_i ~ Beta(2.1, 0.9) per review shared by all systems:
    easy and hard reviews, so systems agree far more than chance, as real ones do)."""
    import numpy as np
    import polars as pl

    from llmlab.config import load_params
    from llmlab.eval.fewshot import FIXED_STRATEGIES
    from llmlab.eval.run import system_id
    from llmlab.schemas import PREDICTIONS_SCHEMA

    cfg = load_params(ROOT / "params.yaml", preset=preset)
    e = cfg.eval
    n = cfg.imdb.val_size
    labels = list(e.labels)
    gold = np.array([labels[i % 2] for i in range(n)])
    p = rng.beta(2.1, 0.9, size=n) if correlated else np.full(n, 0.7)
    frames = []
    settings = [(0, "-", 1)] + [
        (s, st, e.fewshot.draws if st in FIXED_STRATEGIES else 1)
        for s in e.shots
        if s > 0
        for st in e.fewshot.strategies
    ]
    for model in e.models:
        for prompt in e.prompts:
            for shots, strategy, draws in settings:
                for draw in range(draws):
                    for method in e.calibration.methods:
                        ok = rng.random(n) < p
                        pred = np.where(ok, gold, np.where(gold == labels[0], labels[1], labels[0]))
                        sid = system_id(model, prompt, shots, strategy, "vllm", method, draw)
                        frames.append(
                            pl.DataFrame(
                                {
                                    "system": sid, "model": model, "prompt": prompt,
                                    "shots": shots, "strategy": strategy, "draw": draw,
                                    "backend": "vllm", "calibration": method,
                                    "review_id": np.arange(n), "gold": gold, "prediction": pred,
                                    "valid": True, "raw_output": pred,
                                    "label_scores": [
                                        [-0.5, -0.9] if x == labels[0] else [-0.9, -0.5]
                                        for x in pred
                                    ],
                                    "seconds": 0.1, "review_tokens": 100,
                                },
                                schema_overrides=PREDICTIONS_SCHEMA,
                            ).select(list(PREDICTIONS_SCHEMA))
                        )  # fmt: skip
    return pl.concat(frames), e


def simulate_eval(reps: int, seed: int) -> list[tuple[str, float]]:
    """The evaluation's conclusions (few-shot and calibration families, label preference,
    prompt sensitivity, draws) on the demo preset's layout with no true difference between
    any two systems; a claim is any sentence that reports a significant difference."""
    import numpy as np
    import polars as pl

    from llmlab import report
    from llmlab.eval import summary as s

    rng = np.random.default_rng(seed)
    claims = {
        "few-shot vs zero-shot: some pair differs significantly": 0,
        "calibration: some calibrated system gains or loses significantly": 0,
        "label preference: some system prefers a label significantly": 0,
        "prompt sensitivity: some choice changes accuracy significantly": 0,
        "few-shot draws: the draw changes accuracy significantly somewhere": 0,
        "any of the above (the whole Conclusions list)": 0,
    }
    names = list(claims)
    for rep in range(reps):
        preds, e = _eval_null_predictions("demo", rng, correlated=rep % 2 == 1)
        first = preds.filter(pl.col("draw") == 0)
        table, _ = s.systems_table(first, e)
        doc = {
            "systems": table.to_dicts(),
            "n_reviews": first["review_id"].n_unique(),
            "fewshot_effect": s.fewshot_effect(first, table, e),
            "calibration_gains": s.calibration_gains(first, table, e),
            "label_bias": s.label_bias(first, table, e),
            "sensitivity": s.sensitivity_section(preds, e),
            "draw_spread": s.draw_section(preds, table, e),
        }
        lines = report.eval_conclusions(doc)

        def says(prefix: str, claim: str, lines=lines) -> bool:
            line = next((x for x in lines if x.startswith(prefix)), "")
            return claim in line

        hit = [
            says("Few-shot vs zero-shot", "significantly") and not says("Few-shot vs", "none of"),
            says("Calibration, each", "significantly") and not says("Calibration, each", "none"),
            says("Label preference", "significantly more often than")
            and not says("Label preference", "none of"),
            says("Prompt sensitivity", "Settings whose accuracy differs significantly"),
            says("Few-shot draws", "changes accuracy significantly in"),
        ]
        for name, h in zip(names, [*hit, any(hit)], strict=True):
            claims[name] += h
    return [(f"{name} (demo layout)", count / reps) for name, count in claims.items()]


def simulate_judge(reps: int, seed: int) -> list[tuple[str, float]]:
    """The judge section (llmlab.sft_eval.judge_summary, whose fields the report prints) on
    the demo's and the full preset's layout (base and every variant: 3 pairs; 10 or 200
    held-out prompts, each in both orders, plus the sanity check on every prompt), with
    judges that have no preference between the systems. Claims: the judge is trusted on some
    pair (its win rate printed) and "X is better" on some pair. Judges:

    - no preference: every verdict uniform over A / B / tie, the sanity check's included;
    - position-biased: A 60%, B 25%, tie 15% whatever the answers;
    - always tie (position-consistent on every prompt, but says nothing);
    - a good judge of two equal systems: it prefers the reference in the sanity check (99%
      of prompts) and on each pair's prompt holds a preference (first 40%, second 40%, tie
      20%: the systems are exchangeable), reporting it in each order with probability 0.95
      (else a uniform verdict); the same with a position bias (30% of verdicts "A" whatever
      the preference). Here only a "better" claim is false.
    """
    import numpy as np
    import polars as pl

    from llmlab.config import load_params
    from llmlab.schemas import BASE_SYSTEM
    from llmlab.sft_eval import SANITY_PAIR, judge_pairs, judge_summary

    rng = np.random.default_rng(seed)
    labels = np.array(["A", "B", "tie"])

    def shown(pref: np.ndarray, swapped: bool) -> np.ndarray:
        """A preference (0: first, 1: second, 2: tie) as the verdict for that order."""
        return labels[np.where(pref == 2, 2, pref ^ 1 if swapped else pref)]

    def verdicts(judge: str, n: int, sanity: bool) -> tuple[np.ndarray, np.ndarray]:
        """(plain, swapped) verdicts as shown, for n prompts of one pair (or the sanity
        check: the reference is the first)."""
        if judge == "random":
            return rng.choice(labels, n), rng.choice(labels, n)
        if judge == "position":
            return tuple(rng.choice(labels, n, p=[0.6, 0.25, 0.15]) for _ in range(2))
        if judge == "tie":
            return np.full(n, "tie"), np.full(n, "tie")
        pref = (
            np.where(rng.random(n) < 0.99, 0, 1) if sanity else rng.choice(3, n, p=[0.4, 0.4, 0.2])
        )
        out = []
        for swapped in (False, True):
            v = shown(pref, swapped)
            noise = rng.random(n) >= 0.95
            v = np.where(noise, rng.choice(labels, n), v)
            if judge == "good_biased":
                v = np.where(rng.random(n) < 0.3, "A", v)
            out.append(v)
        return out[0], out[1]

    def frame(name: str, first: str, second: str, plain, swap) -> pl.DataFrame:
        n = len(plain)
        return pl.DataFrame(
            {
                "pair": [name] * 2 * n,
                "first": [first] * 2 * n,
                "second": [second] * 2 * n,
                "prompt_id": np.tile(np.arange(n), 2),
                "swapped": np.repeat([False, True], n),
                "verdict": np.concatenate([plain, swap]),
            }
        )

    judges = {
        "random": "judge with no preference (uniform A / B / tie)",
        "position": "position-biased judge (A 60%, B 25%, tie 15%)",
        "tie": "judge that always says tie",
        "good": "good judge (passes the sanity check), equal systems",
        "good_biased": "good judge with position bias (30% 'A'), equal systems",
    }
    rows: list[tuple[str, float]] = []
    for preset in ("demo", "full"):
        cfg = load_params(ROOT / "params.yaml", preset=preset)
        n = cfg.sft.heldout.count
        pairs = judge_pairs([BASE_SYSTEM, *cfg.sft.variants])
        for judge, label in judges.items():
            trusted = better = 0
            for _ in range(reps):
                frames = [frame(SANITY_PAIR, "reference", "corrupted", *verdicts(judge, n, True))]
                frames += [frame(f"{a} vs {b}", a, b, *verdicts(judge, n, False)) for a, b in pairs]
                out = judge_summary(pl.concat(frames), cfg.sft.judge)
                trusted += any(p["trusted"] for p in out["pairs"])
                better += any(p["better"] is not None for p in out["pairs"])
            layout = f"{preset} layout: {len(pairs)} pairs, {n} prompts"
            if judge.startswith("good"):
                rows.append(
                    (
                        f"{label}: 'X is better' on some pair (trusted in "
                        f"{100 * trusted / reps:.0f}% of runs; {layout})",
                        better / reps,
                    )
                )
            else:
                rows.append((f"{label}: trusted on some pair ({layout})", trusted / reps))
                rows.append((f"{label}: 'X is better' on some pair ({layout})", better / reps))
    return rows


def simulate_calibration_error(reps: int, seed: int) -> list[tuple[str, float]]:
    """The calibration-quality sentence (llmlab.report.calibration_quality_sentence, fed by
    summary.probability_section and calibration_quality) with calibration that changes nothing
    about calibration quality, and the coverage of the per-system calibration-error CI.

    Reviews: z ~ N(0, 1.5^2), gold positive with probability sigmoid(z). A scorer sees z plus
    its own noise N(0, 1) and reports P(positive | what it saw), which is perfectly calibrated
    (Gauss-Hermite). Each of m settings has an uncalibrated and a "contextual" system:
    - equally calibrated: both are such calibrated scorers (true calibration error 0 each);
    - equally miscalibrated: +1 logit on the uncalibrated one, -1 on the calibrated one (the
      same true calibration error, by the symmetry z -> -z, positive <-> negative).
    Claims: the sentence's "the CI excludes 0" for the best setting (the most accurate
    system's), and "K significantly lower / higher" > 0 over the m settings (Bonferroni).
    Layouts: the demo's 40 reviews with its 12 calibrated systems and 1,000 resamples; 2,000
    reviews (the full preset) with 4 settings and 200 resamples (reps / 5 runs: time).
    Coverage: a scorer with +1 logit of bias; the share of runs whose printed 95% CI of the
    L2 calibration error misses the true binned value (numerical integration on the same bins).
    """
    import numpy as np
    import polars as pl
    from scipy.special import expit, logit
    from scipy.stats import norm

    from llmlab import report
    from llmlab.config import BootstrapConfig, load_params
    from llmlab.eval import probability
    from llmlab.eval import summary as s
    from llmlab.schemas import PREDICTIONS_SCHEMA

    base = load_params(ROOT / "params.yaml", preset="demo").eval
    labels = list(base.labels)
    sd, noise = 1.5, 1.0
    gh_x, gh_w = np.polynomial.hermite.hermgauss(40)
    shrink = sd * sd / (sd * sd + noise * noise)
    post_sd = np.sqrt(2.0 * sd * sd * noise * noise / (sd * sd + noise * noise))

    def calibrated(z: np.ndarray, rng) -> np.ndarray:
        seen = z + rng.normal(0.0, noise, z.size)
        inner = expit(shrink * seen[:, None] + post_sd * gh_x)
        return (inner * gh_w).sum(axis=1) / np.sqrt(np.pi)

    def frame(sid: str, prompt: str, method: str, p: np.ndarray, gold: np.ndarray):
        p = np.clip(p, 1e-12, 1 - 1e-12)
        pred = np.where(p >= 0.5, labels[1], labels[0])
        n = p.size
        return pl.DataFrame(
            {
                "system": [sid] * n, "model": "m", "prompt": prompt, "shots": 0,
                "strategy": "-", "draw": 0, "backend": "vllm", "calibration": method,
                "review_id": np.arange(n), "gold": np.array(labels)[gold], "prediction": pred,
                "valid": True, "raw_output": pred, "neg": np.log1p(-p), "pos": np.log(p),
                "seconds": 0.1, "review_tokens": 100,
            },
        ).with_columns(
            label_scores=pl.concat_list("neg", "pos")
        ).select(
            [pl.col(c).cast(t) for c, t in PREDICTIONS_SCHEMA.items()]
        )  # fmt: skip

    def one_run(n: int, m: int, scenario: str, rng, cfg) -> tuple[bool, bool]:
        z = rng.normal(0.0, sd, n)
        gold = (rng.random(n) < expit(z)).astype(np.int64)
        frames, rows = [], []
        for k in range(m):
            for method, shift in (("none", 1.0), ("contextual", -1.0)):
                p = calibrated(z, rng)
                if scenario == "miscalibrated":
                    p = expit(logit(p) + shift)
                sid = f"m/p{k}/0shot/vllm/{method}"
                frames.append(frame(sid, f"p{k}", method, p, gold))
                acc = float(((p >= 0.5) == gold).mean())
                rows.append(
                    {"system": sid, "model": "m", "prompt": f"p{k}", "shots": 0,
                     "strategy": "-", "backend": "vllm", "calibration": method,
                     "kind": "llm", "accuracy": acc, "macro_f1": acc}
                )  # fmt: skip
        predictions, table = pl.concat(frames), pl.DataFrame(rows)
        prob = s.probability_section(predictions, table, cfg)
        q = s.calibration_quality(prob, table, s.best_system(table))
        sentence = report.calibration_quality_sentence(q) or ""
        family = q["systems_lower_ce_significant"] + q["systems_higher_ce_significant"] > 0
        return "the CI excludes 0" in sentence, family

    def truth(shift: float, bins: int) -> float:
        """Binned squared calibration error of sigmoid(z + shift) (numerical integration)."""
        z = np.linspace(-12 * sd, 12 * sd, 200_001)
        w = norm.pdf(z, scale=sd)
        w /= w.sum()
        conf, true_p = expit(z + shift), expit(z)
        idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
        mass = np.bincount(idx, weights=w, minlength=bins)
        gap = np.bincount(idx, weights=w * (true_p - conf), minlength=bins)
        keep = mass > 0
        return float((gap[keep] ** 2 / mass[keep]).sum())

    rng = np.random.default_rng(seed)
    out = []
    layouts = (
        (40, 12, 1000, reps),
        (2000, 4, 200, max(20, reps // 5)),
    )
    for n, m, resamples, runs in layouts:
        cfg = base.model_copy(update={"bootstrap": BootstrapConfig(resamples=resamples, seed=seed)})
        for scenario in ("calibrated", "miscalibrated"):
            head = fam = 0
            for _ in range(runs):
                h, f = one_run(n, m, scenario, rng, cfg)
                head += h
                fam += f
            what = f"equally {scenario}, n = {n}, {m} calibrated systems"
            out.append(
                (f"calibration changes the best setting's calibration error ({what})", head / runs)
            )
            out.append(
                (
                    f"some calibrated system's calibration error changes significantly ({what})",
                    fam / runs,
                )
            )
        bins = probability.calibration_bins(n, s.BINS)
        target = truth(1.0, bins)
        miss = 0
        for _ in range(runs):
            z = rng.normal(0.0, sd, n)
            gold = (rng.random(n) < expit(z)).astype(np.int64)
            p = expit(z + 1.0)
            metrics = probability.calibration_metrics(
                np.column_stack([1 - p, p]), gold, bins=s.BINS, resamples=resamples, seed=seed
            )
            low, high = metrics["ce_squared_ci"]
            miss += not low <= target <= high
        out.append(
            (
                f"95% CI of the L2 calibration error misses the truth (+1 logit bias, n = {n})",
                miss / runs,
            )
        )
    return out


def simulate_sft_loss(reps: int, seed: int) -> list[tuple[str, float]]:
    """The SFT loss conclusion (llmlab.sft_eval.heldout_loss_comparison, then
    llmlab.report.heldout_loss_sentence) on the demo's and the full preset's layout (base and
    two variants on 10 or 200 common held-out prompts), with no true difference between the
    systems: prompts differ in difficulty (shared by all systems) and reference length (5-300
    tokens), each system's per-prompt loss adds its own noise, symmetric or skewed
    (exponential: occasional bad answers). Claims: a pair called "lower"/"higher", and a
    system named the lowest, below every other."""
    import numpy as np
    import polars as pl

    from llmlab.config import load_params
    from llmlab.report import heldout_loss_sentence
    from llmlab.schemas import BASE_SYSTEM, HELDOUT_ANSWERS, HELDOUT_LOSS
    from llmlab.sft_eval import heldout_loss_comparison

    rng = np.random.default_rng(seed)
    out = []
    for preset in ("demo", "full"):
        cfg = load_params(ROOT / "params.yaml", preset=preset)
        systems = [BASE_SYSTEM, *cfg.sft.variants]
        n = cfg.sft.heldout.count
        pair_claims = lowest_claims = 0
        for rep in range(reps):
            tokens = rng.integers(5, 300, n)
            difficulty = rng.gamma(4.0, 0.5, n)
            skewed = rep % 2 == 1
            loss = {
                s: difficulty + (rng.exponential(0.4, n) if skewed else rng.normal(0, 0.4, n))
                for s in systems
            }
            rows = pl.DataFrame(
                {
                    "prompt_id": np.tile(np.arange(n), len(systems)),
                    "prompt": "q",
                    "reference": "r",
                    "system": np.repeat(systems, n),
                    "answer": "a",
                    "new_tokens": 1,
                    "finished": True,
                    "reference_nll": np.concatenate([loss[s] * tokens for s in systems]),
                    "reference_tokens": np.tile(tokens, len(systems)),
                }
            ).select(*HELDOUT_ANSWERS, *HELDOUT_LOSS)
            text = heldout_loss_sentence(heldout_loss_comparison(rows, systems))
            pair_claims += " lower)" in text or " higher)" in text
            lowest_claims += "has the lowest loss" in text
        out += [
            (f"SFT loss: some pair of systems called lower/higher ({preset}: {n} prompts)",
             pair_claims / reps),
            (f"SFT loss: a system named lowest, below every other ({preset}: {n} prompts)",
             lowest_claims / reps),
        ]  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=500, help="simulated runs per claim")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'claim':<100} {'false-claim rate':>16}")
    for simulate in SIMULATIONS:
        start = time.perf_counter()
        for claim, rate in simulate(args.reps, args.seed):
            print(f"{claim:<100} {100 * rate:>15.1f}%")
        print(f"  ({simulate.__name__}: {time.perf_counter() - start:.1f} s)")


SIMULATIONS: list = [simulate_eval, simulate_judge, simulate_calibration_error, simulate_sft_loss]

if __name__ == "__main__":
    main()
