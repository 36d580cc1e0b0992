"""What both synthetic generators use: seeded random generators and the phrase-bank loader."""

from __future__ import annotations

import functools
import json
import random
from importlib import resources
from typing import Any

import numpy as np


def rngs(seed: int) -> tuple[np.random.Generator, random.Random]:
    """One numpy generator for vectorised draws and a Python one seeded from it."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng, random.Random(int(rng.integers(0, 2**63 - 1)))


def _frozen(value: Any) -> Any:
    """JSON arrays as tuples (at every depth), as the banks were written in Python."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


@functools.cache
def load_phrases(name: str) -> dict[str, Any]:
    """The phrase banks in package data `phrases/<name>.json`, read once per process.

    Arrays come back as tuples; objects as dicts in file order (the generators draw by
    position, so order is part of the output). Treat the result as read-only: it is shared.
    """
    path = resources.files(__package__).joinpath("phrases", f"{name}.json")
    return _frozen(json.loads(path.read_text(encoding="utf-8")))
