"""baseline_rnn: a bidirectional GRU/LSTM classifier trained from scratch on the IMDB train
split and scored on the validation rows every LLM is scored on.

Pipeline: `tokenize` (HTML stripped, lowercased words plus ! and ?) -> a vocabulary of the most
frequent tokens of the training slice -> ids cut to `max_len` (head and tail kept) -> embedding
-> dropout -> bidirectional GRU/LSTM (`BidirectionalRnn`) -> max and mean pooling over the valid
(non-padded) steps -> dropout -> linear layer over the labels. Adam on cross-entropy; after every
epoch the model is scored on a stratified held-out slice of train, and the weights of the epoch
with the lowest held-out loss are kept (early stopping with `patience`).

Everything random (held-out slice, initial weights, dropout, batch order) derives from
`baselines.rnn.seed`, and deterministic algorithms are enforced, so on one CPU with a fixed
thread count the same config gives the same predictions.

Saved model folder (`--model-out`): `model.pt` (state_dict), `config.json` (architecture,
labels, training config) and `vocab.json` (token list; index = id). `load_rnn` reads it back.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from llmlab.baselines.stage_io import metrics_document, predictions_frame, read_split
from llmlab.baselines.text import tokenize
from llmlab.config import Config, RnnConfig
from llmlab.errors import UserError
from llmlab.io import atomic_dir, write_json, write_parquet

log = logging.getLogger(__name__)

SYSTEM = "rnn"
PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1
# Batches are cut from pools of this many batches sorted by length: a batch holds reviews of
# similar length (little padding, so few wasted RNN steps) while pools keep the order random.
POOL_BATCHES = 50
# Gradient-norm clipping: the usual guard against exploding gradients in recurrent nets.
GRAD_CLIP = 1.0
EVAL_BATCH_SIZE = 256  # no gradients at evaluation: larger batches are faster


# --------------------------------------------------------------------------- vocabulary


def build_vocabulary(docs: Iterable[Sequence[str]], *, size: int, min_freq: int) -> list[str]:
    """`[PAD, UNK, ...]` then the most frequent tokens seen at least `min_freq` times.

    Ties in frequency are broken alphabetically so the vocabulary does not depend on the
    order of the documents.
    """
    counts: Counter[str] = Counter()
    for doc in docs:
        counts.update(doc)
    kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    return [PAD, UNK, *kept[: size - 2]]


def truncate(doc: Sequence[str], max_len: int, head_fraction: float) -> Sequence[str]:
    """At most `max_len` tokens: `round(max_len * head_fraction)` from the start of a long
    document, the rest from its end (reviews often state their verdict in the last lines)."""
    if len(doc) <= max_len:
        return doc
    head = round(max_len * head_fraction)
    return [*doc[:head], *doc[len(doc) - (max_len - head) :]]


def encode(
    docs: Iterable[Sequence[str]], vocabulary: Sequence[str], max_len: int, head_fraction: float
) -> list[torch.Tensor]:
    """Token ids of each document, truncated by `truncate`.

    Unknown tokens map to UNK; an empty document becomes `[UNK]` (the RNN needs at least one
    step per sequence).
    """
    index = {token: i for i, token in enumerate(vocabulary)}
    unk = index[UNK]
    return [
        torch.tensor(
            [index.get(t, unk) for t in truncate(doc, max_len, head_fraction)] or [unk],
            dtype=torch.long,
        )
        for doc in docs
    ]


# --------------------------------------------------------------------------- batches


class _Encoded(Dataset):
    """Encoded reviews with their label ids (-1 when unlabelled); items keep their position."""

    def __init__(self, ids: Sequence[torch.Tensor], targets: torch.Tensor) -> None:
        self.ids = ids
        self.targets = targets

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return i, self.ids[i], self.targets[i]


def _collate(
    items: list[tuple[int, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (positions, padded token ids [B, T], lengths [B], targets [B])."""
    positions, ids, targets = zip(*items, strict=True)
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    padded = pad_sequence(list(ids), batch_first=True, padding_value=0)
    return torch.tensor(positions), padded, lengths, torch.stack(targets)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices of similar length.

    With `generator` (training): shuffle all indices, cut pools of `POOL_BATCHES` batches, sort
    each pool by length, cut batches, shuffle the batches. Without (evaluation): all indices
    sorted by length, cut into batches, same order every time.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None
    ) -> None:
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def _cut(self, order: torch.Tensor) -> list[list[int]]:
        return [
            order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)
        ]

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is None:
            yield from self._cut(torch.argsort(self.lengths, stable=True))
            return
        order = torch.randperm(len(self.lengths), generator=self.generator)
        pool = self.batch_size * POOL_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            batches += self._cut(chunk[torch.argsort(self.lengths[chunk], stable=True)])
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def _loader(
    dataset: _Encoded, batch_size: int, generator: torch.Generator | None = None
) -> DataLoader:
    lengths = [len(x) for x in dataset.ids]
    sampler = BucketBatchSampler(lengths, batch_size, generator)
    # num_workers=0: batches are cheap to build; worker processes would only add start-up time.
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate)


