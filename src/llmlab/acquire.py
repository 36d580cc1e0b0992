"""Acquisition: turn a configured dataset source into a schema-checked table.

The `download_imdb` / `download_saiga` stages call `load_dataset_source` and write the result
to `data/raw/{imdb,saiga}.parquet`; every later stage reads local files only. A source is a
hub id at a pinned revision, a local file (for air-gapped clusters and offline copies), or
the project's own generator (demo preset, tests). Whatever the source, the result has the
same columns and value sets, so the rest of the pipeline never knows where data came from:

- imdb: exactly (review, sentiment), sentiment in {"negative", "positive"}. Sources with
  `text` / `label` columns (e.g. `stanfordnlp/imdb`) are accepted: label 0 is negative and
  1 positive (that dataset's convention); any other value is an error, never guessed.
- saiga: the SAIGA_FULL_SCHEMA columns in the hub's order. Revisions without
  `score_explanation` get it as an all-null column (decision: one schema for the raw file,
  null meaning "not given"), so readers need no second code path. Extra columns are
  dropped. Roles, languages, complexities and scores are checked against the documented
  value sets; off-list topics are kept (the real data has a few).

A source with no rows is an error at download, not an empty table for later stages to trip
on. Errors name the file (or hub id), the column and the fix; each kind of problem is reported
once, with a count and examples, and all problems found are reported together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import polars as pl

from llmlab.config import Config
from llmlab.errors import UserError
from llmlab.hub import network_error_in
from llmlab.io import SchemaError, check_schema, write_json, write_parquet
from llmlab.schemas import (
    IMDB_SCHEMA,
    MESSAGE_DTYPE,
    OPUS_SCORE_RANGE,
    SAIGA_COMPLEXITIES,
    SAIGA_FULL_SCHEMA,
    SAIGA_LANGUAGES,
    SAIGA_OPTIONAL_SCHEMA,
    SAIGA_ROLES,
    SENTIMENTS,
)
from llmlab.sources import DataSource, HubDataset, LocalFile, Synthetic

log = logging.getLogger(__name__)

Dataset = Literal["imdb", "saiga"]
# A synthetic data generator: (rows, seed) -> the raw table (llmlab.synthetic.<dataset>).
Generator = Callable[[int, int], pl.DataFrame]

# Longest suffix first, so "x.csv.gz" is not taken for ".gz".
LOCAL_FORMATS: tuple[str, ...] = (".jsonl.gz", ".csv.gz", ".parquet", ".jsonl", ".csv")

# The hub's struct field order, which polars' dtype comparison depends on.
_MESSAGE_FIELDS = tuple(field.name for field in MESSAGE_DTYPE.fields)
# How many offending values an error message lists.
_EXAMPLES = 5


class HubUnavailableError(ConnectionError):
    """The Hugging Face Hub could not be reached (offline mode, no network, DNS, timeout)."""


def load_dataset_source(
    source: DataSource,
    dataset: Dataset,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    generate: Generator | None = None,
) -> pl.DataFrame:
    """Load `source` as the `dataset` table, normalised and validated (see the module doc).

    Relative local paths are resolved against `base_dir` (default: the working directory,
    which is the repository root when Snakemake or DVC runs the stage). A synthetic source
    needs `generate`, the dataset's generator (llmlab.synthetic.<dataset>): the download stage
    of each dataset passes its own, so its code never depends on the other dataset's.
    """
    if dataset not in ("imdb", "saiga"):
        raise ValueError(f"unknown dataset {dataset!r}: expected 'imdb' or 'saiga'")
    if isinstance(source, Synthetic):
        spec = source.synthetic
        if generate is None:
            raise ValueError(f"{dataset}: a synthetic source needs the dataset's generator")
        df = generate(spec.rows, spec.seed)
        where = f"synthetic {dataset} (rows={spec.rows}, seed={spec.seed})"
    elif isinstance(source, HubDataset):
        df = _load_hub(source, dataset)
        where = f"hub dataset {source.hub}@{source.revision} (split {source.split})"
    elif isinstance(source, LocalFile):
        path = Path(source.path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        df = read_local_table(path, dataset)
        where = str(path)
    else:
        raise TypeError(f"not a dataset source: {source!r}")
    if df.height == 0:
        # Checked before the columns: a header-only file's columns are typed String, which
        # would be reported as wrong dtypes instead of what is really wrong.
        raise SchemaError(
            f"{where}: no rows (an empty table or a header only); {dataset}.source must point "
            "at the data"
        )
    return normalize_imdb(df, where) if dataset == "imdb" else normalize_saiga(df, where)


def read_local_table(path: Path, dataset: Dataset) -> pl.DataFrame:
    """Read a .csv / .csv.gz / .parquet / .jsonl / .jsonl.gz file as it is (no checks)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: file not found (set by {dataset}.source.path; relative paths are "
            "resolved against the repository root)"
        )
    suffix = next((s for s in LOCAL_FORMATS if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"{path}: unsupported file type for {dataset}.source.path "
            f"(supported: {', '.join(sorted(LOCAL_FORMATS))})"
        )
    try:
        if suffix.startswith(".csv"):
            # Long inference window: a text column must not be typed from a few short rows.
            return pl.read_csv(path, infer_schema_length=10_000)
        if suffix == ".parquet":
            return pl.read_parquet(path)
        return pl.read_ndjson(path, infer_schema_length=10_000)
    except pl.exceptions.PolarsError as e:
        raise SchemaError(f"{path}: cannot be read as {suffix}: {e}") from e


def _load_hub(source: HubDataset, dataset: Dataset) -> pl.DataFrame:
    """Download (or reuse the cached) hub split and convert it to polars through arrow."""
    # Imported here: `datasets` takes a second to import and only this path needs it.
    import datasets

    try:
        ds = datasets.load_dataset(source.hub, revision=source.revision, split=source.split)
    except Exception as e:
        cause = network_error_in(e)
        if cause is None:
            raise
        offline = " (HF_HUB_OFFLINE is set here)" if os.environ.get("HF_HUB_OFFLINE") else ""
        # The network error itself, not a wrapper's text, on one line (the CLI prints one).
        what = " ".join(f"{type(cause).__name__}: {cause}".split())
        raise HubUnavailableError(
            f"cannot download hub dataset {source.hub!r} at revision {source.revision!r} "
            f"(split {source.split!r}): the Hugging Face Hub is not reachable{offline}: "
            f"{what}. Fix: run the download_{dataset} stage where the hub is "
            "reachable (downloads are local rules: run them on a login node), or copy the "
            f"data and point {dataset}.source at it with `path: <file>.parquet` "
            "(.csv, .jsonl also work)."
        ) from e
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"{source.hub}: expected one split, got {type(ds).__name__}")
    return ds.to_polars()


