"""Exact and near-duplicate prompts: normalised text keys and MinHash-LSH over word n-grams.

The dataset author deduplicates saiga by n-gram overlap of the first user message; this does
the same at 41.6k rows in about a second, vectorised (polars for the text, numpy for hashing):

1. Normalise: lowercase, keep runs of letters/digits ("words"), drop punctuation and spacing.
2. Shingles: hashes of consecutive word n-grams (a prompt shorter than n words is one shingle).
3. MinHash signature of `num_perm` values per prompt: the minimum over its shingles of
   `num_perm` seeded hash functions (multiply-shift on 64-bit shingle hashes).
4. LSH: signatures cut into `bands`; prompts sharing one band's values become candidates.
5. A candidate pair is a duplicate when its signatures agree on >= `threshold` of the values
   (the MinHash estimate of the Jaccard similarity of the shingle sets).
6. Duplicates are joined transitively (connected components); in each group the row that
   comes first in the given order survives, so callers order rows by preference first.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Letters and digits of any script: "Привет, мир!" -> ["привет", "мир"].
WORD_PATTERN = r"[\p{L}\p{N}]+"
_MASK32 = np.uint64(0xFFFFFFFF)


def normalised_words(texts: pl.Series) -> pl.Series:
    """Lowercased words (letter/digit runs) of each text; null text gives an empty list."""
    return texts.fill_null("").str.to_lowercase().str.extract_all(WORD_PATTERN)


def exact_duplicate_mask(texts: pl.Series) -> np.ndarray:
    """True for rows whose normalised text already occurred in an earlier row."""
    key = normalised_words(texts).list.join(" ")
    return (~key.is_first_distinct()).to_numpy()


def shingle_hashes(words: pl.Series, ngram: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the word n-grams of each row, concatenated row by row.

    Returns (hashes, row_of_each_hash). Every row gets at least one shingle: the hash of its
    whole word sequence when it has fewer than `ngram` words (a constant for no words).
    """
    lengths = words.list.len().to_numpy().astype(np.int64)
    flat = words.explode().drop_nulls()
    word_hash = flat.hash(seed=seed).to_numpy() if flat.len() else np.zeros(0, np.uint64)
    row_start = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    row_of_word = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(word_hash)) - row_start[row_of_word]
    row_len = lengths[row_of_word]
    # A shingle starts at each word with a full n-gram after it, or at the first word of a row
    # shorter than n.
    is_start = (pos + ngram <= row_len) | ((row_len < ngram) & (pos == 0))
    starts = np.flatnonzero(is_start)
    span = np.minimum(ngram, row_len[starts])
    # Position-dependent odd multipliers make the n-gram hash order-sensitive.
    mult = np.random.Generator(np.random.PCG64(seed)).integers(
        1, 2**63, size=ngram, dtype=np.uint64
    ) * np.uint64(2) + np.uint64(1)
    hashes = np.zeros(len(starts), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(ngram):
            use = span > k
            hashes[use] += word_hash[starts[use] + k] * mult[k]
    rows = row_of_word[starts]
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        hashes = np.concatenate((hashes, np.full(len(empty), 0x9E3779B97F4A7C15, np.uint64)))
        rows = np.concatenate((rows, empty))
        order = np.argsort(rows, kind="stable")
        hashes, rows = hashes[order], rows[order]
    return hashes, rows


def minhash_signatures(
    hashes: np.ndarray, rows: np.ndarray, n_rows: int, num_perm: int, seed: int
) -> np.ndarray:
    """(n_rows, num_perm) uint32 MinHash signatures; `rows` must be sorted and cover every row."""
    rng = np.random.Generator(np.random.PCG64(seed + 1))
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    segment_starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    assert len(segment_starts) == n_rows, "every row needs at least one shingle"
    signatures = np.empty((n_rows, num_perm), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for j in range(num_perm):
            # Multiply-shift: the high 32 bits of a*x + b (mod 2^64) are a universal hash.
            values = ((hashes * a[j] + b[j]) >> np.uint64(32)) & _MASK32
            signatures[:, j] = np.minimum.reduceat(values, segment_starts)
    return signatures


def candidate_pairs(signatures: np.ndarray, bands: int) -> np.ndarray:
    """(k, 2) pairs of rows that share all values of at least one band.

    Within a bucket every member is paired with the bucket's first row (a star, not all
    pairs), which keeps huge buckets linear and is enough for connected components.
    """
    n_rows, num_perm = signatures.shape
    width = num_perm // bands
    pairs = []
    for band in range(bands):
        block = np.ascontiguousarray(signatures[:, band * width : (band + 1) * width])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * width))).ravel()
        _, bucket = np.unique(keys, return_inverse=True)
        order = np.lexsort((np.arange(n_rows), bucket))
        sorted_bucket = bucket[order]
        first = np.r_[True, sorted_bucket[1:] != sorted_bucket[:-1]]
        leader = order[np.flatnonzero(first)][np.cumsum(first) - 1]
        members = ~first
        pairs.append(np.stack((leader[members], order[members]), axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def near_duplicate_mask(
    texts: pl.Series, ngram: int, threshold: float, num_perm: int, bands: int, seed: int
) -> np.ndarray:
    """True for rows that are near-duplicates of an earlier row (see the module docstring)."""
    n_rows = texts.len()
    if n_rows == 0:
        return np.zeros(0, dtype=bool)
    hashes, rows = shingle_hashes(normalised_words(texts), ngram, seed)
    signatures = minhash_signatures(hashes, rows, n_rows, num_perm, seed)
    pairs = candidate_pairs(signatures, bands)
    similarity = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    edges = pairs[similarity >= threshold]
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_rows, n_rows))
    _, component = connected_components(graph, directed=False)
    # The first row of each component (in the caller's order) is the one that survives.
    first_of_component = pl.Series(component).is_first_distinct().to_numpy()
    return ~first_of_component
