"""params.yaml -> typed config: presets, overlays and one-line errors naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmlab.config import ConfigError, deep_merge, load_params, read_params_file, resolve
from llmlab.sources import HubDataset, HubModel, Synthetic, WheelGGUF

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return read_params_file(PARAMS)


def _error(raw: dict, preset: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(raw, preset)
    message = str(info.value)
    assert "\n" not in message, "config errors are one line"
    return message


def test_both_presets_load(raw):
    full = resolve(raw, "full")
    demo = resolve(raw, "demo")
    assert full.preset == "full" and demo.preset == "demo"
    assert isinstance(full.imdb.source, HubDataset)
    assert isinstance(demo.imdb.source, Synthetic)
    assert isinstance(full.models["instruct_lm"].source, HubModel)
    assert isinstance(demo.models["instruct_lm"].source, WheelGGUF)
    # Keys that shape the DAG are the same in both presets.
    assert full.models.keys() == demo.models.keys()
    assert full.eval.models == demo.eval.models and full.eval.shots == demo.eval.shots
    assert full.sft.variants.keys() == demo.sft.variants.keys()


def test_default_preset_is_full_and_file_key_selects(raw):
    assert raw["preset"] == "full", "the committed params.yaml runs the real experiment"
    assert resolve({**raw, "preset": "demo"}).preset == "demo"
    assert resolve({**raw, "preset": "demo"}, "full").preset == "full"


def test_overlay_replaces_sources_whole_but_merges_other_mappings():
    base = {"a": {"source": {"hub": "x/y", "revision": "r"}, "n": 1, "m": 2}}
    over = {"a": {"source": {"synthetic": {"rows": 3}}, "n": 5}}
    assert deep_merge(base, over) == {"a": {"source": {"synthetic": {"rows": 3}}, "n": 5, "m": 2}}
    assert base["a"]["n"] == 1, "merge does not mutate its inputs"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["imdb"].update(val_size=-5), "imdb.val_size: Input should be greater than 0"),
        (
            lambda r: r["imdb"].update(val_size="many"),
            "imdb.val_size: Input should be a valid integer",
        ),
        (lambda r: r["imdb"].update(test_size=1.5), "imdb.test_size: Input should be less than 1"),
        (lambda r: r["imdb"].update(colour="red"), "imdb.colour: unknown key"),
        (lambda r: r.update(colour="red"), "colour: unknown key"),
        (lambda r: r["imdb"]["source"].pop("revision"), "imdb.source.revision: Field required"),
        (
            lambda r: r["imdb"].update(source={"url": "http://x"}),
            "imdb.source: a source needs exactly one of the keys hub, path, synthetic",
        ),
        (lambda r: r.update(preset="fast"), "preset: unknown preset 'fast'"),
        (lambda r: r["eval"].update(models=["nope"]), "eval.models: 'nope' is not a key of models"),
        (
            lambda r: r["presets"]["demo"]["imdb"].update(val_size=0),
            "presets.demo.imdb.val_size: Input should be greater than 0",
        ),
        (
            lambda r: r["presets"]["demo"]["models"].update(extra_lm={}),
            "presets.demo.models: keys ['extra_lm'] are not in models",
        ),
        (
            lambda r: r["presets"]["demo"].update(eval={"shots": [0]}),
            "presets.demo.eval.shots: a preset may not change eval.shots",
        ),
        (lambda r: r["presets"].update(fast={}), "presets.fast: unknown preset"),
        # Combinations no pinned engine runs: refused at load, before hours of other jobs.
        (
            lambda r: r["sft"]["generation"].update(backend="vllm", quantize=True),
            "sft.generation: quantize is true but backend is vllm, and the pinned vLLM",
        ),
        (
            lambda r: r["sft"]["variants"]["b"]["lora"].update(r=1024),
            "sft.variants.b.lora.r: 1024 is above vLLM's largest max_lora_rank (512)",
        ),
        # The judge's trust rules (llmlab.sft_eval.judge_summary).
        (
            lambda r: r["sft"]["judge"].update(max_verdict_share=1.0),
            "sft.judge.max_verdict_share: Input should be less than 1",
        ),
        (
            lambda r: r["sft"]["judge"].update(sanity={"corruption": "reversed"}),
            "sft.judge.sanity.corruption: Input should be 'shuffled_words', 'truncated' or "
            "'other_reference'",
        ),
        (
            lambda r: r["sft"]["judge"].update(sanity={"min_pass_share": 0}),
            "sft.judge.sanity.min_pass_share: Input should be greater than 0",
        ),
    ],
)
def test_bad_values_name_the_key(raw, mutate, expected):
    bad = copy.deepcopy(raw)
    mutate(bad)
    for preset in ("full", "demo"):
        assert _error(bad, preset).startswith(expected)


def test_judge_trust_settings_default_to_the_documented_rules(raw):
    judge = resolve(raw, "full").sft.judge
    # "Most prompts" of the sanity check: the Wilson lower bound above 1/2; one verdict on
    # more than 80% of a pair's requests is degenerate.
    assert judge.sanity.min_pass_share == 0.5 and judge.max_verdict_share == 0.8
    assert judge.sanity.corruption == "shuffled_words"
    tweaked = copy.deepcopy(raw)
    tweaked["sft"]["judge"]["sanity"] = {"corruption": "other_reference", "seed": 7}
    sanity = resolve(tweaked, "demo").sft.judge.sanity
    assert sanity.corruption == "other_reference" and sanity.seed == 7
    assert sanity.min_pass_share == 0.5


def test_a_broken_full_value_fails_a_demo_run_too(raw):
    # The demo overrides imdb.val_size, but the full value must still be valid.
    bad = copy.deepcopy(raw)
    bad["imdb"]["val_size"] = 0
    assert _error(bad, "demo").startswith("imdb.val_size")


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("imdb: [unclosed\n")
    with pytest.raises(ConfigError, match="line 2: not valid YAML"):
        load_params(broken)


def test_cli_rejects_bad_params_in_one_line_and_writes_nothing(raw, tmp_path):
    bad = copy.deepcopy(raw)
    bad["imdb"]["val_size"] = -1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(bad, allow_unicode=True))
    out = tmp_path / "out" / "imdb.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmlab",
            "download-imdb",
            "--params",
            str(params),
            "--preset",
            "demo",
            "--out",
            str(out),
            "--meta",
            str(tmp_path / "out" / "imdb.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: imdb.val_size: Input should be greater than 0 (got -1)"
    assert not (tmp_path / "out").exists()


def test_doctor_reports_a_combination_no_engine_runs(raw, tmp_path):
    bad = copy.deepcopy(raw)
    bad["sft"]["generation"]["quantize"] = True  # with the full preset's backend: vllm
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True))
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "doctor", "--preset", "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.splitlines() == [
        "FAIL  params                 sft.generation: quantize is true but backend is vllm, and "
        "the pinned vLLM (0.32, 0.33) has no bitsandbytes 4-bit quantization; set quantize: "
        "false (vLLM serves the 4-bit base dequantized: the same weights) or backend: "
        "transformers"
    ]
