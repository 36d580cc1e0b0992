"""A bidirectional GRU/LSTM on IMDB train, scored on the validation rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from llmlab.config import Config
from llmlab.stages import In, Out

PARAMS = (
    "baselines.rnn",
    "eval.labels",
    "eval.bootstrap",
)


def run(
    cfg: Config,
    *,
    train: Annotated[Path, In("IMDB train parquet")],
    val: Annotated[Path, In("IMDB validation parquet")],
    predictions: Annotated[Path, Out("parquet")],
    metrics: Annotated[Path, Out("JSON", kind="metric")],
    history: Annotated[
        Path,
        Out("per-epoch JSON", kind="plot", plot_x="epoch", plot_y=("train_loss", "heldout_loss")),
    ],
    figure: Annotated[Path, Out("training-curve PNG", kind="plot")],
    model_out: Annotated[Path, Out("folder (weights, vocabulary)")],
) -> None:
    from llmlab.baselines.rnn import run_baseline_rnn

    run_baseline_rnn(
        cfg,
        train=train,
        val=val,
        predictions=predictions,
        metrics=metrics,
        history=history,
        figure=figure,
        model_out=model_out,
    )