# --------------------------------------------------------------------------- model


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of `x` [B, T, F] within its own length; padding stays at the end.

    Applying it twice gives `x` back.
    """
    steps = torch.arange(x.size(1)).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    index = torch.where(steps <= last, last - steps, steps)
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.size(2)))


class BidirectionalRnn(nn.Module):
    """Stacked bidirectional GRU/LSTM over right-padded batches, exact for every length.

    It computes what `nn.GRU(..., bidirectional=True)` computes over a `PackedSequence`
    (tests check this), but each direction runs as a dense one-directional RNN: on CPU,
    PyTorch's backward pass through packed sequences was measured 9-10x slower than through
    dense batches of the same size (torch 2.13; a known issue, pytorch/pytorch#149194).
    Right padding never reaches a valid step: the forward direction meets it only after the
    last real token, and the backward direction reads each review reversed within its own
    length (`reverse_padded`). Outputs at padded steps are garbage; the caller masks them.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, dropout: float, cell: str
    ) -> None:
        super().__init__()
        rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.layers = nn.ModuleList(
            nn.ModuleList(
                rnn_class(input_size if i == 0 else 2 * hidden_size, hidden_size, batch_first=True)
                for _ in ("forward", "backward")
            )
            for i in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)  # between layers, as nn.GRU's `dropout` argument

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T, input_size] -> [B, T, 2 * hidden_size] (forward then backward features)."""
        for i, (forward_rnn, backward_rnn) in enumerate(self.layers):
            if i:
                x = self.dropout(x)
            ahead, _ = forward_rnn(x)
            behind, _ = backward_rnn(reverse_padded(x, lengths))
            x = torch.cat([ahead, reverse_padded(behind, lengths)], dim=2)
        return x


class RnnClassifier(nn.Module):
    """Embedding -> bidirectional GRU/LSTM -> max+mean pooling over valid steps -> linear."""

    def __init__(
        self,
        *,
        vocab_size: int,
        n_labels: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        cell: str,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.rnn = BidirectionalRnn(embedding_dim, hidden_size, num_layers, dropout, cell)
        self.dropout = nn.Dropout(dropout)
        # max and mean pooling of both directions
        self.head = nn.Linear(4 * hidden_size, n_labels)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_labels] of right-padded token ids [B, T] with true `lengths` [B]."""
        outputs = self.rnn(self.dropout(self.embedding(tokens)), lengths)
        valid = (torch.arange(tokens.size(1)) < lengths.unsqueeze(1)).unsqueeze(2)
        mean = (outputs * valid).sum(dim=1) / lengths.unsqueeze(1).to(outputs.dtype)
        maximum = outputs.masked_fill(~valid, float("-inf")).amax(dim=1)
        return self.head(self.dropout(torch.cat([maximum, mean], dim=1)))


def _architecture(cfg: RnnConfig, vocab_size: int, n_labels: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "n_labels": n_labels,
        "embedding_dim": cfg.embedding_dim,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "dropout": cfg.dropout,
        "cell": cfg.cell,
    }


# --------------------------------------------------------------------------- training


@dataclass
class TrainedRnn:
    """A trained classifier with everything needed to apply it to raw reviews."""

    model: RnnClassifier
    vocabulary: list[str]
    labels: list[str]
    cfg: RnnConfig
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    best_epoch: int = 0
    heldout_rows: int = 0


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (dropout, initial weights) and require deterministic kernels,
    restoring both afterwards so callers (tests) see no global side effect."""
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _heldout_split(targets: np.ndarray, cfg: RnnConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fitting and the early-stopping rows: a stratified, seeded split."""
    fit, heldout = train_test_split(
        np.arange(len(targets)),
        test_size=cfg.heldout_fraction,
        stratify=targets,
        random_state=cfg.seed,
    )
    return np.sort(fit), np.sort(heldout)


def _evaluate(model: RnnClassifier, loader: DataLoader) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over a labelled loader."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.inference_mode():
        for _, tokens, lengths, targets in loader:
            logits = model(tokens, lengths)
            loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            correct += (logits.argmax(dim=1) == targets).sum().item()
            n += len(targets)
    return loss_sum / n, correct / n


