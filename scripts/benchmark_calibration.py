"""Probability quality and few-shot draw variance on real reviews, measured in one run.

Reads `--reviews` as a local-path IMDB source (the loader of download_imdb), splits it as
split_imdb does (train/test 80/20, seed 42; a stratified validation sample of `--n` test
reviews), and evaluates one model with `llmlab.eval.run.evaluate` on the transformers
backend: one prompt, `--shots` examples of one fixed strategy drawn `--draws` times (draw 0
with eval.fewshot.seed, the others with the derived seeds), calibrations none and contextual.
Everything else (token budgets, bootstrap resamples, batch size, dtype) is the `--preset`'s
eval config. Prints, per draw, accuracy with its bootstrap 95% CI, the debiased L2 and
squared calibration error (Kumar et al. 2019; llmlab.eval.probability), Brier score and log
loss with CIs before and after contextual
calibration and their paired change; then the spread of accuracy over the draws (mean, sd,
min-max) next to the single-draw CI width; and what it ran on.

    python scripts/benchmark_calibration.py --model-dir models/pretrained/instruct_lm \
        --reviews ../shared/data/imdb_aclimdb.csv.gz --n 500 --draws 3

Reviews: a CSV/parquet/JSONL with `review` and `sentiment` columns (what an `imdb.source:
{path: ...}` accepts).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from llmlab.run_metadata import cpu_name

METHODS = ("none", "contextual")


def load_split(path: Path, n: int, imdb_cfg):
    """(train, val) of the reviews file, split like split_imdb with val_size = n."""
    from llmlab.acquire import load_dataset_source
    from llmlab.sources import LocalFile
    from llmlab.split import split_imdb

    df = load_dataset_source(LocalFile(path=str(path)), "imdb")
    train, _, val = split_imdb(df, imdb_cfg.model_copy(update={"val_size": n}))
    return df.height, train, val


def eval_config(cfg, args):
    """The preset's eval config narrowed to one prompt, one strategy, K draws, none +
    contextual, the transformers backend."""
    e = cfg.eval
    update = {
        "backend": "transformers",
        "prompts": {args.prompt: e.prompts[args.prompt]},
        "fewshot": e.fewshot.model_copy(
            update={"strategies": [args.strategy], "draws": args.draws}
            | ({"example_tokens": args.example_tokens} if args.example_tokens else {})
        ),
        "calibration": e.calibration.model_copy(update={"methods": list(METHODS)}),
    }
    if args.review_tokens:
        update["review_tokens"] = args.review_tokens
    if args.resamples:
        update["bootstrap"] = e.bootstrap.model_copy(update={"resamples": args.resamples})
    return e.model_copy(update=update)


def ci(value: float, bounds, fmt: str = ".3f") -> str:
    return f"{value:{fmt}} [{bounds[0]:{fmt}}, {bounds[1]:{fmt}}]"


def pct_ci(value: float, bounds) -> str:
    return f"{100 * value:.1f}% [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"


def measure(preds, eval_cfg) -> dict:
    """Per draw and method: accuracy, probability metrics; per draw: the contextual change;
    per method: the spread over draws."""
    import polars as pl

    from llmlab.eval import analysis, probability
    from llmlab.eval.metrics import system_metrics

    labels = list(eval_cfg.labels)
    boot = {"resamples": eval_cfg.bootstrap.resamples, "seed": eval_cfg.bootstrap.seed}
    out: dict = {"draws": [], "spread": {}}
    for draw in sorted(set(preds["draw"].to_list())):
        entry: dict = {"draw": draw, "methods": {}}
        probs = {}
        for method in METHODS:
            rows = preds.filter((pl.col("draw") == draw) & (pl.col("calibration") == method))
            m = system_metrics(rows, labels)
            p, gold = probability.probabilities_and_gold(rows, labels)
            probs[method] = p
            entry["system"] = rows["system"][0]
            entry["methods"][method] = {
                "accuracy": m["accuracy"],
                "accuracy_ci": m["accuracy_ci"],
                "predicted_positive_rate": m["predicted_positive_rate"],
            } | probability.calibration_metrics(p, gold, bins=10, **boot)
        entry["change"] = probability.calibration_change(
            probs["none"], probs["contextual"], gold, bins=10, **boot
        )
        out["draws"].append(entry)
    acc = analysis.system_accuracy(preds, extra_keys=("draw",))
    for method in METHODS:
        per_draw = acc.filter(pl.col("calibration") == method).sort("draw")["accuracy"]
        widths = [
            d["methods"][method]["accuracy_ci"][1] - d["methods"][method]["accuracy_ci"][0]
            for d in out["draws"]
        ]
        out["spread"][method] = analysis.draw_spread(per_draw.to_list()) | {
            "mean_ci_width": sum(widths) / len(widths)
        }
    return out


def report(args, meta: dict, result: dict) -> None:
    print(
        f"\nreviews: {args.reviews} ({meta['rows']:,} rows; train {meta['train']:,}, "
        f"validation sample {meta['n']} = {meta['negative']} negative / "
        f"{meta['positive']} positive; {meta['truncated']:.1%} cut to "
        f"{meta['review_tokens']} tokens)"
    )
    print(
        f"model: {args.model_dir}, transformers backend on {meta['device']} "
        f"({meta['dtype']}), prompt `{args.prompt}`, {args.shots}-shot {args.strategy}, "
        f"{args.draws} draws, example_tokens {meta['example_tokens']}, "
        f"bootstrap {meta['resamples']} resamples"
    )
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), load average before {meta['load']}")
    print(
        f"time: model load {meta['load_seconds']:.1f} s, evaluation {meta['eval_seconds']:.0f} s "
        f"({meta['prompts']} prompts incl. content-free, {meta['prompts_per_second']:.2f}/s)"
    )
    header = (
        f"\n{'draw':>4} {'seed':>10}  {'calibration':<11} {'accuracy [95% CI]':<22} "
        f"{'L2 cal. error [CI]':<22} {'sq. cal. error [CI]':<22} {'Brier [CI]':<22} "
        f"{'log loss [CI]':<22} pred.pos"
    )
    print(header)
    for d, seed in zip(result["draws"], meta["seeds"], strict=True):
        for method in METHODS:
            m = d["methods"][method]
            accuracy = pct_ci(m["accuracy"], m["accuracy_ci"])
            print(
                f"{d['draw']:>4} {seed:>10}  {method:<11} {accuracy:<22} "
                f"{ci(m['ce_l2'], m['ce_l2_ci']):<22} "
                f"{ci(m['ce_squared'], m['ce_squared_ci']):<22} "
                f"{ci(m['brier'], m['brier_ci']):<22} "
                f"{ci(m['log_loss'], m['log_loss_ci']):<22} {m['predicted_positive_rate']:.1%}"
            )
        c = d["change"]
        print(
            f"{'':>4} {'':>10}  {'change':<11} {'contextual - none:':<22} "
            f"{'(L2: ' + format(c['ce_l2'], '+.3f') + ')':<22} "
            f"{ci(c['ce_squared'], c['ce_squared_ci'], '+.3f'):<22} "
            f"{ci(c['brier'], c['brier_ci'], '+.3f'):<22} "
            f"{ci(c['log_loss'], c['log_loss_ci'], '+.3f'):<22}"
        )
    print(f"\naccuracy over the {args.draws} draws (sd: sample sd over draws):")
    for method in METHODS:
        s = result["spread"][method]
        sd = f"{100 * s['sd']:.1f} pts" if s["sd"] is not None else "-"
        print(
            f"  {method:<11} mean {100 * s['mean']:.1f}%, sd {sd}, min-max "
            f"{100 * s['min']:.1f}%-{100 * s['max']:.1f}% (range {100 * s['range']:.1f} pts); "
            f"mean single-draw 95% CI width {100 * s['mean_ci_width']:.1f} pts"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-dir", type=Path, required=True, help="a prepared model folder")
    p.add_argument("--reviews", type=Path, default=Path("../shared/data/imdb_aclimdb.csv.gz"))
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--preset", default="demo", help="whose eval config to use (default: demo)")
    p.add_argument("--model-key", default="instruct_lm", help="key of models (prompt format)")
    p.add_argument("--n", type=int, default=500, help="validation reviews")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--strategy", default="balanced", choices=["random", "balanced"])
    p.add_argument("--prompt", default="system", help="key of eval.prompts")
    p.add_argument("--review-tokens", type=int, help="default: the preset's eval.review_tokens")
    p.add_argument("--example-tokens", type=int, help="default: the preset's")
    p.add_argument("--resamples", type=int, help="bootstrap resamples (default: the preset's)")
    p.add_argument("--json", type=Path, help="also write the measured numbers here")
    args = p.parse_args()

    import polars as pl
    from transformers import AutoTokenizer

    from llmlab.config import load_params
    from llmlab.eval.backends import make_backend
    from llmlab.eval.prompts import token_lengths
    from llmlab.eval.run import draw_seed, evaluate

    load = (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if os.path.exists("/proc/loadavg")
        else "?"
    )
    cfg = load_params(args.params, preset=args.preset)
    eval_cfg = eval_config(cfg, args)
    rows, train, val = load_split(args.reviews, args.n, cfg.imdb)
    start = time.perf_counter()
    backend = make_backend(
        "transformers", args.model_dir, eval_cfg.vllm, eval_cfg.transformers, "cpu"
    )
    load_seconds = time.perf_counter() - start
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    start = time.perf_counter()
    preds, info = evaluate(
        backend,
        tokenizer,
        model=args.model_key,
        shots=args.shots,
        train=train,
        val=val,
        eval_cfg=eval_cfg,
        prompt_format=cfg.models[args.model_key].prompt_format,
        template_kwargs=cfg.models[args.model_key].chat_template_kwargs,
    )
    eval_seconds = time.perf_counter() - start
    lengths = token_lengths(val["review"].to_list(), tokenizer)
    prompts = args.draws * (val.height + len(eval_cfg.calibration.content_free))
    meta = {
        "rows": rows,
        "train": train.height,
        "n": val.height,
        "negative": int((val["sentiment"] == "negative").sum()),
        "positive": int((val["sentiment"] == "positive").sum()),
        "review_tokens": eval_cfg.review_tokens,
        "example_tokens": eval_cfg.fewshot.example_tokens,
        "truncated": sum(n > eval_cfg.review_tokens for n in lengths) / len(lengths),
        "device": "cpu",
        "dtype": eval_cfg.transformers.dtype,
        "resamples": eval_cfg.bootstrap.resamples,
        "load": load,
        "load_seconds": load_seconds,
        "eval_seconds": eval_seconds,
        "prompts": prompts,
        "prompts_per_second": prompts / eval_seconds,
        "seeds": [draw_seed(eval_cfg.fewshot.seed, d) for d in range(args.draws)],
        "examples": [s["fixed_example_ids"] for s in info["settings"]],
    }
    assert set(preds["draw"].to_list()) == set(range(args.draws)), "one setting per draw"
    result = measure(preds.filter(pl.col("shots") == args.shots), eval_cfg)
    report(args, meta, result)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, **result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
