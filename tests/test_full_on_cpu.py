"""The full preset's own configuration on a CPU (tests/full_on_cpu.yaml).

A value-by-value comparison of the presets cannot catch a combination that no engine runs (the
full preset once asked vLLM for a quantization method it had dropped). So the full preset runs
itself: its exact values, with only what a CPU forces changed by the overlay, through Snakemake,
GPU rules included, on a few reviews, steps and prompts.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmlab.config import read_params_file, resolve
from tests.test_workflow import ENV, ROOT, clean_copy

OVERLAY = Path(__file__).with_name("full_on_cpu.yaml")
# What a CPU forces, by kind: the overlay may change a key only if it is of one of these.
SIZE_KEYS = {
    "val_size", "review_tokens", "example_tokens", "threshold_rows", "kv_cache_memory_bytes",
    "max_model_len", "max_num_seqs", "batch_size", "target_size", "min_rows", "max_tokens",
    "min_tokens", "gradient_accumulation_steps", "max_steps", "warmup_steps", "save_steps",
    "eval_steps", "max_length", "per_device_train_batch_size", "per_device_eval_batch_size",
    "prompts", "max_new_tokens", "count", "check_dialogues", "check_tokens", "resamples",
}  # fmt: skip
KINDS = {
    "device": lambda key: key == "device",
    "source": lambda key: bool(
        re.fullmatch(r"(imdb|saiga)\.source|models\.\w+\.(source|tokenizer)", key)
    ),
    "size": lambda key: key.rsplit(".", 1)[-1] in SIZE_KEYS,
    "dtype": lambda key: key.rsplit(".", 1)[-1] == "dtype",
    # torch.compile: the CPU build compiles with inductor's C++ backend, a path a GPU never
    # takes (it captures CUDA graphs), at minutes per engine.
    "compile": lambda key: key.rsplit(".", 1)[-1] == "enforce_eager",
}
# Full-preset values the overlay keeps that a CPU still runs differently, each named with what
# covers it on a GPU. Asserted present, so the list cannot go stale silently.
CPU_DIFFERS = {
    "sft.variants.*.training.optim": (
        "adamw_8bit",
        "runs as adamw_torch: bitsandbytes' CPU 8-bit AdamW is ~100x slower a step "
        "(llmlab.train); the 8-bit CUDA kernels: scripts/gpu_check.py",
    ),
    "sft.variants.*.training.precision": (
        "auto",
        "bf16 on a GPU, fp32 on a CPU (bf16 autocast training: scripts/gpu_check.py)",
    ),
    "sft.merge.dtype": ("auto", "bf16 on a GPU, float32 on a CPU (scripts/gpu_check.py)"),
    "eval.vllm.gpu_memory_utilization": (
        0.85,
        "the CPU build sizes its KV cache by kv_cache_memory_bytes (doctor checks GPU memory)",
    ),
}


def overlay_entries() -> list[dict[str, Any]]:
    return yaml.safe_load(OVERLAY.read_text(encoding="utf-8"))


def get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def apply_overlay(raw: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """params.yaml with each entry's value set at its key of the top level (the full preset)."""
    out = copy.deepcopy(raw)
    for entry in entries:
        *parents, leaf = entry["key"].split(".")
        node = out
        for part in parents:
            node = node[part]
        node[leaf] = copy.deepcopy(entry["value"])
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: tree}


def test_the_overlay_changes_only_what_a_cpu_forces_and_says_why() -> None:
    raw = read_params_file(ROOT / "params.yaml")
    entries = overlay_entries()
    keys = [e["key"] for e in entries]
    full_tree = resolve(raw, "full").model_dump(mode="json")
    on_cpu_tree = resolve(apply_overlay(raw, entries), "full").model_dump(mode="json")
    assert len(keys) == len(set(keys)), "a key twice"
    for entry in entries:
        key = entry["key"]
        assert set(entry) == {"key", "value", "kind", "why"}, key
        assert len(str(entry["why"]).split()) >= 2, f"{key}: say why a CPU forces it"
        assert entry["kind"] in KINDS, f"{key}: kind {entry['kind']!r}"
        assert KINDS[entry["kind"]](key), f"{key} is not a {entry['kind']} key"
        assert get(full_tree, key) != get(on_cpu_tree, key), f"{key}: the full preset's value"
    # Resolved, the overlaid full preset differs from the full preset at those keys only.
    full, on_cpu = flatten(full_tree), flatten(on_cpu_tree)
    changed = {k for k in full.keys() | on_cpu.keys() if full.get(k) != on_cpu.get(k)}
    stray = {k for k in changed if not any(k == e or k.startswith(e + ".") for e in keys)}
    assert not stray, f"the overlay changes keys it does not list: {sorted(stray)}"
    for pattern, (value, _why) in CPU_DIFFERS.items():
        matching = [k for k in on_cpu if re.fullmatch(pattern.replace("*", r"\w+"), k)]
        assert matching and all(on_cpu[k] == value for k in matching), pattern