# ---------------------------------------------------------------------------------------
# IMDB
# ---------------------------------------------------------------------------------------

# Column names other IMDB copies use for ours (stanfordnlp/imdb: text, label).
_IMDB_ALIASES = {"review": "text", "sentiment": "label"}
# stanfordnlp/imdb: 0 = neg, 1 = pos.
_LABEL_IDS = {0: "negative", 1: "positive"}


def normalize_imdb(df: pl.DataFrame, where: str) -> pl.DataFrame:
    """Exactly (review, sentiment) with valid labels, or SchemaError naming `where`."""
    renames = {
        alias: name
        for name, alias in _IMDB_ALIASES.items()
        if name not in df.columns and alias in df.columns
    }
    df = df.rename(renames)
    missing = [name for name in IMDB_SCHEMA if name not in df.columns]
    if missing:
        raise SchemaError(
            f"{where}: missing column(s) {', '.join(map(repr, missing))}: an IMDB table needs "
            f"'review' (or 'text') and 'sentiment' (or 'label'); found {df.columns}"
        )
    problems = []
    sentiment = df["sentiment"]
    if sentiment.dtype.is_integer():
        unknown = sentiment.filter(~sentiment.is_in(list(_LABEL_IDS)) | sentiment.is_null())
        if unknown.len():
            problems.append(_value_problem("sentiment", unknown, "0 (negative) or 1 (positive)"))
        else:
            df = df.with_columns(
                pl.col("sentiment").replace_strict(_LABEL_IDS, return_dtype=pl.String)
            )
    elif sentiment.dtype == pl.String:
        unknown = sentiment.filter(~sentiment.is_in(SENTIMENTS) | sentiment.is_null())
        if unknown.len():
            problems.append(_value_problem("sentiment", unknown, " / ".join(SENTIMENTS)))
    else:
        problems.append(f"column 'sentiment' is {sentiment.dtype}, expected strings {SENTIMENTS}")
    if df["review"].dtype != pl.String:
        problems.append(f"column 'review' is {df['review'].dtype}, expected text (String)")
    elif (nulls := df["review"].null_count()) > 0:
        problems.append(f"column 'review' has {nulls} null value(s)")
    _raise(problems, where)
    df = df.select(IMDB_SCHEMA.names())
    check_schema(df, IMDB_SCHEMA, where)
    return df


# ---------------------------------------------------------------------------------------
# saiga
# ---------------------------------------------------------------------------------------


def normalize_saiga(df: pl.DataFrame, where: str) -> pl.DataFrame:
    """SAIGA_FULL_SCHEMA columns with valid values, or SchemaError naming `where`."""
    for name, dtype in SAIGA_OPTIONAL_SCHEMA.items():
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(name))
    if "messages" in df.columns:
        df = df.with_columns(_canonical_messages(df["messages"], where))
    # Integer columns may come as Int32 (parquet from other tools) or be inferred by a CSV
    # reader; widening them is lossless. Anything else is left for the schema check to name.
    df = df.with_columns(
        pl.col(name).cast(pl.Int64)
        for name, dtype in SAIGA_FULL_SCHEMA.items()
        if dtype == pl.Int64 and name in df.columns and df.schema[name].is_integer()
    )
    check_schema(df, SAIGA_FULL_SCHEMA, where)
    df = df.select(SAIGA_FULL_SCHEMA.names())
    _raise(saiga_value_problems(df), where)
    return df


def _canonical_messages(messages: pl.Series, where: str) -> pl.Series:
    """`messages` as list[struct{content, role}] in that field order.

    CSV files hold the list as JSON text; JSON lines and other tools may order the struct
    fields differently or add fields: all become the hub's layout.
    """
    target = SAIGA_FULL_SCHEMA["messages"]
    if messages.dtype == target:
        return messages
    if messages.dtype == pl.String:
        try:
            return messages.str.json_decode(target)
        except pl.exceptions.PolarsError as e:
            raise SchemaError(
                f"{where}: column 'messages' is text but not a JSON list of "
                f'{{"content": ..., "role": ...}} objects: {e}'
            ) from e
    inner = messages.dtype.inner if isinstance(messages.dtype, pl.List) else None
    if isinstance(inner, pl.Struct) and {"content", "role"} <= {f.name for f in inner.fields}:
        fields = [pl.element().struct.field(name).cast(pl.String) for name in _MESSAGE_FIELDS]
        return messages.list.eval(pl.struct(fields))
    raise SchemaError(
        f"{where}: column 'messages' is {messages.dtype}, expected {target} "
        "(a list of {content, role} messages)"
    )


def saiga_value_problems(df: pl.DataFrame) -> list[str]:
    """One message per kind of value outside the documented sets (empty if none)."""
    problems = []
    if n := df.filter(pl.col("messages").is_null() | (pl.col("messages").list.len() == 0)).height:
        problems.append(f"column 'messages': {n} row(s) have no messages")
    roles = df["messages"].explode().struct.field("role")
    if (bad := roles.filter(~roles.is_in(SAIGA_ROLES) | roles.is_null())).len():
        problems.append(_value_problem("messages.role", bad, " / ".join(SAIGA_ROLES)))
    for column, allowed in (
        ("language", SAIGA_LANGUAGES),
        ("sonnet_complexity", SAIGA_COMPLEXITIES),
    ):
        values = df[column]
        if (bad := values.filter(~values.is_in(allowed) | values.is_null())).len():
            problems.append(_value_problem(column, bad, " / ".join(allowed)))
    lo, hi = OPUS_SCORE_RANGE
    scores = df["opus_score"]
    if (bad := scores.filter(~scores.is_between(lo, hi) | scores.is_null())).len():
        problems.append(_value_problem("opus_score", bad, f"integers {lo}..{hi}"))
    turns = df["turns"]
    if (bad := turns.filter((turns < 1) | turns.is_null())).len():
        problems.append(_value_problem("turns", bad, "integers >= 1"))
    return problems


def _value_problem(column: str, bad: pl.Series, expected: str) -> str:
    counts = bad.cast(pl.String).fill_null("<null>").value_counts(sort=True)
    examples = ", ".join(f"{value!r} ({n})" for value, n in counts.head(_EXAMPLES).iter_rows())
    more = f" and {counts.height - _EXAMPLES} more" if counts.height > _EXAMPLES else ""
    return f"column {column!r} has {bad.len()} value(s) outside {expected}: {examples}{more}"


def _raise(problems: list[str], where: str) -> None:
    if problems:
        raise SchemaError(f"{where}: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------


def _hub_commit(source: HubDataset) -> str | None:
    """The commit sha `source.revision` resolves to, for provenance (None if unreachable)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source.hub, revision=source.revision).sha
    except Exception:  # provenance is best effort: the data itself was already loaded
        return None


def provenance(source: DataSource, dataset: Dataset, df: pl.DataFrame) -> dict[str, object]:
    """What `data/raw/<dataset>.json` records: where the rows came from and what they are."""
    record: dict[str, object] = {
        "dataset": dataset,
        "source": source.model_dump(mode="json"),
        "rows": df.height,
        "columns": {name: str(dtype) for name, dtype in df.schema.items()},
    }
    if isinstance(source, HubDataset):
        record["resolved_revision"] = _hub_commit(source)
    if dataset == "imdb":
        record["label_counts"] = dict(df["sentiment"].value_counts(sort=True).iter_rows())
    else:
        record["language_counts"] = dict(df["language"].value_counts(sort=True).iter_rows())
    return record


def run_download(
    cfg: Config, dataset: Dataset, out: Path, meta: Path, generate: Generator | None = None
) -> None:
    """Stage download_<dataset>: the configured source -> schema-checked parquet + provenance.

    `generate`: the dataset's generator, used when the source is `synthetic`.
    """
    source = cfg.imdb.source if dataset == "imdb" else cfg.saiga.source
    try:
        df = load_dataset_source(source, dataset, generate=generate)
    except (HubUnavailableError, FileNotFoundError, ValueError) as e:
        # Bad input, not a bug: one line naming the source, no traceback, no output.
        raise UserError(f"{dataset}.source: {e}") from e
    log.info("%s: %d rows from %s", dataset, df.height, source.model_dump(mode="json"))
    write_parquet(df, out)
    write_json(provenance(source, dataset, df), meta)
