"""Baselines (TF-IDF + logistic regression, the RNN) on small synthetic IMDB data: they train in
seconds, beat chance clearly, are deterministic, and write the shared predictions schema."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import polars as pl
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from llmlab.baselines import rnn, tfidf
from llmlab.baselines.stage_io import predictions_frame
from llmlab.baselines.text import normalize_text, tokenize
from llmlab.config import Config, ConfigError, RnnConfig, TfidfConfig, load_params, resolve
from llmlab.errors import UserError
from llmlab.io import check_schema, read_json, write_parquet
from llmlab.schemas import PREDICTIONS_SCHEMA
from llmlab.synthetic.imdb import generate_imdb

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
LABELS = ["negative", "positive"]
# Small enough to train in seconds on one core, large enough to learn the synthetic data
# (about 0.8 accuracy after 3-4 epochs on 1,000 reviews).
SMALL_RNN = RnnConfig(
    max_len=128,
    vocab_size=5000,
    embedding_dim=32,
    hidden_size=32,
    batch_size=32,
    epochs=4,
    patience=2,
    lr=5e-3,
)
# For tests of mechanics, not accuracy: two short epochs.
TINY_RNN = SMALL_RNN.model_copy(update={"epochs": 2, "max_len": 64})


def _with_ids(df: pl.DataFrame, first_id: int = 0) -> pl.DataFrame:
    ids = pl.int_range(first_id, first_id + df.height, dtype=pl.Int64, eager=True)
    return df.select(ids.alias("review_id"), "review", "sentiment")


@pytest.fixture(scope="module")
def split() -> tuple[pl.DataFrame, pl.DataFrame]:
    """1,000 synthetic training reviews and 200 validation reviews (another seed)."""
    return _with_ids(generate_imdb(1000, seed=1)), _with_ids(generate_imdb(200, seed=2), 1000)


@pytest.fixture(scope="module")
def cfg() -> Config:
    """The demo config with the tiny RNN (the demo one is sized for 3,200 reviews)."""
    demo = load_params(PARAMS, "demo")
    baselines = demo.baselines.model_copy(update={"rnn": TINY_RNN})
    return demo.model_copy(update={"baselines": baselines})


@pytest.fixture(scope="module")
def trained_rnn(split: tuple[pl.DataFrame, pl.DataFrame]) -> rnn.TrainedRnn:
    return rnn.train_rnn(split[0], LABELS, SMALL_RNN, progress=False)


def _accuracy(log_probs: np.ndarray, gold: pl.Series) -> float:
    return float(np.mean(np.array(LABELS)[log_probs.argmax(axis=1)] == gold.to_numpy()))


# --------------------------------------------------------------------------- text


def test_normalize_text_strips_tags_and_entities() -> None:
    assert normalize_text("Great<br /><br />FILM &amp; cast") == "great  film & cast"


def test_tokenize_keeps_words_contractions_and_marks() -> None:
    assert tokenize("I didn't like it!<br />Rated 3/10?") == [
        "i", "didn't", "like", "it", "!", "rated", "3", "10", "?",
    ]  # fmt: skip


# --------------------------------------------------------------------------- TF-IDF


def test_tfidf_beats_chance_and_is_deterministic(split: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, val = split
    cfg = TfidfConfig(min_df=2)
    first = tfidf.predict_log_proba(tfidf.train_tfidf(train, cfg), val["review"], LABELS)
    second = tfidf.predict_log_proba(tfidf.train_tfidf(train, cfg), val["review"], LABELS)
    assert _accuracy(first, val["sentiment"]) >= 0.75
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(np.exp(first).sum(axis=1), 1.0, rtol=1e-6)


def test_tfidf_columns_follow_the_configured_label_order(
    split: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    train, val = split
    model = tfidf.train_tfidf(train, TfidfConfig(min_df=2))
    forward = tfidf.predict_log_proba(model, val["review"], LABELS)
    backward = tfidf.predict_log_proba(model, val["review"], LABELS[::-1])
    np.testing.assert_array_equal(forward, backward[:, ::-1])


# --------------------------------------------------------------------------- RNN


def test_vocabulary_is_frequency_ordered_and_capped() -> None:
    docs = [["b", "a", "c"], ["a", "b"], ["a", "d"]]
    assert rnn.build_vocabulary(docs, size=10, min_freq=2) == [rnn.PAD, rnn.UNK, "a", "b"]
    assert rnn.build_vocabulary(docs, size=3, min_freq=1) == [rnn.PAD, rnn.UNK, "a"]
    ids = rnn.encode([["a", "zzz", "b"], []], [rnn.PAD, rnn.UNK, "a", "b"], 2, 1.0)
    assert [x.tolist() for x in ids] == [[2, 1], [1]]


def test_truncate_keeps_head_and_tail() -> None:
    doc = list("abcdefghij")
    assert rnn.truncate(doc, 4, 0.5) == list("abij")
    assert rnn.truncate(doc, 4, 1.0) == list("abcd")
    assert rnn.truncate(doc, 4, 0.0) == list("ghij")
    assert rnn.truncate(doc, 20, 0.5) == doc


def test_reverse_padded_reverses_within_each_length() -> None:
    x = torch.arange(8, dtype=torch.float32).reshape(2, 4, 1)
    lengths = torch.tensor([4, 2])
    reversed_ = rnn.reverse_padded(x, lengths)
    assert reversed_.squeeze(2).tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(rnn.reverse_padded(reversed_, lengths), x)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bidirectional_rnn_matches_torch_over_packed_sequences(cell: str) -> None:
    """Same weights, same outputs at every valid step as nn.GRU/LSTM(bidirectional=True)."""
    torch.manual_seed(0)
    reference = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](
        6, 5, num_layers=2, bidirectional=True, batch_first=True
    )
    ours = rnn.BidirectionalRnn(6, 5, num_layers=2, dropout=0.0, cell=cell)
    for layer, (ahead, behind) in enumerate(ours.layers):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ahead, f"{name}_l0").data.copy_(getattr(reference, f"{name}_l{layer}"))
            getattr(behind, f"{name}_l0").data.copy_(getattr(reference, f"{name}_l{layer}_reverse"))
    x, lengths = torch.randn(4, 7, 6), torch.tensor([7, 3, 5, 1])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = pad_packed_sequence(reference(packed)[0], batch_first=True)
    valid = torch.arange(7) < lengths.unsqueeze(1)
    torch.testing.assert_close(ours(x, lengths)[valid], expected[valid])


def test_bucket_batches_cover_every_row_once_and_are_seeded() -> None:
    lengths = np.random.default_rng(0).integers(1, 300, size=1000).tolist()

    def batches(seed: int) -> list[list[int]]:
        return list(rnn.BucketBatchSampler(lengths, 16, torch.Generator().manual_seed(seed)))

    first = batches(3)
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert first == batches(3)
    assert first != batches(4)
    # Bucketing: far less padding than random batches would have.
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first])
    assert spread < 50


def test_rnn_beats_chance_and_records_history(
    split: tuple[pl.DataFrame, pl.DataFrame], trained_rnn: rnn.TrainedRnn
) -> None:
    _, val = split
    log_probs = rnn.predict_log_proba(trained_rnn, val["review"].to_list())
    assert _accuracy(log_probs, val["sentiment"]) >= 0.7
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-5)
    history = trained_rnn.history
    assert 1 <= len(history) <= SMALL_RNN.epochs
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert set(history[0]) >= {"train_loss", "train_accuracy", "heldout_loss", "heldout_accuracy"}
    assert 1 <= trained_rnn.best_epoch <= len(history)
    assert trained_rnn.heldout_rows == 100


def test_rnn_same_seed_same_predictions(split: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, val = split[0].head(300), split[1]["review"].to_list()
    first = rnn.train_rnn(train, LABELS, TINY_RNN, progress=False)
    second = rnn.train_rnn(train, LABELS, TINY_RNN, progress=False)
    np.testing.assert_array_equal(
        rnn.predict_log_proba(first, val), rnn.predict_log_proba(second, val)
    )
    drop_time = [{k: v for k, v in h.items() if k != "seconds"} for h in first.history]
    assert drop_time == [{k: v for k, v in h.items() if k != "seconds"} for h in second.history]
    other_seed = TINY_RNN.model_copy(update={"seed": TINY_RNN.seed + 1})
    third = rnn.train_rnn(train, LABELS, other_seed, progress=False)
    assert not np.array_equal(rnn.predict_log_proba(first, val), rnn.predict_log_proba(third, val))


def test_rnn_save_and_load_round_trip(
    tmp_path: Path, split: tuple[pl.DataFrame, pl.DataFrame], trained_rnn: rnn.TrainedRnn
) -> None:
    reviews = split[1]["review"].to_list()
    rnn.save_rnn(trained_rnn, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.pt", "config.json", "vocab.json"}
    loaded = rnn.load_rnn(tmp_path)
    np.testing.assert_array_equal(
        rnn.predict_log_proba(loaded, reviews), rnn.predict_log_proba(trained_rnn, reviews)
    )


# --------------------------------------------------------------------------- predictions


def test_predictions_frame_has_the_shared_schema(split: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    val = split[1].head(3)
    log_probs = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]))
    frame = predictions_frame(
        val, model="tfidf", labels=LABELS, log_probs=log_probs, seconds_per_review=0.01
    )
    check_schema(frame, PREDICTIONS_SCHEMA, "predictions")
    assert frame.columns == list(PREDICTIONS_SCHEMA)
    assert frame["prediction"].to_list() == ["negative", "positive", "negative"]  # tie: first
    assert frame["valid"].all()
    assert frame.select("prompt", "shots", "strategy", "calibration").unique().rows() == [
        ("-", 0, "-", "none")
    ]
    assert frame["review_id"].to_list() == val["review_id"].to_list()


# --------------------------------------------------------------------------- stages


def _write_split(folder: Path, split: tuple[pl.DataFrame, pl.DataFrame]) -> tuple[Path, Path]:
    train, val = folder / "train.parquet", folder / "val.parquet"
    write_parquet(split[0], train)
    write_parquet(split[1], val)
    return train, val


def _check_outputs(
    predictions: Path, metrics: Path, system: str, rows: int, min_accuracy: float
) -> dict:
    frame = pl.read_parquet(predictions)
    check_schema(frame, PREDICTIONS_SCHEMA, str(predictions))
    assert frame.height == rows
    assert set(frame["system"]) == {system} and set(frame["backend"]) == {system}
    document = read_json(metrics)
    assert document["n"] == rows
    assert document["accuracy"] >= min_accuracy
    low, high = document["accuracy_ci"]
    assert low <= document["accuracy"] <= high
    assert document["confusion"]["labels"] == LABELS
    assert "macro_f1" in document and "training" in document
    return document


def test_run_baseline_tfidf_writes_every_output(
    tmp_path: Path, cfg: Config, split: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    train, val = _write_split(tmp_path, split)
    out = tmp_path / "out"
    tfidf.run_baseline_tfidf(
        cfg, train, val, out / "predictions.parquet", out / "metrics.json", out / "tfidf.joblib"
    )
    _check_outputs(out / "predictions.parquet", out / "metrics.json", "tfidf", 200, 0.75)
    model = joblib.load(out / "tfidf.joblib")
    assert set(model.predict(["A wonderful, moving film.", "Awful and boring."])) <= set(LABELS)


def test_run_baseline_rnn_writes_every_output(
    tmp_path: Path, cfg: Config, split: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    # Mechanics only (accuracy is tested above): a short run on part of the data.
    train, val = _write_split(tmp_path, (split[0].head(400), split[1]))
    out = tmp_path / "out"
    rnn.run_baseline_rnn(
        cfg,
        train,
        val,
        out / "predictions.parquet",
        out / "metrics.json",
        out / "history.json",
        out / "history.png",
        out / "model",
    )
    document = _check_outputs(out / "predictions.parquet", out / "metrics.json", "rnn", 200, 0.0)
    history = read_json(out / "history.json")
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert history["best_epoch"] == document["training"]["best_epoch"]
    assert len(history["epochs"]) == document["training"]["epochs_run"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["labels"] == LABELS and config["rnn"]["hidden_size"] == TINY_RNN.hidden_size
    # The label scores are the saved model's.
    loaded = rnn.load_rnn(out / "model")
    scores = np.array(pl.read_parquet(out / "predictions.parquet")["label_scores"].to_list())
    np.testing.assert_allclose(
        rnn.predict_log_proba(loaded, split[1]["review"].to_list()), scores, rtol=1e-6
    )


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda df: df.drop("sentiment"), "missing column 'sentiment'"),
        (lambda df: df.with_columns(pl.lit("neutral").alias("sentiment")), "['neutral']"),
        (lambda df: df.filter(pl.col("sentiment") == "positive"), "no rows with sentiment"),
        (lambda df: df.with_columns(pl.lit(None, pl.Utf8).alias("review")), "null values"),
        (lambda df: df.head(0), "no rows"),
    ],
)
@pytest.mark.parametrize("stage", ["tfidf", "rnn"])
def test_bad_train_file_fails_clearly_before_writing(
    tmp_path: Path,
    cfg: Config,
    split: tuple[pl.DataFrame, pl.DataFrame],
    stage: str,
    corrupt,
    message: str,
) -> None:
    train, val = _write_split(tmp_path, (corrupt(split[0]), split[1]))
    out = tmp_path / "out"
    with pytest.raises(UserError) as err:
        if stage == "tfidf":
            tfidf.run_baseline_tfidf(cfg, train, val, out / "p.parquet", out / "m.json", out / "x")
        else:
            rnn.run_baseline_rnn(
                cfg, train, val, *(out / n for n in ("p.parquet", "m.json", "h.json", "h.png", "x"))
            )
    text = str(err.value)
    assert str(train) in text and message in text and "\n" not in text
    assert not out.exists()


def test_missing_val_file_fails_clearly(
    tmp_path: Path, cfg: Config, split: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    train, _ = _write_split(tmp_path, split)
    missing = tmp_path / "nope.parquet"
    with pytest.raises(UserError, match="nope.parquet: input file does not exist"):
        tfidf.run_baseline_tfidf(
            cfg, train, missing, tmp_path / "p", tmp_path / "m", tmp_path / "x"
        )


def test_too_few_rows_for_the_heldout_slice_fails_clearly(
    tmp_path: Path, cfg: Config, split: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    tiny = split[0].group_by("sentiment", maintain_order=True).head(3)
    train, val = _write_split(tmp_path, (tiny, split[1]))
    with pytest.raises(UserError, match="heldout_fraction"):
        rnn.run_baseline_rnn(
            cfg, train, val, *(tmp_path / n for n in ("p", "m", "h", "h.png", "x"))
        )


# --------------------------------------------------------------------------- config


def test_params_file_holds_both_presets_of_the_baselines() -> None:
    full, demo = load_params(PARAMS, "full"), load_params(PARAMS, "demo")
    assert full.baselines.rnn.max_len >= demo.baselines.rnn.max_len
    assert full.baselines.rnn.hidden_size >= demo.baselines.rnn.hidden_size


@pytest.mark.parametrize(
    ("section", "key_path"),
    [
        ({"rnn": {"hidden_size": 0}}, "baselines.rnn.hidden_size"),
        ({"rnn": {"cell": "transformer"}}, "baselines.rnn.cell"),
        ({"rnn": {"hiden_size": 64}}, "baselines.rnn.hiden_size: unknown key"),
        ({"tfidf": {"max_df": 1.5}}, "baselines.tfidf.max_df"),
    ],
)
def test_bad_baselines_keys_are_named(section: dict, key_path: str) -> None:
    import yaml

    raw = yaml.safe_load(PARAMS.read_text())
    raw["baselines"] = section
    with pytest.raises(ConfigError, match=key_path.replace(".", r"\.")):
        resolve(raw, "full")
