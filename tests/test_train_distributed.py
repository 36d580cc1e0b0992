"""train_lora with `distributed.num_processes` > 1: the re-launch decision, checks before any
rank starts, the torchrun command, failure propagation, and a real 2-process gloo run on a CPU
(rank 0 alone writes, losses as one process of the same global batch, resume after a failure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmlab import runtime, train
from llmlab.cli import build_parser
from llmlab.config import resolve
from llmlab.errors import UserError
from llmlab.runtime import DeviceError
from llmlab.train import (
    Rank,
    check_rank,
    checkpoint_complete,
    checkpoint_to_resume,
    current_rank,
    effective_batch_size,
    launch_ranks,
    rank_command,
    run_fingerprint,
    run_train_lora,
    sft_config,
    should_launch,
)
from tests.test_runtime import H100, probe
from tests.test_train import FAST, REPO, demo_config, demo_params, dialogues, outputs
from tests.test_train import write_dialogues as write_parquet

# --------------------------------------------------------------------------- the launch decision


def test_only_a_process_outside_a_group_launches() -> None:
    torchrun = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    assert current_rank({}) is None
    assert current_rank(torchrun) == Rank(rank=1, local_rank=1, world_size=2)
    assert should_launch(2, {}) and should_launch(4, {"PATH": "/bin"})
    assert not should_launch(1, {})  # one process: train here
    assert not should_launch(2, torchrun)  # a rank never launches again
    assert not should_launch(2, {"LOCAL_RANK": "0"})


def test_a_group_of_another_size_is_a_config_error() -> None:
    check_rank(None, 2, "sft.variants.a")  # outside a group: the launcher
    check_rank(Rank(0, 0, 2), 2, "sft.variants.a")
    check_rank(Rank(0, 0, 1), 1, "sft.variants.a")  # torchrun --nproc-per-node 1
    with pytest.raises(UserError, match=r"^sft\.variants\.a\.distributed\.num_processes: 2, but"):
        check_rank(Rank(3, 3, 4), 2, "sft.variants.a")
    with pytest.raises(UserError, match="WORLD_SIZE=2"):
        check_rank(Rank(0, 0, 2), 1, "sft.variants.a")


def test_rank_command_is_the_stage_cli_under_torchrun(tmp_path: Path) -> None:
    paths = {name: tmp_path / name for name in ("model_dir", "train", "eval", "checkpoints")}
    paths |= {name: tmp_path / name for name in ("adapter", "train_log", "metrics", "curve")}
    command = rank_command(tmp_path / "params.yaml", "demo", "a", 2, paths)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    launcher, stage = command[: command.index("llmlab")], command[command.index("llmlab") + 1 :]
    assert "--standalone" in launcher and "--nproc-per-node=2" in launcher and launcher[-1] == "-m"
    args = build_parser().parse_args(stage)
    assert (args.command, args.params, args.preset, args.variant) == (
        "train-lora",
        tmp_path / "params.yaml",
        "demo",
        "a",
    )
    assert {name: getattr(args, name) for name in paths} == paths


def test_the_ranks_read_the_same_config(tmp_path: Path) -> None:
    """launch_distributed hands the ranks the resolved config as a params file."""
    cfg = demo_config(distributed={"num_processes": 2})
    dumped = tmp_path / "params.yaml"
    dumped.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True))
    assert resolve(yaml.safe_load(dumped.read_text()), cfg.preset) == cfg


def test_effective_batch_and_ddp_settings() -> None:
    spec = demo_config(
        quantize=False,
        training={"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4},
        distributed={"num_processes": 3},
    ).sft.variants["a"]
    assert effective_batch_size(spec) == 24
    args = sft_config(spec, runtime.Runtime("cpu", "fp32", "adamw_torch", False), Path("c"))
    # Every LoRA weight is used in each forward; a search for unused ones breaks checkpointing.
    assert args.ddp_find_unused_parameters is False
    assert args.average_tokens_across_devices
    assert args.ddp_backend is None  # no process group here: accelerate would fail on gloo


def model_folder(tmp_path: Path) -> Path:
    """Enough of a model folder for the checks that run before a model is loaded."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_fingerprint_changes_with_the_number_of_processes(tmp_path: Path) -> None:
    data = write_parquet(tmp_path / "d.parquet", dialogues(2, seed=0))
    rt = runtime.Runtime("cpu", "fp32", "adamw_torch", False)
    model = model_folder(tmp_path)
    prints = [
        run_fingerprint(
            demo_config(distributed={"num_processes": n}).sft.variants["a"],
            rt,
            model,
            data,
            data,
            "template",
        )
        for n in (1, 2)
    ]
    assert prints[0] != prints[1]
    assert [k for k in prints[0] if prints[0][k] != prints[1][k]] == ["config"]


