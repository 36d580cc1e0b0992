"""One look for every figure: seaborn theme, readable sizes, atomic PNG writes."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from llmlab.io import atomic_path  # noqa: E402

# Colour per label, shared by every figure so "positive" is always the same colour.
LABEL_PALETTE = {"negative": "#c0504d", "positive": "#4f81bd"}


def setup_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="deep", font_scale=1.0)
    plt.rcParams.update(
        {
            "figure.autolayout": False,
            "axes.titleweight": "bold",
            "axes.titlesize": 12,
            "savefig.bbox": "tight",
        }
    )


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int = 130) -> Path:
    """Write `fig` as PNG atomically and close it (figures are never reused)."""
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        # The temporary name has no .png suffix: tell matplotlib the format.
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return path