def link_models(models: dict[str, Path], repo: Path) -> None:
    """The prepared demo models (session fixtures), hard-linked: no copy, no conversion.
    Fresh mtimes, so Snakemake takes them as newer than the code that made them."""
    for key, folder in models.items():
        dest = repo / "models/pretrained" / key
        shutil.copytree(folder, dest, copy_function=os.link)
        for f in dest.rglob("*"):
            os.utime(f)


@pytest.mark.e2e
def test_the_full_preset_runs_its_gpu_rules_on_a_cpu(
    tmp_path: Path, smollm2_dir: Path, gemma3_dir: Path
) -> None:
    """eval_llm on vLLM's CPU build (every prompt and calibration method of the full preset;
    zero-shot: each of the 21 five-shot systems costs a vLLM CPU call of ~1-3 s per prompt
    batch), its gather, both QLoRA trainings (gradient checkpointing, checkpoints),
    compare_generations on vLLM (the dequantized 4-bit base + a LoRARequest per adapter),
    both merges, format_metrics and judge_generations, through Snakemake."""
    pytest.importorskip("vllm")
    import polars as pl

    repo = clean_copy(tmp_path / "repo")
    raw = read_params_file(repo / "params.yaml")
    assert raw["preset"] == "full"
    params = apply_overlay(raw, overlay_entries())
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    link_models(
        {"base_lm": gemma3_dir, "instruct_lm": smollm2_dir, "judge_lm": smollm2_dir,
         "sft_lm": smollm2_dir},
        repo,
    )  # fmt: skip
    targets = [
        "results/eval/instruct_lm/0shot/predictions.parquet",
        "results/sft/format_metrics.json",
        "results/sft/judge.json",
        "results/sft/a/merge.json",
        "results/sft/b/merge.json",
    ]
    proc = subprocess.run(
        ["snakemake", "--cores", "2", "--show-failed-logs", *targets],
        cwd=repo, capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    ran = set(re.findall(r"^(?:local)?rule (\w+):", out, re.MULTILINE))
    assert ran >= {
        "eval_llm", "eval_llm_gather", "train_lora", "compare_generations", "merge_adapter",
        "format_metrics", "judge_generations",
    }, ran  # fmt: skip
    assert "prepare_model" not in ran

    # Evaluation: the full preset's prompts and calibrations, on vLLM.
    cfg = resolve(params, "full")
    preds = pl.read_parquet(repo / targets[0])
    assert set(preds["backend"]) == {"vllm"}
    assert set(preds["calibration"]) == set(cfg.eval.calibration.methods)
    assert set(preds["prompt"]) == set(cfg.eval.prompts)
    assert preds["valid"].all() and preds["review_id"].n_unique() == cfg.imdb.val_size

    # Training: QLoRA; the optimizer is the one CPU_DIFFERS names.
    logs = {v: (repo / f"logs/train_lora/{v}.log").read_text() for v in ("a", "b")}
    for variant, text in logs.items():
        assert "optimizer adamw_torch" in text and "4-bit NF4 base (QLoRA)" in text, text[-2000:]
        metrics = json.loads((repo / f"results/sft/{variant}/metrics.json").read_text())
        assert metrics["steps"] == cfg.sft.variants[variant].training.max_steps
    gen_log = (repo / "logs/compare_generations.log").read_text()
    assert "dequantized the 4-bit base" in gen_log, gen_log[-2000:]
    held = pl.read_parquet(repo / "results/sft/heldout_answers.parquet")
    assert set(held["system"]) == {"base", "a", "b"}
    for variant in ("a", "b"):
        merge = json.loads((repo / f"results/sft/{variant}/merge.json").read_text())
        assert merge["base"] == "4-bit NF4, dequantized", merge["base"]
    judge = json.loads((repo / "results/sft/judge.json").read_text())
    assert judge, "judge_generations wrote its summary"
    assert json.loads((repo / "results/sft/format_metrics.json").read_text())