def train_rnn(
    train: pl.DataFrame, labels: Sequence[str], cfg: RnnConfig, *, progress: bool = True
) -> TrainedRnn:
    """Train on `train` (columns review, sentiment) with early stopping on a held-out slice.

    Returns the model with the weights of the best epoch (lowest held-out loss) and the
    per-epoch history: train loss/accuracy (running means over the epoch's batches, with
    dropout on) and held-out loss/accuracy (evaluation mode).
    """
    labels = list(labels)
    targets = np.array([labels.index(s) for s in train["sentiment"].to_list()])
    fit_idx, heldout_idx = _heldout_split(targets, cfg)
    docs = [tokenize(text) for text in train["review"].to_list()]
    fit_docs = [docs[i] for i in fit_idx]
    # Built from the fitting rows only: held-out words must look unseen, as validation ones do.
    vocabulary = build_vocabulary(fit_docs, size=cfg.vocab_size, min_freq=cfg.min_freq)
    fit_set = _Encoded(
        encode(fit_docs, vocabulary, cfg.max_len, cfg.head_fraction),
        torch.from_numpy(targets[fit_idx]),
    )
    heldout_set = _Encoded(
        encode([docs[i] for i in heldout_idx], vocabulary, cfg.max_len, cfg.head_fraction),
        torch.from_numpy(targets[heldout_idx]),
    )
    log.info(
        "rnn: %d fitting + %d held-out reviews, vocabulary %d, mean length %.0f tokens",
        len(fit_set),
        len(heldout_set),
        len(vocabulary),
        float(np.mean([len(x) for x in fit_set.ids])),
    )

    with _seeded(cfg.seed):
        model = RnnClassifier(**_architecture(cfg, len(vocabulary), len(labels)))
        # fused: one kernel for the whole update; the unfused one makes several passes over
        # the embedding matrix every step (measured ~10x slower on CPU).
        optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )
        batches = _loader(fit_set, cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
        heldout_batches = _loader(heldout_set, EVAL_BATCH_SIZE)
        history: list[dict[str, float]] = []
        best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            model.train()
            loss_sum, correct, n = 0.0, 0, 0
            bar = tqdm(batches, desc=f"rnn epoch {epoch}/{cfg.epochs}", disable=not progress)
            for _, tokens, lengths, batch_targets in bar:
                optimizer.zero_grad(set_to_none=True)
                logits = model(tokens, lengths)
                loss = nn.functional.cross_entropy(logits, batch_targets)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                optimizer.step()
                loss_sum += loss.item() * len(batch_targets)
                correct += (logits.argmax(dim=1) == batch_targets).sum().item()
                n += len(batch_targets)
                bar.set_postfix(loss=f"{loss_sum / n:.4f}", acc=f"{correct / n:.3f}", refresh=False)
            heldout_loss, heldout_accuracy = _evaluate(model, heldout_batches)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": loss_sum / n,
                    "train_accuracy": correct / n,
                    "heldout_loss": heldout_loss,
                    "heldout_accuracy": heldout_accuracy,
                    "seconds": time.perf_counter() - start,
                }
            )
            log.info(
                "rnn epoch %d/%d: train loss %.4f acc %.4f | held-out loss %.4f acc %.4f | %.0f s",
                epoch,
                cfg.epochs,
                loss_sum / n,
                correct / n,
                heldout_loss,
                heldout_accuracy,
                history[-1]["seconds"],
            )
            if heldout_loss < best_loss:
                best_loss, best_epoch = heldout_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= cfg.patience:
                log.info("rnn: no held-out improvement for %d epochs, stopping", cfg.patience)
                break
        model.load_state_dict(best_state)
    model.eval()
    return TrainedRnn(
        model=model,
        vocabulary=vocabulary,
        labels=labels,
        cfg=cfg,
        history=history,
        best_epoch=best_epoch,
        heldout_rows=len(heldout_set),
    )


def predict_log_proba(trained: TrainedRnn, reviews: Sequence[str]) -> np.ndarray:
    """Log-probability of each label (columns in `trained.labels` order) for each review."""
    docs = (tokenize(r) for r in reviews)
    ids = encode(docs, trained.vocabulary, trained.cfg.max_len, trained.cfg.head_fraction)
    dataset = _Encoded(ids, torch.full((len(ids),), -1, dtype=torch.long))
    out = np.empty((len(ids), len(trained.labels)), dtype=np.float64)
    trained.model.eval()
    with torch.inference_mode():
        for positions, tokens, lengths, _ in _loader(dataset, EVAL_BATCH_SIZE):
            out[positions.numpy()] = torch.log_softmax(
                trained.model(tokens, lengths), dim=1
            ).numpy()
    return out


# --------------------------------------------------------------------------- saving


def save_rnn(trained: TrainedRnn, folder: Path) -> None:
    """Write `model.pt`, `config.json` and `vocab.json` into `folder` (which must exist)."""
    torch.save(trained.model.state_dict(), folder / "model.pt")
    config = {
        "architecture": _architecture(trained.cfg, len(trained.vocabulary), len(trained.labels)),
        "labels": trained.labels,
        "rnn": trained.cfg.model_dump(mode="json"),
        "best_epoch": trained.best_epoch,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "vocab.json").write_text(json.dumps(trained.vocabulary) + "\n", encoding="utf-8")


