"""Synthetic IMDB reviews in the real schema: `generate_imdb(rows, seed)`.

Recipe, matched to the real 50k reviews (shared/data/README.md):
- Labels: exactly half positive, half negative (one extra positive for odd `rows`), shuffled.
- Length: a target length in characters is drawn from a lognormal fitted to the real file
  (log-mean 6.96, log-sd 0.65, clipped to 32..13,704); sentences are appended until the
  review reaches it, which gives mean ~1,300 and median ~970 characters like the real set.
- Text: an opening about how the reviewer came to the film, neutral plot sentences (title,
  genre, actors, characters with consistent pronouns, settings, twists), opinion sentences
  about aspects (acting, script, score, ...) and a conclusion; all slots come from phrase
  banks (package data `phrases/imdb.json`). About 6% end with a "n/10" rating as in the
  real reviews.
- Paragraphs: `<br /><br />` between paragraphs in a share of reviews that grows with
  length (a logistic in log-length fitted to the real file: 26% of the shortest eighth,
  92% of the longest), 58% overall.
- Review kinds, so a bag-of-words model is good but not perfect: `clear` (most opinions
  agree with the label), `mixed` (pros and cons, the label follows the conclusion),
  `negated` ("not bad at all", "I didn't hate it", "wasn't exactly clever"), `sarcastic`
  (negative reviews in praising words: "Oh great, another masterpiece... I want my two
  hours back") and its mirror `guilty` (positive reviews in disparaging words: "it's trash,
  glorious trash"). A small share of reviews is written for the opposite label (label
  noise, as in the real data where text and star rating sometimes disagree).
- Duplicates: ~0.8% of rows repeat an earlier review of the same label verbatim (the real
  set has 418 duplicates in 50k), so class balance is kept.
With these settings TF-IDF + logistic regression scores roughly 85-93% on held-out rows.

Determinism: see `llmlab.synthetic`. The word banks are package data (`phrases/imdb.json`);
this module does not import the saiga generator or its phrases.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import polars as pl

from llmlab.schemas import IMDB_SCHEMA
from llmlab.synthetic.common import load_phrases, rngs


class _Slots(dict):
    """Template slots: fixed per document when set, otherwise a fresh draw from a bank.

    `str.format_map` calls `__missing__` for keys not set, so a template only pays for the
    slots it uses, and repeated sentences get varied words.
    """

    def __init__(self, r: random.Random, banks: dict[str, Sequence[str]]) -> None:
        super().__init__()
        self._r = r
        self._banks = banks

    def __missing__(self, key: str) -> str:
        bank = self._banks[key]
        return bank[int(self._r.random() * len(bank))]


# Fitted on shared/data/imdb_aclimdb.csv.gz: log(len) mean and sd, min and max length.
_IMDB_LOG_MEAN = 6.93
_IMDB_LOG_SD = 0.68
_IMDB_MIN_CHARS = 32
_IMDB_MAX_CHARS = 13_704
# P(review uses <br /><br /> paragraphs) = sigmoid(a * log(len) + b), fitted per length octile.
_BR_SLOPE = 1.6
_BR_INTERCEPT = -10.7
_RATING_SHARE = 0.06
_LABEL_NOISE = 0.05
_DUPLICATE_SHARE = 0.0084
# Review kinds per text polarity; `sarcastic` only carries negative text, `guilty` positive.
_KINDS_POS = {"clear": 0.55, "mixed": 0.25, "negated": 0.11, "guilty": 0.09}
_KINDS_NEG = {"clear": 0.55, "mixed": 0.25, "negated": 0.11, "sarcastic": 0.09}

# Phrase banks: titles, names, slot words, and sentence templates by role and polarity.
# Read here, so the stages importing this module depend on it (llmlab.stages).
PACKAGE_DATA = ("synthetic/phrases/imdb.json",)
_PHRASES = load_phrases("imdb")
_TITLE_ADJ: tuple[str, ...] = _PHRASES["title_adj"]
_TITLE_NOUN: tuple[str, ...] = _PHRASES["title_noun"]
_TITLE_PLACE: tuple[str, ...] = _PHRASES["title_place"]
_TITLE_PATTERNS: tuple[str, ...] = _PHRASES["title_patterns"]
_FIRST_M: tuple[str, ...] = _PHRASES["first_m"]
_FIRST_F: tuple[str, ...] = _PHRASES["first_f"]
_LAST: tuple[str, ...] = _PHRASES["last"]
_CAST_FIRST = _FIRST_M + _FIRST_F
_CHAR_M: tuple[str, ...] = _PHRASES["char_m"]
_CHAR_F: tuple[str, ...] = _PHRASES["char_f"]
_IMDB_BANKS: dict[str, Sequence[str]] = _PHRASES["imdb_banks"]
_OPENINGS: tuple[str, ...] = _PHRASES["openings"]
_PLOT: tuple[str, ...] = _PHRASES["plot"]
_POS: tuple[str, ...] = _PHRASES["pos"]
_NEG: tuple[str, ...] = _PHRASES["neg"]
_NEGATED_POS: tuple[str, ...] = _PHRASES["negated_pos"]
_NEGATED_NEG: tuple[str, ...] = _PHRASES["negated_neg"]
_SARCASTIC: tuple[str, ...] = _PHRASES["sarcastic"]
_GUILTY: tuple[str, ...] = _PHRASES["guilty"]
_END_POS: tuple[str, ...] = _PHRASES["end_pos"]
_END_NEG: tuple[str, ...] = _PHRASES["end_neg"]
_END_NEGATED_POS: tuple[str, ...] = _PHRASES["end_negated_pos"]
_END_NEGATED_NEG: tuple[str, ...] = _PHRASES["end_negated_neg"]
_END_SOFT_POS: tuple[str, ...] = _PHRASES["end_soft_pos"]
_END_SOFT_NEG: tuple[str, ...] = _PHRASES["end_soft_neg"]
_END_SARCASTIC: tuple[str, ...] = _PHRASES["end_sarcastic"]
_END_GUILTY: tuple[str, ...] = _PHRASES["end_guilty"]


def _imdb_slots(r: random.Random) -> _Slots:
    """Per-review fixed slots (title, cast, characters with pronouns) over the word banks."""
    s = _Slots(r, _IMDB_BANKS)
    pattern = r.choice(_TITLE_PATTERNS)
    s["title"] = pattern.format(
        a=r.choice(_TITLE_ADJ), n=r.choice(_TITLE_NOUN), p=r.choice(_TITLE_PLACE)
    )
    s["year"] = str(r.randint(1933, 2009))
    s["actor"] = f"{r.choice(_CAST_FIRST)} {r.choice(_LAST)}"
    s["actor2"] = f"{r.choice(_CAST_FIRST)} {r.choice(_LAST)}"
    s["director"] = f"{r.choice(_FIRST_M)} {r.choice(_LAST)}"
    female, female2 = r.random() < 0.5, r.random() < 0.5
    s["char"] = r.choice(_CHAR_F if female else _CHAR_M)
    s["char2"] = r.choice(_CHAR_F if female2 else _CHAR_M)
    s["pron"], s["Pron"], s["poss"] = ("she", "She", "her") if female else ("he", "He", "his")
    s["poss2"] = "her" if female2 else "his"
    return s


def _opinion(r: random.Random, polarity: int, kind: str) -> tuple[str, ...]:
    """The template bank for one opinion sentence of a review of `kind` and text `polarity`."""
    u = r.random()
    if kind == "clear":
        # Real praise mentions a flaw now and then (and vice versa).
        same = u < 0.8
    elif kind == "mixed":
        same = u < 0.55
    elif kind == "negated":
        if u < 0.55:
            return _NEGATED_POS if polarity > 0 else _NEGATED_NEG
        same = u < 0.85
    elif kind == "sarcastic":
        if u < 0.5:
            return _SARCASTIC
        same = u < 0.85
    else:  # guilty
        if u < 0.45:
            return _GUILTY
        same = u >= 0.7  # mostly disparaging words in a positive review
    return _POS if (polarity > 0) == same else _NEG


def _ending(r: random.Random, polarity: int, kind: str) -> tuple[str, ...]:
    if kind == "sarcastic":
        return _END_SARCASTIC
    if kind == "guilty":
        return _END_GUILTY
    if kind == "negated" and r.random() < 0.6:
        return _END_NEGATED_POS if polarity > 0 else _END_NEGATED_NEG
    if kind == "mixed" and r.random() < 0.5:
        return _END_SOFT_POS if polarity > 0 else _END_SOFT_NEG
    return _END_POS if polarity > 0 else _END_NEG


# "a" before a vowel-initial filled slot ("a inspired documentary"); no bank word starts
# with a "u" that needs "a", so u is left out.
_A_AN = tuple(
    (f"{before}{a} {v}", f"{before}{a}n {v}")
    for before in (" ", ">")
    for a in "aA"
    for v in "aeioAEIO"
)
# Sentence starts that may be lowercased after a connector ("However, the plot ...");
# names and "I" keep their capital.
_LOWERABLE = ("The ", "It ", "It's ", "A ", "An ", "Every ", "What ", "There ", "Nothing ")


def _pick(r: random.Random, bank: Sequence[str], used: set[str]) -> str:
    """A template from `bank`, avoiding ones this review already used (a few tries)."""
    n = len(bank)
    template = bank[int(r.random() * n)]
    for _ in range(3):
        if template not in used:
            break
        template = bank[int(r.random() * n)]
    used.add(template)
    return template


def _imdb_review(r: random.Random, polarity: int, kind: str, target: int, breaks: bool) -> str:
    """One review of about `target` characters whose text leans to `polarity` (+1 / -1)."""
    s = _imdb_slots(r)
    used: set[str] = set()
    ending = _pick(r, _ending(r, polarity, kind), used).format_map(s)
    if r.random() < _RATING_SHARE:
        score = r.randint(7, 10) if polarity > 0 else r.randint(1, 4)
        ending += f" {score}/10" if r.random() < 0.5 else f" I give it {score}/10."
    budget = target - len(ending) - 1
    paragraphs: list[list[str]] = [[]]
    size = 0
    if budget > 150:
        first = _pick(r, _OPENINGS, used).format_map(s)
        paragraphs[0].append(first)
        size += len(first) + 1
    # Plot sentences early, opinions later, as reviewers tend to write.
    while size < budget - 30 or size + len(ending) < _IMDB_MIN_CHARS:
        plot = r.random() < 0.55 - 0.45 * size / max(budget, 1)
        sentence = _pick(r, _PLOT if plot else _opinion(r, polarity, kind), used).format_map(s)
        if kind == "mixed" and not plot and r.random() < 0.3:
            if sentence.startswith(_LOWERABLE):
                sentence = r.choice(_IMDB_BANKS["but"]) + sentence[0].lower() + sentence[1:]
            elif sentence.startswith("I "):
                sentence = r.choice(_IMDB_BANKS["but"]) + sentence
        if len(paragraphs[-1]) >= 2 and r.random() < 0.3:
            paragraphs.append([])
            size += 11 if breaks else 0  # "<br /><br />" instead of " "
        paragraphs[-1].append(sentence)
        size += len(sentence) + 1
    if paragraphs[-1] and breaks and r.random() < 0.8:
        paragraphs.append([])
    paragraphs[-1].append(ending)
    texts = [" ".join(p) for p in paragraphs if p]
    if breaks and len(texts) == 1:
        # Short reviews with a break still have one: split before the last sentence.
        head, _, tail = texts[0].rpartition(". ")
        texts = [head + ".", tail] if head else texts
    text = " " + ("<br /><br />" if breaks else " ").join(texts)
    for wrong, right in _A_AN:
        text = text.replace(wrong, right)
    return text[1:]


def generate_imdb(rows: int, seed: int) -> pl.DataFrame:
    """`rows` synthetic IMDB reviews in IMDB_SCHEMA (review, sentiment); see the module doc."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    rng, r = rngs(seed)
    positive = np.zeros(rows, dtype=bool)
    positive[: (rows + 1) // 2] = True
    rng.shuffle(positive)
    flipped = rng.random(rows) < _LABEL_NOISE
    text_positive = positive ^ flipped
    lengths = np.exp(rng.normal(_IMDB_LOG_MEAN, _IMDB_LOG_SD, rows))
    # The last sentence overshoots the target by up to ~200 characters; keep under the max.
    lengths = np.clip(lengths, _IMDB_MIN_CHARS, _IMDB_MAX_CHARS - 250).astype(np.int64)
    p_break = 1.0 / (1.0 + np.exp(-(_BR_SLOPE * np.log(lengths) + _BR_INTERCEPT)))
    breaks = rng.random(rows) < p_break
    kind_u = rng.random(rows)
    pos_names, pos_cum = list(_KINDS_POS), np.cumsum(list(_KINDS_POS.values()))
    neg_names, neg_cum = list(_KINDS_NEG), np.cumsum(list(_KINDS_NEG.values()))
    pos_idx = np.minimum(np.searchsorted(pos_cum, kind_u), len(pos_names) - 1)
    neg_idx = np.minimum(np.searchsorted(neg_cum, kind_u), len(neg_names) - 1)

    reviews = []
    for i in range(rows):
        tp = bool(text_positive[i])
        kind = pos_names[pos_idx[i]] if tp else neg_names[neg_idx[i]]
        reviews.append(_imdb_review(r, 1 if tp else -1, kind, int(lengths[i]), bool(breaks[i])))

    # Exact duplicates copy an earlier original of the same label, keeping the balance.
    n_dup = int(round(rows * _DUPLICATE_SHARE))
    if n_dup and rows > 2 * n_dup:
        dup_rows = rng.choice(np.arange(1, rows), size=n_dup, replace=False)
        is_dup = np.zeros(rows, dtype=bool)
        is_dup[dup_rows] = True
        for i in np.sort(dup_rows):
            candidates = np.flatnonzero((positive[:i] == positive[i]) & ~is_dup[:i])
            if len(candidates):
                reviews[i] = reviews[int(candidates[rng.integers(len(candidates))])]

    sentiment = np.where(positive, "positive", "negative")
    return pl.DataFrame({"review": reviews, "sentiment": sentiment.tolist()}, schema=IMDB_SCHEMA)
