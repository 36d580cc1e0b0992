"""baseline_tfidf: TF-IDF word n-grams + logistic regression, trained on the IMDB train split
and scored on the validation rows every LLM is scored on.

One scikit-learn `Pipeline` (vectorizer + classifier) is trained, used and saved with joblib,
so the saved file classifies raw review strings by itself:

    model = joblib.load("models/baselines/tfidf.joblib")
    model.predict(["A wonderful film.<br />Loved it."])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import joblib
import numpy as np
import polars as pl
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from llmlab.baselines.stage_io import metrics_document, predictions_frame, read_split
from llmlab.baselines.text import normalize_text
from llmlab.config import Config, TfidfConfig
from llmlab.io import atomic_path, write_json, write_parquet

log = logging.getLogger(__name__)

SYSTEM = "tfidf"


def build_pipeline(cfg: TfidfConfig) -> Pipeline:
    """An unfitted TF-IDF + logistic regression pipeline with the configured hyperparameters."""
    vectorizer = TfidfVectorizer(
        # The preprocessor replaces sklearn's lowercasing: it strips <br /> tags first, so
        # "br" never becomes the most frequent "word" of the corpus.
        preprocessor=normalize_text,
        ngram_range=(1, cfg.ngram_max),
        min_df=cfg.min_df,
        max_df=cfg.max_df,
        max_features=cfg.max_features,
        sublinear_tf=cfg.sublinear_tf,
        dtype=np.float32,  # half the memory of float64 for ~1M bigram columns, same accuracy
    )
    classifier = LogisticRegression(C=cfg.C, solver=cfg.solver, max_iter=cfg.max_iter)
    return Pipeline([("tfidf", vectorizer), ("classifier", classifier)])


def train_tfidf(train: pl.DataFrame, cfg: TfidfConfig) -> Pipeline:
    """Fit the pipeline on `train` (columns review, sentiment); deterministic for fixed data."""
    pipeline = build_pipeline(cfg)
    pipeline.fit(train["review"].to_list(), train["sentiment"].to_list())
    vocabulary = len(pipeline.named_steps["tfidf"].vocabulary_)
    log.info("tfidf: fitted on %d reviews, %d n-gram features", train.height, vocabulary)
    return pipeline


def predict_log_proba(
    pipeline: Pipeline, reviews: Sequence[str], labels: Sequence[str]
) -> np.ndarray:
    """Log-probability of each label (columns in `labels` order) for each review."""
    classes = list(pipeline.classes_)
    missing = [label for label in labels if label not in classes]
    if missing:
        raise ValueError(f"the model was not trained on labels {missing} (it knows {classes})")
    # sklearn orders classes alphabetically; the predictions table wants eval.labels order.
    order = [classes.index(label) for label in labels]
    return pipeline.predict_log_proba(list(reviews))[:, order]


def run_baseline_tfidf(
    cfg: Config,
    train: Path,
    val: Path,
    predictions: Path,
    metrics: Path,
    model_out: Path,
) -> None:
    """Stage: train on `train`, score the `val` rows, write predictions, metrics and the model."""
    labels = cfg.eval.labels
    train_df = read_split(train, labels, require_every_label=True)
    val_df = read_split(val, labels, require_every_label=False)

    start = time.perf_counter()
    pipeline = train_tfidf(train_df, cfg.baselines.tfidf)
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    log_probs = predict_log_proba(pipeline, val_df["review"].to_list(), labels)
    per_review = (time.perf_counter() - start) / val_df.height

    preds = predictions_frame(
        val_df, model=SYSTEM, labels=labels, log_probs=log_probs, seconds_per_review=per_review
    )
    training = {
        "train_rows": train_df.height,
        "features": len(pipeline.named_steps["tfidf"].vocabulary_),
        "fit_seconds": fit_seconds,
    }
    # Score before writing anything: a failure leaves no output that looks finished.
    document = metrics_document(preds, training, cfg)
    with atomic_path(model_out) as tmp:
        joblib.dump(pipeline, tmp)
    write_parquet(preds, predictions)
    write_json(document, metrics)
    log.info(
        "tfidf: accuracy %.4f (95%% CI %.4f-%.4f) on %d validation reviews",
        document["accuracy"],
        *document["accuracy_ci"],
        document["n"],
    )