def load_rnn(folder: Path) -> TrainedRnn:
    """Read a folder written by `save_rnn` back into a ready-to-use (eval mode) classifier."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    vocabulary = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    model = RnnClassifier(**config["architecture"])
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    model.eval()
    return TrainedRnn(
        model=model,
        vocabulary=vocabulary,
        labels=config["labels"],
        cfg=RnnConfig.model_validate(config["rnn"]),
        best_epoch=config["best_epoch"],
    )


def history_document(trained: TrainedRnn, fit_seconds: float) -> dict[str, Any]:
    """The per-epoch training curves JSON (`--history`) read by eval_summary and the report."""
    return {
        "system": SYSTEM,
        "monitor": "heldout_loss",
        "best_epoch": trained.best_epoch,
        "stopped_early": len(trained.history) < trained.cfg.epochs,
        "heldout_rows": trained.heldout_rows,
        "fit_seconds": fit_seconds,
        "epochs": trained.history,
    }


# --------------------------------------------------------------------------- stage


def use_cpu_threads() -> int:
    """Give torch the job's threads and return how many: OMP_NUM_THREADS (Snakemake sets it
    from the rule's `threads:`), else every CPU this process may run on."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        threads = int(env)
    elif hasattr(os, "sched_getaffinity"):
        threads = len(os.sched_getaffinity(0))
    else:
        threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def check_heldout_size(rows: int, n_labels: int, cfg: RnnConfig, where: str) -> None:
    """UserError unless the held-out slice gets at least one row per label and fitting keeps
    at least one batch (sklearn's stratified split would fail later, less clearly)."""
    heldout = math.ceil(rows * cfg.heldout_fraction)
    if heldout < n_labels or rows - heldout < n_labels:
        raise UserError(
            f"{where}: {rows} rows are too few for baselines.rnn.heldout_fraction="
            f"{cfg.heldout_fraction} ({heldout} held out, {n_labels} labels)"
        )


def plot_history(history: dict[str, Any], path: Path) -> None:
    """Loss and accuracy per epoch (train vs held-out) from the history document."""
    import matplotlib.pyplot as plt

    from llmlab.plots import save_figure, setup_theme

    setup_theme()
    df = pl.DataFrame(history["epochs"])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split in ("train", "heldout"):
            col = f"{split}_{metric}"
            if col in df.columns:
                ax.plot(df["epoch"], df[col], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"RNN {metric}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    fig.suptitle("RNN baseline training curve", fontweight="bold")
    save_figure(fig, path)


def run_baseline_rnn(
    cfg: Config,
    train: Path,
    val: Path,
    predictions: Path,
    metrics: Path,
    history: Path,
    figure: Path,
    model_out: Path,
) -> None:
    """Stage: train on `train`, score the `val` rows; write predictions, metrics, the per-epoch
    history (and its figure) and the model folder."""
    labels = cfg.eval.labels
    rnn_cfg = cfg.baselines.rnn
    train_df = read_split(train, labels, require_every_label=True)
    val_df = read_split(val, labels, require_every_label=False)
    check_heldout_size(train_df.height, len(labels), rnn_cfg, str(train))
    threads = use_cpu_threads()
    log.info("rnn: %d torch threads", threads)

    start = time.perf_counter()
    trained = train_rnn(train_df, labels, rnn_cfg)
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    log_probs = predict_log_proba(trained, val_df["review"].to_list())
    per_review = (time.perf_counter() - start) / val_df.height

    preds = predictions_frame(
        val_df, model=SYSTEM, labels=labels, log_probs=log_probs, seconds_per_review=per_review
    )
    training = {
        "train_rows": train_df.height,
        "heldout_rows": trained.heldout_rows,
        "vocabulary": len(trained.vocabulary),
        "epochs_run": len(trained.history),
        "best_epoch": trained.best_epoch,
        "fit_seconds": fit_seconds,
        "threads": threads,
    }
    # Score before writing anything: a failure leaves no output that looks finished.
    document = metrics_document(preds, training, cfg)
    with atomic_dir(model_out) as tmp:
        save_rnn(trained, tmp)
    history_doc = history_document(trained, fit_seconds)
    write_json(history_doc, history)
    plot_history(history_doc, figure)
    write_parquet(preds, predictions)
    write_json(document, metrics)
    log.info(
        "rnn: accuracy %.4f (95%% CI %.4f-%.4f) on %d validation reviews",
        document["accuracy"],
        *document["accuracy_ci"],
        document["n"],
    )