def test_a_ddp_checkpoint_needs_every_ranks_rng_state(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint-5"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "rng_state_0.pth").write_bytes(b"")
    assert checkpoint_complete(checkpoint, 1)
    assert not checkpoint_complete(checkpoint, 2)  # rank 1 died before writing its state
    fingerprint = {"config": {}}
    assert checkpoint_to_resume(tmp_path, fingerprint, 2) is None
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{}")
    for i in range(2):
        (checkpoint / f"rng_state_{i}.pth").write_bytes(b"")
    assert checkpoint_to_resume(tmp_path, fingerprint, 2) == checkpoint


# --------------------------------------------------------------------------- checks before launch


@pytest.fixture
def no_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ranks launched")

    monkeypatch.setattr(train.subprocess, "Popen", fail)


def test_too_few_gpus_fail_at_once_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_launch: None
) -> None:
    monkeypatch.setattr(runtime, "probe_cuda", lambda **_: probe(gpus=(H100,)))
    cfg = demo_config(distributed={"num_processes": 2}).model_copy(update={"device": "cuda"})
    missing = tmp_path / "missing"
    with pytest.raises(DeviceError) as err:
        run_train_lora(cfg, "a", missing, missing, missing, *(tmp_path / n for n in "abcde"))
    message = str(err.value)
    assert message.startswith(
        "sft.variants.a.distributed.num_processes: 2 needs 2 GPUs, but torch sees only 1"
    )
    assert "\n" not in message and "CUDA_VISIBLE_DEVICES" in message
    assert list(tmp_path.iterdir()) == []


def test_bad_input_fails_in_the_launcher_before_any_rank(tmp_path: Path, no_launch: None) -> None:
    train_file = write_parquet(tmp_path / "train.parquet", dialogues(4, seed=0))
    cfg = demo_config(quantize=False, distributed={"num_processes": 2})
    out = outputs(tmp_path / "out")
    model = model_folder(tmp_path)
    with pytest.raises(UserError, match="eval.parquet"):
        run_train_lora(cfg, "a", model, train_file, tmp_path / "eval.parquet", **out)
    assert not (tmp_path / "out").exists()


def test_a_failed_launch_is_the_commands_exit_status(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit:
        launch_ranks([sys.executable, "-c", "import sys; sys.exit(3)"], "sft.variants.a")
    assert exit.value.code == 3
    assert "the training processes failed (torchrun exit status 3)" in caplog.text


# --------------------------------------------------------------------------- a real 2-process run

# Records, per process, what it writes (Python audit events), and fails rank 1 on a chosen
# write. (torch.save writes from C++: no event.)
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, sys

    _DIR = os.environ.get("LLMLAB_TEST_AUDIT_DIR")
    _FAIL = os.environ.get("LLMLAB_TEST_FAIL_RANK1_ON")
    _RANK = os.environ.get("RANK", "launcher")
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    _EVENTS = {"open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"}

    if _DIR or _FAIL:
        # Opened before the hook is installed; writes to it raise no audit event.
        _name = f"{_RANK}-{os.getpid()}.txt"
        _log = open(os.path.join(_DIR, _name), "a", buffering=1) if _DIR else None

        def _hook(event, args):
            if event not in _EVENTS or not isinstance(args[0], (str, os.PathLike)):
                return
            path = os.path.abspath(os.fspath(args[0]))
            if event == "open":
                mode, flags = args[1], args[2]
                if not (isinstance(mode, str) and any(c in mode for c in "wax+")) and not (
                    isinstance(flags, int) and flags & _WRITE_FLAGS
                ):
                    return
            if _FAIL and _RANK == "1" and path.endswith(_FAIL):
                raise RuntimeError(f"injected failure in rank 1 writing {path}")
            if _log is not None:
                _log.write(f"{event}\\t{path}\\n")

        sys.addaudithook(_hook)
    """
)

TRAINING = {
    **FAST,
    "gradient_accumulation_steps": 2,
    "max_steps": 6,
    "save_steps": 3,
    "eval_steps": 3,
    "learning_rate": 1e-2,
    "per_device_eval_batch_size": 4,
}
# 2 ranks x 1 dialogue vs 1 process x 2 (grad accumulation 2, fp32, gloo, the tiny model),
# max |difference| measured on a 2-core CPU: train loss per step 9.5e-7 (float32 rounding of
# ~10.6; grad norms equal), final held-out loss 2.4e-8, base model 0.
TRAIN_LOSS_TOLERANCE = 1e-5
HELDOUT_TOLERANCE = 1e-6
# The Trainer's own evaluation during training (the curve's eval points) is not token-weighted:
# under DDP each rank's batch loss is divided by the tokens of all ranks' batches, so its number
# differs systematically, not by rounding: measured 1.3e-4 at step 3.
EVAL_CURVE_TOLERANCE = 5e-4


def cli_command(params_file: Path, model_dir: Path, data: tuple[Path, Path], out: dict) -> list:
    command = [sys.executable, "-m", "llmlab", "train-lora", "--params", str(params_file)]
    command += ["--preset", "demo", "--variant", "a", "--model-dir", str(model_dir)]
    command += ["--train", str(data[0]), "--eval", str(data[1])]
    for key, path in out.items():
        command += [f"--{key.replace('_', '-')}", str(path)]
    return command


def run_cli(command: list, log: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    with log.open("w") as f:
        return subprocess.run(
            command,
            cwd=REPO,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            timeout=600,
        )


def writes(audit: Path, who: str) -> list[tuple[str, str]]:
    """(event, path) of everything the processes named `who` (a RANK or launcher) wrote."""
    return [
        tuple(line.split("\t"))
        for f in audit.glob(f"{who}-*.txt")
        for line in f.read_text().splitlines()
    ]


def losses(log_json: dict) -> list[float]:
    return [e["loss"] for e in log_json["train"]]


@pytest.mark.slow
def test_two_gloo_ranks_train_like_one_process_and_resume(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    data = (
        write_parquet(tmp_path / "data" / "train.parquet", dialogues(24, seed=0)),
        write_parquet(tmp_path / "data" / "eval.parquet", dialogues(10, seed=1)),
    )
    timings = {}

    # One process, 2 dialogues per device: the reference of the same global batch (4).
    start = time.perf_counter()
    one = outputs(tmp_path / "one")
    cfg = resolve(
        demo_params(quantize=False, training={**TRAINING, "per_device_train_batch_size": 2}),
        "demo",
    )
    run_train_lora(cfg, "a", tiny_llama_dir, *data, **one)
    timings["1 process"] = time.perf_counter() - start

    params = demo_params(
        quantize=False,
        training={**TRAINING, "per_device_train_batch_size": 1},
        distributed={"num_processes": 2},
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True))
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    two = outputs(tmp_path / "two")
    command = cli_command(params_file, tiny_llama_dir, data, two)
    env = {"PYTHONPATH": str(hooks)}

    # Rank 1 fails creating the step-6 checkpoint folder (before its RNG state): the command
    # must fail, show the rank's error, and leave no outputs; rank 0 is stopped, not left
    # waiting.
    start = time.perf_counter()
    failed = run_cli(
        command,
        tmp_path / "failed.log",
        {**env, "LLMLAB_TEST_FAIL_RANK1_ON": "checkpoint-6"},
    )
    timings["2 processes, failing"] = time.perf_counter() - start
    text = (tmp_path / "failed.log").read_text()
    assert failed.returncode != 0, text[-3000:]
    assert "injected failure in rank 1" in text
    assert "the training processes failed (torchrun exit status" in text
    assert not any(two[k].exists() for k in ("adapter", "train_log", "metrics", "curve"))
    assert checkpoint_complete(two["checkpoints"] / "checkpoint-3", 2)

    # The rerun resumes from step 3 (the step-6 checkpoint lacks rank 1's RNG state).
    audit = tmp_path / "audit"
    audit.mkdir()
    start = time.perf_counter()
    resumed = run_cli(
        command, tmp_path / "resumed.log", {**env, "LLMLAB_TEST_AUDIT_DIR": str(audit)}
    )
    timings["2 processes, resumed"] = time.perf_counter() - start
    text = (tmp_path / "resumed.log").read_text()
    assert resumed.returncode == 0, text[-3000:]
    assert "incomplete checkpoint" in text

    # Rank 0 alone wrote the outputs; rank 1 and the launcher not even a temporary file.
    finals = [two[k] for k in ("adapter", "train_log", "metrics", "curve")]

    def under_outputs(path: str) -> bool:
        """An output, a file in it, or its temporary sibling (llmlab.io's atomic writes)."""
        written = Path(path)
        return any(
            written == p
            or p in written.parents
            or (written.parent == p.parent and written.name.startswith(f".{p.name}."))
            for p in finals
        )

    assert any(under_outputs(p) for _, p in writes(audit, "0")), "the audit hook saw nothing"
    for who in ("1", "launcher"):
        assert [w for w in writes(audit, who) if under_outputs(w[1])] == [], who
    assert all(p.exists() for p in finals)

    log_one = json.loads(one["train_log"].read_text())
    log_two = json.loads(two["train_log"].read_text())
    metrics_one = json.loads(one["metrics"].read_text())
    metrics_two = json.loads(two["metrics"].read_text())
    assert log_two["resumed_from_step"] == 3 and metrics_two["steps"] == 6
    steps = [e["step"] for e in log_one["train"]]
    assert [e["step"] for e in log_two["train"]] == steps == list(range(1, 7))
    loss_diff = max(abs(a - b) for a, b in zip(losses(log_one), losses(log_two), strict=True))
    eval_diff = max(
        abs(a["eval_loss"] - b["eval_loss"])
        for a, b in zip(log_one["eval"], log_two["eval"], strict=True)
    )
    final_diff = abs(metrics_one["eval_loss"] - metrics_two["eval_loss"])
    base_diff = abs(metrics_one["base_eval_loss"] - metrics_two["base_eval_loss"])
    print(
        f"\nDDP vs 1 process: train loss max |diff| {loss_diff:.2e}, eval during training "
        f"{eval_diff:.2e}, final held-out {final_diff:.2e}, base {base_diff:.2e}; "
        f"losses {losses(log_one)} vs {losses(log_two)}; timings {timings}"
    )
    assert losses(log_one)[0] - losses(log_one)[-1] > 0.1  # it trains: the check means something
    assert loss_diff < TRAIN_LOSS_TOLERANCE
    assert eval_diff < EVAL_CURVE_TOLERANCE
    assert final_diff < HELDOUT_TOLERANCE and base_diff < HELDOUT_TOLERANCE
    # 10 eval dialogues in batches of 4 on 2 ranks: accelerate repeats some to even out the
    # ranks; none may be counted twice.
    assert metrics_two["eval_tokens"] == metrics_one["eval_tokens"]
    assert metrics_two["effective_batch_size"] == metrics_one["effective_batch_size"] == 4
