"""Text normalisation and tokenisation shared by the baselines.

Both functions are module-level (not lambdas or closures) because the TF-IDF pipeline keeps a
reference to `normalize_text` and is pickled with joblib: the saved model loads anywhere
`llmlab` is importable.
"""

from __future__ import annotations

import html
import re

# IMDB reviews carry raw markup, mostly `<br />` paragraph breaks (29,200 of the 50k rows).
_TAG = re.compile(r"<[^>]*>")
# Words (with an inner apostrophe: "don't", "director's") and the two punctuation marks that
# carry sentiment in reviews. Digits stay: "1/10" and "10/10" are strong signals.
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[!?]")


def normalize_text(text: str) -> str:
    """Lowercase `text`, replace HTML tags by spaces and decode entities (`&amp;` -> `&`)."""
    return html.unescape(_TAG.sub(" ", text)).lower()


def tokenize(text: str) -> list[str]:
    """Word tokens of a review for the RNN: normalised, then words, `!` and `?`."""
    return _TOKEN.findall(normalize_text(text))
