"""Files between stages: atomic writes and schema-checked reads.

Every output goes to a temporary sibling first and is renamed into place, so a failed or
killed stage never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from llmlab.errors import UserError


class SchemaError(UserError, ValueError):
    """A table does not have the columns/dtypes a stage expects."""


def current_umask() -> int:
    """The process umask, read without changing it.

    `os.umask` can only be read by setting it, and the umask is process-wide: between the two
    calls another thread (a data loader, a download pool) would create files with the
    temporary value. Linux (4.7+) reports it in /proc/self/status; elsewhere set-and-restore
    is the fallback, through the most private value, so a file created in between is never
    more open than intended. Read on every call, not once at import: the process may change it.
    """
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def default_mode(*, directory: bool) -> int:
    """The mode a plain `open()` (0666) or `mkdir()` (0777) gives under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    The output gets the umask's permissions, like a file written in place: mkstemp makes the
    temporary file 0600, and the rename would keep that.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # After the block: a writer may have replaced the file instead of writing into it.
        tmp_path.chmod(default_mode(directory=False))
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; it replaces `path` only if the block succeeds.

    The directory gets the umask's permissions (mkdtemp makes it 0700); what the block writes
    inside keeps the mode its writer gave it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(default_mode(directory=True))
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    # Fixed compression and no statistics timestamps: same frame -> identical bytes.
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True)


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def check_schema(df: pl.DataFrame, schema: Mapping[str, pl.DataType], where: str) -> None:
    """Raise SchemaError naming `where` if `df` lacks a column of `schema` or has another dtype.

    Extra columns are allowed: upstream data may carry more than a stage uses.
    """
    problems = []
    for name, dtype in schema.items():
        if name not in df.columns:
            problems.append(f"missing column {name!r}")
        elif df.schema[name] != dtype:
            problems.append(f"column {name!r} is {df.schema[name]}, expected {dtype}")
    if problems:
        raise SchemaError(f"{where}: " + "; ".join(problems))


def read_parquet(
    path: str | os.PathLike[str], schema: Mapping[str, pl.DataType] | None = None
) -> pl.DataFrame:
    """Read a stage's parquet input and check it against `schema`, naming the file on error."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: input file does not exist (run the stage that makes it first)")
    df = pl.read_parquet(path)
    if schema is not None:
        check_schema(df, schema, str(path))
    return df
