"""llmlab.io: atomic outputs get the permissions the user's umask gives a plain open()/mkdir()."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from llmlab.io import atomic_dir, current_umask, default_mode, write_json, write_parquet, write_text


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this umask; the previous one is restored afterwards."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask: int) -> None:
    assert current_umask() == umask
    assert current_umask() == umask  # reading did not reset it
    assert default_mode(directory=False) == 0o666 & ~umask
    assert default_mode(directory=True) == 0o777 & ~umask


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_current_umask_does_not_set_the_umask(umask: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting the process-wide umask, even briefly, races with other threads' file creation."""

    def no_umask(mask: int) -> int:
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", no_umask)
    assert current_umask() == umask


def test_written_files_get_the_umask_permissions(umask: int, tmp_path: Path) -> None:
    expected = {0o022: 0o644, 0o027: 0o640}[umask]
    write_json({"a": 1}, tmp_path / "out" / "m.json")
    write_text("# report\n", tmp_path / "out" / "r.md")
    write_parquet(pl.DataFrame({"x": [1, 2]}), tmp_path / "out" / "t.parquet")
    for name in ("m.json", "r.md", "t.parquet"):
        assert _mode(tmp_path / "out" / name) == expected, name
    # Same as a file written in place, which is what a reader of the results expects.
    (tmp_path / "plain.txt").write_text("x")
    assert _mode(tmp_path / "plain.txt") == expected


def test_atomic_dir_gets_the_umask_permissions_and_keeps_its_files_modes(
    umask: int, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    with atomic_dir(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"\0")
        # A library that deliberately writes a private file keeps it private.
        fd = os.open(tmp / "secret.json", os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        (tmp / "sub").mkdir()
    assert _mode(out) == {0o022: 0o755, 0o027: 0o750}[umask]
    assert _mode(out / "weights.bin") == {0o022: 0o644, 0o027: 0o640}[umask]
    assert _mode(out / "secret.json") == 0o600
    assert _mode(out / "sub") == {0o022: 0o755, 0o027: 0o750}[umask]


def test_failed_atomic_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out"):
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []
