"""Loading dataset sources: local files of each format, the hub path, clear errors."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import polars as pl
import pytest

from llmlab.acquire import HubUnavailableError, load_dataset_source, run_download
from llmlab.config import Config, load_params
from llmlab.errors import UserError
from llmlab.hub import is_network_error
from llmlab.io import SchemaError
from llmlab.schemas import IMDB_SCHEMA, SAIGA_FULL_SCHEMA
from llmlab.sources import HubDataset, LocalFile, Synthetic, SyntheticSpec
from llmlab.synthetic.imdb import generate_imdb
from llmlab.synthetic.saiga import generate_saiga

REPO = Path(__file__).resolve().parents[1]
REAL_IMDB = REPO.parent / "shared" / "data" / "imdb_aclimdb.csv.gz"


@pytest.fixture(scope="module")
def imdb() -> pl.DataFrame:
    return generate_imdb(200, seed=11)


@pytest.fixture(scope="module")
def saiga() -> pl.DataFrame:
    return generate_saiga(200, seed=11)


def _local(path: Path) -> LocalFile:
    return LocalFile(path=path)


def _gzip(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    return target


# ---------------------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "schema"), [("imdb", IMDB_SCHEMA), ("saiga", SAIGA_FULL_SCHEMA)]
)
def test_synthetic_source(dataset, schema) -> None:
    source = Synthetic(synthetic=SyntheticSpec(rows=50, seed=2))
    generate = generate_imdb if dataset == "imdb" else generate_saiga
    df = load_dataset_source(source, dataset, generate=generate)
    assert df.schema == schema
    assert df.height == 50


# ---------------------------------------------------------------------------------------
# local files
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet", "jsonl", "jsonl.gz"])
def test_imdb_local_formats_round_trip(fmt: str, imdb: pl.DataFrame, tmp_path: Path) -> None:
    plain = tmp_path / f"imdb.{fmt.removesuffix('.gz')}"
    if plain.suffix == ".csv":
        imdb.write_csv(plain)
    elif plain.suffix == ".parquet":
        imdb.write_parquet(plain)
    else:
        imdb.write_ndjson(plain)
    path = _gzip(plain) if fmt.endswith(".gz") else plain
    df = load_dataset_source(_local(path), "imdb")
    assert df.equals(imdb)


def test_imdb_extra_columns_dropped_and_hub_style_labels_mapped(
    imdb: pl.DataFrame, tmp_path: Path
) -> None:
    # stanfordnlp/imdb style: text + label (0 = neg, 1 = pos), plus an id column.
    other = imdb.select(
        pl.int_range(pl.len()).alias("id"),
        pl.col("review").alias("text"),
        (pl.col("sentiment") == "positive").cast(pl.Int64).alias("label"),
    )
    path = tmp_path / "imdb.parquet"
    other.write_parquet(path)
    assert load_dataset_source(_local(path), "imdb").equals(imdb)


def test_relative_path_resolved_against_base_dir(imdb: pl.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    imdb.write_parquet(tmp_path / "data" / "imdb.parquet")
    source = _local(Path("data/imdb.parquet"))
    assert load_dataset_source(source, "imdb", base_dir=tmp_path).equals(imdb)


def test_saiga_parquet_round_trip(saiga: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "saiga.parquet"
    saiga.write_parquet(path)
    assert load_dataset_source(_local(path), "saiga").equals(saiga)


def test_saiga_jsonl_without_score_explanation_and_other_field_order(
    saiga: pl.DataFrame, tmp_path: Path
) -> None:
    # Early revisions lack score_explanation; other tools write role before content.
    swapped = saiga.drop("score_explanation").with_columns(
        pl.col("messages").list.eval(
            pl.struct(pl.element().struct.field("role"), pl.element().struct.field("content"))
        )
    )
    path = tmp_path / "saiga.jsonl"
    swapped.write_ndjson(path)
    df = load_dataset_source(_local(_gzip(path)), "saiga")
    assert df.schema == SAIGA_FULL_SCHEMA
    assert df["score_explanation"].null_count() == df.height
    assert df.drop("score_explanation").equals(saiga.drop("score_explanation"))


def test_saiga_csv_with_json_messages(saiga: pl.DataFrame, tmp_path: Path) -> None:
    as_text = saiga.with_columns(
        pl.concat_str(
            pl.lit("["),
            pl.col("messages").list.eval(pl.element().struct.json_encode()).list.join(","),
            pl.lit("]"),
        ).alias("messages")
    )
    path = tmp_path / "saiga.csv"
    as_text.write_csv(path)
    assert load_dataset_source(_local(path), "saiga").equals(saiga)


def test_missing_file_names_the_path_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError) as err:
        load_dataset_source(_local(path), "saiga")
    assert str(path) in str(err.value)
    assert "saiga.source.path" in str(err.value)


def test_unknown_extension_names_the_file_and_supported_types(
    imdb: pl.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "imdb.txt"
    imdb.write_csv(path)
    with pytest.raises(ValueError, match=r"imdb\.txt: unsupported file type") as err:
        load_dataset_source(_local(path), "imdb")
    assert ".parquet" in str(err.value) and ".jsonl.gz" in str(err.value)


def test_missing_column_names_the_file_and_the_column(imdb: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "imdb.csv"
    imdb.select("review").write_csv(path)
    with pytest.raises(SchemaError, match="missing column") as err:
        load_dataset_source(_local(path), "imdb")
    assert str(path) in str(err.value) and "'sentiment'" in str(err.value)

    path = tmp_path / "saiga.parquet"
    generate_saiga(20, seed=1).drop("opus_score").write_parquet(path)
    with pytest.raises(SchemaError, match="missing column 'opus_score'") as err:
        load_dataset_source(_local(path), "saiga")
    assert str(path) in str(err.value)


def test_bad_sentiment_values_are_listed(imdb: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "imdb.parquet"
    imdb.with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then(pl.lit("pos"))
        .otherwise(pl.col("sentiment"))
        .alias("sentiment")
    ).write_parquet(path)
    with pytest.raises(SchemaError, match=r"'sentiment' has 3 value\(s\) outside .*'pos' \(3\)"):
        load_dataset_source(_local(path), "imdb")


def test_saiga_value_problems_reported_once_per_kind(saiga: pl.DataFrame, tmp_path: Path) -> None:
    bad = saiga.with_columns(
        pl.col("messages").list.eval(
            pl.struct(
                pl.element().struct.field("content"),
                pl.element().struct.field("role").replace("bot", "assistant"),
            )
        ),
        pl.col("language").replace("English", "english"),
        pl.col("sonnet_complexity").replace("hard", "expert"),
        pl.col("opus_score") + 5,
    )
    path = tmp_path / "saiga.parquet"
    bad.write_parquet(path)
    with pytest.raises(SchemaError) as err:
        load_dataset_source(_local(path), "saiga")
    message = str(err.value)
    assert message.startswith(str(path))
    for column, value in (
        ("messages.role", "'assistant'"),
        ("language", "'english'"),
        ("sonnet_complexity", "'expert'"),
        ("opus_score", "'15'"),
    ):
        assert message.count(f"column '{column}'") == 1, column
        assert value in message


def test_wrong_dtype_is_named(saiga: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "saiga.parquet"
    saiga.with_columns(pl.col("is_bad_by_regex").cast(pl.String)).write_parquet(path)
    with pytest.raises(SchemaError, match="column 'is_bad_by_regex' is String, expected Boolean"):
        load_dataset_source(_local(path), "saiga")


@pytest.mark.skipif(not REAL_IMDB.exists(), reason="reference data not available")
def test_real_imdb_reference_file_loads() -> None:
    df = load_dataset_source(_local(REAL_IMDB), "imdb")
    assert df.schema == IMDB_SCHEMA
    assert df.height == 50_000
    assert dict(df["sentiment"].value_counts().iter_rows()) == {
        "positive": 25_000,
        "negative": 25_000,
    }


# ---------------------------------------------------------------------------------------
# hub
# ---------------------------------------------------------------------------------------


def test_hub_offline_fails_fast_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to the network call, then a clear error instead of retries.

    `datasets` and `huggingface_hub` read HF_HUB_OFFLINE once at import, so the test sets
    their module flags as well as the variable the error message looks at.
    """
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    source = HubDataset(hub="llmlab-tests/no-such-dataset", revision="0" * 40)
    start = time.monotonic()
    with pytest.raises(HubUnavailableError) as err:
        load_dataset_source(source, "saiga")
    assert time.monotonic() - start < 20
    message = str(err.value)
    assert "llmlab-tests/no-such-dataset" in message
    assert "0" * 40 in message
    assert "saiga.source" in message and "path:" in message
    assert isinstance(err.value, ConnectionError)


def test_hub_dataset_converted_through_arrow(
    saiga: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        # Hub copies come without score_explanation in early revisions.
        return datasets.Dataset.from_polars(saiga.drop("score_explanation"))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = HubDataset(hub="IlyaGusev/saiga_scored", revision="abc123", split="train")
    df = load_dataset_source(source, "saiga")
    assert calls == [("IlyaGusev/saiga_scored", {"revision": "abc123", "split": "train"})]
    assert df.schema == SAIGA_FULL_SCHEMA
    assert df.drop("score_explanation").equals(saiga.drop("score_explanation"))


def _chained(err: BaseException, *, how: str) -> BaseException:
    """`err` wrapped the way libraries do: `raise ... from err`, or raised while handling it."""
    try:
        try:
            raise err
        except BaseException as inner:
            if how == "cause":
                raise RuntimeError("wrapped") from inner
            if how == "suppressed":
                raise RuntimeError("wrapped") from None
            raise RuntimeError("wrapped")  # noqa: B904 - the implicit context is under test
    except RuntimeError as outer:
        return outer


def _refused_connection_error(module: str) -> BaseException:
    """A real error of `module` (httpx or httpx2) from a refused connection, chain and all."""
    client_lib = pytest.importorskip(module)
    with client_lib.Client(timeout=5) as client:
        try:
            client.get("http://127.0.0.1:9/")  # the discard port: nothing listens there
        except client_lib.TransportError as err:
            return err
    pytest.fail("a connection to 127.0.0.1:9 succeeded")


def _network_errors() -> list[BaseException]:
    import socket

    import httpx
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    dns = "[Errno -3] Temporary failure in name resolution"
    # What hf_hub_download raises on a DNS failure: LocalEntryNotFoundError from httpx2's.
    not_cached = LocalEntryNotFoundError("cannot find the requested files in the local cache")
    not_cached.__cause__ = httpx2.ConnectError(dns)
    return [
        httpx.ConnectError(dns),
        httpx.ReadTimeout("timed out"),
        httpx2.ConnectError(dns),
        httpx2.ConnectTimeout("timed out"),
        httpx2.ReadTimeout("The read operation timed out"),
        httpx2.ReadError("[Errno 104] Connection reset by peer"),
        httpx2.RemoteProtocolError("Server disconnected without sending a response."),
        httpx2.ProxyError("407 Proxy Authentication Required"),
        _refused_connection_error("httpx"),
        _refused_connection_error("httpx2"),
        OfflineModeIsEnabled("offline mode is enabled"),
        not_cached,
        # datasets wraps metadata failures in a builtin ConnectionError.
        ConnectionError("Couldn't reach 'scikit-learn/imdb' on the Hub (LocalEntryNotFoundError)"),
        socket.gaierror(-2, "Name or service not known"),
        TimeoutError("timed out"),
        _chained(httpx2.ReadError("reset"), how="cause"),
        _chained(httpx2.ReadTimeout("timed out"), how="context"),
        _chained(httpx2.ConnectError(dns), how="suppressed"),
    ]


def _other_errors() -> list[BaseException]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    request = httpx2.Request("GET", "https://huggingface.co/api/datasets/x/y")
    response = httpx2.Response(500, request=request)
    return [
        ValueError("bad value"),
        FileNotFoundError("x.csv"),  # a local file, not the hub's cache
        KeyError("split"),
        httpx2.HTTPStatusError("500", request=request, response=response),
        HfHubHTTPError("500 Server Error", response=response),
        RepositoryNotFoundError("404", response=httpx2.Response(404, request=request)),
        httpx2.DecodingError("bad gzip"),  # the server answered; its body was broken
        _chained(ValueError("bad value"), how="cause"),
    ]


def test_is_network_error_with_the_real_exception_classes() -> None:
    for err in _network_errors():
        assert is_network_error(err), repr(err)
    for err in _other_errors():
        assert not is_network_error(err), repr(err)


def test_is_network_error_stops_on_a_cyclic_chain() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not is_network_error(a)


def _hub_failure(kind: str) -> BaseException:
    import httpx2

    if kind == "dns":
        return httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")
    if kind == "timeout":
        return httpx2.ReadTimeout("The read operation timed out")
    return _chained(httpx2.ReadError("[Errno 104] Connection reset by peer"), how="cause")


@pytest.mark.parametrize("kind", ["dns", "timeout", "chained"])
def test_hub_network_error_becomes_the_unreachable_hub_message(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")

    def unreachable(*args, **kwargs):
        raise _hub_failure(kind)

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    source = HubDataset(hub="scikit-learn/imdb", revision="main", split="train")
    with pytest.raises(HubUnavailableError, match="Hugging Face Hub is not reachable") as err:
        load_dataset_source(source, "imdb")
    message = str(err.value)
    assert "scikit-learn/imdb" in message and "path:" in message and "\n" not in message
    # The network error itself is named, not the wrapper around it.
    assert {"dns": "ConnectError: ", "timeout": "ReadTimeout: ", "chained": "ReadError: "}[
        kind
    ] in message
    # Through the stage: one line for the CLI, nothing written.
    out, meta = tmp_path / "imdb.parquet", tmp_path / "imdb.json"
    with pytest.raises(UserError, match=r"^imdb\.source: cannot download hub dataset"):
        run_download(_with_source(_demo_config(), "imdb", source), "imdb", out, meta)
    assert list(tmp_path.iterdir()) == []


def test_hub_error_that_is_not_a_network_error_is_not_disguised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datasets = pytest.importorskip("datasets")

    def broken(*args, **kwargs):
        raise KeyError("a bug, not the network")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(KeyError):
        load_dataset_source(HubDataset(hub="a/b", revision="main"), "imdb")


# ---------------------------------------------------------------------------------------
# empty datasets
# ---------------------------------------------------------------------------------------


def _demo_config() -> Config:
    return load_params(REPO / "params.yaml", preset="demo")


def _with_source(cfg: Config, dataset: str, source) -> Config:
    section = getattr(cfg, dataset).model_copy(update={"source": source})
    return cfg.model_copy(update={dataset: section})


def _empty_source(kind: str, dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    frame = generate_imdb(5, seed=1) if dataset == "imdb" else generate_saiga(5, seed=1)
    empty = frame.head(0)
    if kind == "csv":
        path = tmp_path / "input" / f"{dataset}.csv"
        path.write_text(",".join(empty.columns) + "\n")  # the header, no rows
        return LocalFile(path=path), str(path)
    if kind == "parquet":
        path = tmp_path / "input" / f"{dataset}.parquet"
        empty.write_parquet(path)
        return LocalFile(path=path), str(path)
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_polars(empty)
    )
    return HubDataset(hub="org/empty", revision="main"), "org/empty"


@pytest.mark.parametrize("kind", ["csv", "parquet", "hub"])
@pytest.mark.parametrize("dataset", ["imdb", "saiga"])
def test_empty_dataset_fails_at_download_naming_the_source(
    dataset: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "input").mkdir()
    source, where = _empty_source(kind, dataset, tmp_path, monkeypatch)
    cfg = _with_source(_demo_config(), dataset, source)
    out, meta = tmp_path / "raw" / f"{dataset}.parquet", tmp_path / "raw" / f"{dataset}.json"
    with pytest.raises(UserError, match="no rows") as err:
        run_download(cfg, dataset, out, meta)
    message = str(err.value)
    assert message.startswith(f"{dataset}.source: ") and where in message
    assert "\n" not in message
    assert not out.exists() and not meta.exists()
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_unknown_dataset_name() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset_source(Synthetic(synthetic=SyntheticSpec(rows=5)), "wiki")  # type: ignore[arg-type]
