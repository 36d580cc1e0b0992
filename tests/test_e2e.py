"""The demo preset end to end, as a user runs it, in a fresh copy of the repository.

One Snakemake run of the whole DAG (minutes), then checks on what it produced, a rerun that
does nothing, and DVC on the same outputs: adoption, a one-parameter change that reruns only
its stages, and push / pull into a fresh clone restoring byte-identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.test_workflow import ALL_RULES, ENV, clean_copy, job_counts

pytestmark = pytest.mark.e2e

REPORT_SECTIONS = [
    "## Run",
    "## Conclusions",
    "## IMDB data",
    "## Sentiment evaluation",
    "## Calibration",
    "## Baselines",
    "## SFT data",
    "## SFT training",
    "## Variance over few-shot draws",
    "## Prompt sensitivity",
    "## Error analysis",
    "## Side-by-side generations",
    "## What the SFT learned: held-out prompts",
]


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tree_hashes(root: Path, rels: list[str]) -> dict[str, str]:
    hashes = {}
    for rel in rels:
        path = root / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            hashes[str(f.relative_to(root))] = md5(f)
    return hashes


@pytest.fixture(scope="module")
def demo(request, tmp_path_factory) -> Iterator[Path]:
    repo = clean_copy(tmp_path_factory.mktemp("repo"))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], repo)
    run(["snakemake", "--profile", "profiles/demo", "--cores", "2"], repo)
    failed_before = request.session.testsfailed
    yield repo
    # Several GB (models, checkpoints, the DVC cache): free them for the rest of the session
    # unless a test here failed, when the folder is what one debugs with.
    if request.session.testsfailed == failed_before:
        shutil.rmtree(repo, ignore_errors=True)


def test_every_rule_ran_and_logged(demo):
    logs = {
        p.relative_to(demo / "logs").parts[0].removesuffix(".log")
        for p in (demo / "logs").rglob("*.log")
    }
    assert logs >= ALL_RULES - {"all"}


def test_report_has_every_section_and_resolving_figures(demo):
    report = (demo / "reports/report.md").read_text()
    for section in REPORT_SECTIONS:
        assert section in report, f"report lacks {section!r}"
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 10
    for rel in images:
        assert not rel.startswith("/"), "figure links are relative so the report renders on GitHub"
        image = (demo / "reports" / rel).resolve()
        assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
    assert "preset | demo" in report or "preset: demo" in report.lower() or "`demo`" in report
    assert "reliability_instruct_lm.png" in report and "reliability_base_lm.png" in report
    assert "| base vs a |" in report and "position consistency" in report
    # The conclusions claim significance only after a correction whose interval agrees, and
    # rank no choice above another by its noisy spread (scripts/benchmark_false_claims.py).
    conclusions = report.split("## Conclusions", 1)[1].split("\n## ", 1)[0]
    assert "dominat" not in conclusions and "worth more" not in conclusions
    for line in conclusions.splitlines():
        if "significantly" in line and "none of" not in line:
            assert "Bonferroni" in line, line
    for variant in ("a", "b"):
        merged = demo / "models/merged" / variant
        assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()


def test_rerun_does_nothing(demo):
    proc = run(["snakemake", "--profile", "profiles/demo", "--cores", "2"], demo)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@contextlib.contextmanager
def edited(path: Path):
    """`path` with a comment appended (a code edit), then restored with its times."""
    text, times = path.read_text(), path.stat()
    path.write_text(text + "\n# an edit\n")
    try:
        yield
    finally:
        path.write_text(text)
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def test_a_code_edit_reruns_exactly_the_stages_that_import_it(demo):
    """Code dependencies come from imports: a saiga-only edit leaves the IMDB download and
    every LLM evaluation up to date; an edit of the prompt code reruns the evaluations."""

    def pending() -> set[str]:
        out = run(["snakemake", "--profile", "profiles/demo", "--cores", "2", "-n"], demo).stdout
        return set(job_counts(out)) - {"total", "all"} if "Job stats:" in out else set()

    with edited(demo / "src/llmlab/synthetic/saiga_dialogue.py"):
        jobs = pending()
    assert "download_saiga" in jobs and "filter_saiga" in jobs, jobs
    assert not jobs & {"download_imdb", "split_imdb", "eval_llm", "baseline_tfidf"}, jobs
    with edited(demo / "src/llmlab/eval/prompts.py"):
        jobs = pending()
    assert "eval_llm" in jobs and "eval_summary" in jobs, jobs
    assert not jobs & {"download_imdb", "download_saiga", "train_lora", "baseline_rnn"}, jobs
    assert pending() == set()


def test_dvc_adopts_outputs_and_reruns_only_what_a_param_change_touches(demo):
    # The demo preset recorded in params.yaml, then DVC adopts what Snakemake produced.
    params = demo / "params.yaml"
    params.write_text(params.read_text().replace("\npreset: full", "\npreset: demo", 1))
    run(["dvc", "commit", "--force", "--quiet"], demo)
    status = run(["dvc", "status"], demo).stdout
    assert "up to date" in status, status

    # A variant's parameter invalidates that variant's training only (`dvc status` names the
    # stages whose own params changed; retraining would take minutes, so it is not run).
    text = params.read_text()
    raw = yaml.safe_load(text)
    raw["sft"]["variants"]["b"]["lora"]["r"] *= 2
    params.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    status = run(["dvc", "status"], demo).stdout
    params.write_text(text)
    changed = set(re.findall(r"^(\S+):$", status, re.MULTILINE))
    assert changed == {"train_lora@b"}, status
    assert "sft.variants.b.lora" in status, status

    # An experiment reruns the changed stage and exactly what reads its outputs.
    out = run(["dvc", "exp", "run", "-S", "presets.demo.baselines.tfidf.min_df=3"], demo).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"baseline_tfidf", "eval_summary", "report"}, out
    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], demo).stdout
    assert "min_df" in shown, shown


def test_dvc_push_and_pull_restore_identical_files(demo, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "--default", "ci", str(remote)], demo)
    run(["dvc", "commit", "--force", "--quiet"], demo)
    run(["dvc", "push", "--quiet"], demo)
    run(["git", "add", "-A"], demo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], demo)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(demo), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--local", "--default", "ci", str(remote)], clone)
    run(["dvc", "pull", "--quiet"], clone)
    tracked = ["data", "models/adapters", "results", "reports/report.md"]
    assert tree_hashes(clone, tracked) == tree_hashes(demo, tracked)
    assert (clone / "models/adapters/a/adapter_config.json").is_file()
    shutil.rmtree(clone)
    shutil.rmtree(remote)


def _kill_when_running(pattern: list[str], stop: threading.Event) -> list[int]:
    """SIGKILL the first process whose command line holds every string of `pattern`,
    a second after it appears (mid-job, as a preempted node would)."""
    import psutil

    killed: list[int] = []

    def watch() -> None:
        while not stop.is_set():
            for proc in psutil.process_iter(["cmdline", "name"]):
                cmd = proc.info["cmdline"] or []
                if cmd[:1] and "python" in Path(cmd[0]).name and all(p in cmd for p in pattern):
                    time.sleep(1.0)
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
                        killed.append(proc.pid)
                    return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    return killed


def test_sharded_eval_equals_one_job_and_resumes_after_a_kill(demo):
    """eval.shards: 3 on one demo (model, shots): a killed shard job reruns alone, and the
    gathered predictions equal the unsharded run's. Edits params (restored at the end)."""
    import numpy as np
    import polars as pl

    run_dir = "results/eval/instruct_lm/0shot"
    target = f"{run_dir}/predictions.parquet"
    before = pl.read_parquet(demo / target)
    params = demo / "params.yaml"
    original = params.read_text()
    raw = yaml.safe_load(original)
    raw["eval"]["shards"] = 3  # shapes the DAG: the same in every preset
    params.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    snakemake = ["snakemake", "--profile", "profiles/demo", "--cores", "1"]
    try:
        stop = threading.Event()
        killed = _kill_when_running(["eval-llm", "--shard", "1"], stop)
        proc = run([*snakemake, "--keep-going", target], demo, check=False)
        stop.set()
        assert killed and proc.returncode != 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        shards = {i: demo / run_dir / f"shards/{i}.parquet" for i in range(3)}
        assert shards[0].is_file() and shards[2].is_file() and not shards[1].exists()
        kept = {i: shards[i].stat().st_mtime_ns for i in (0, 2)}

        dry = run([*snakemake, "-n", target], demo)
        assert job_counts(dry.stdout) == {"eval_llm": 1, "eval_llm_gather": 1}, dry.stdout
        run([*snakemake, target], demo)
        assert {i: shards[i].stat().st_mtime_ns for i in (0, 2)} == kept
    finally:
        params.write_text(original)

    after = pl.read_parquet(demo / target)
    assert after.columns == before.columns and after.height == before.height
    exact = [c for c in before.columns if c not in ("seconds", "label_scores")]
    assert after.select(exact).equals(before.select(exact))
    # Scores: the same sums over other batches (padding widths, the shared-prefix split)
    # differ in float32 rounding: up to 9.4e-6 measured on the demo.
    np.testing.assert_allclose(
        np.array(after["label_scores"].to_list()),
        np.array(before["label_scores"].to_list()),
        atol=1e-4,
    )
    info = json.loads((demo / run_dir / "metrics.json").read_text())
    assert [s["shard"] for s in info["shards"]] == [0, 1, 2]
    assert sum(s["rows"] for s in info["shards"]) == before["review_id"].n_unique()
