"""Near-duplicate removal (llmlab.sft_data.dedup) does not depend on the order of the rows."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from llmlab.sft_data import dedup

OPENERS = ["", "Слушай, такой вопрос. ", "Я новичок в этом. ", "Помоги, пожалуйста. ",
           "Хочу разобраться. "]  # fmt: skip
BODIES = [
    "Напиши пост для телеграм-канала про {s}, в лёгком тоне и с парой примеров из жизни.",
    "Расскажи подробно, почему важна тема «{s}» и что о ней должен знать каждый школьник.",
    "Составь план статьи на тему {s} из пяти пунктов с короткими пояснениями к каждому.",
    "Объясни простыми словами, что такое {s}, и приведи три примера из повседневной жизни.",
]
CLOSERS = ["", " Ответь коротко.", " Только по делу.", " Пошагово, пожалуйста.", " Без терминов."]
ADJECTIVES = ["современный", "старый", "северный", "городской", "школьный", "домашний", "летний",
              "зимний", "цифровой", "семейный"]  # fmt: skip
NOUNS = ["сад", "транспорт", "бюджет", "спорт", "театр", "туризм", "рынок", "музей", "интернет",
         "огород", "праздник", "ремонт"]  # fmt: skip

# (ngram, threshold, num_perm, bands, seed): short n-grams and a high threshold put many
# template-sharing pairs near the threshold, where the former star per bucket depended on row
# order (94 to 100 of these 250 rows dropped over shuffles, 105 with all pairs checked); then
# the pipeline's settings (params.yaml).
SETTINGS = [(3, 0.7, 64, 32, 42), (8, 0.5, 64, 32, 42)]


def _edit(r: random.Random, prompt: str) -> str:
    """A near-copy: a light edit as users re-asking the same thing make."""
    kind, words = r.randrange(5), prompt.split()
    if kind == 0:
        return prompt.rstrip(".?!")
    if kind == 1:
        return "Пожалуйста, " + prompt[:1].lower() + prompt[1:]
    if kind == 2:
        return prompt + " Спасибо!"
    i = r.randrange(len(words))
    if kind == 3:
        words[i] = r.choice(["очень", "кратко", "ещё", "сейчас"])
    else:
        del words[i]
    return " ".join(words)


def template_prompts(seed: int = 1) -> list[str]:
    """200 distinct prompts from 4 templates x 80 subjects x openers/closers + 50 near-copies."""
    r = random.Random(seed)
    subjects = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
    random.Random(99).shuffle(subjects)
    subjects = subjects[:80]
    prompts: set[str] = set()
    while len(prompts) < 200:
        body = r.choice(BODIES).format(s=r.choice(subjects))
        prompts.add(r.choice(OPENERS) + body + r.choice(CLOSERS))
    unique = sorted(prompts)
    r.shuffle(unique)
    return unique + [_edit(r, unique[r.randrange(200)]) for _ in range(50)]


def signatures_of(texts: pl.Series, ngram: int, num_perm: int, seed: int) -> np.ndarray:
    hashes, rows = dedup.shingle_hashes(dedup.normalised_words(texts), ngram, seed)
    return dedup.minhash_signatures(hashes, rows, texts.len(), num_perm, seed)


def exhaustive_components(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """Component of each row over ALL pairs whose MinHash similarity is >= threshold."""
    similarity = (signatures[:, None, :] == signatures[None, :, :]).mean(axis=2)
    i, j = np.nonzero(np.triu(similarity >= threshold, k=1))
    n = len(signatures)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


@pytest.mark.parametrize("settings", SETTINGS)
def test_near_duplicates_dropped_match_an_exhaustive_all_pairs_check(settings):
    ngram, threshold, num_perm, bands, seed = settings
    texts = pl.Series(template_prompts())
    components = exhaustive_components(signatures_of(texts, ngram, num_perm, seed), threshold)
    expected = len(texts) - len(np.unique(components))
    assert expected > 50  # the planted near-copies and template-sharing prompts do collapse
    drop = dedup.near_duplicate_mask(texts, *settings)
    assert int(drop.sum()) == expected
    # ... and it is the same grouping: one survivor per exhaustive component.
    assert len(np.unique(components[~drop])) == len(np.unique(components)) == int((~drop).sum())


@pytest.mark.parametrize("settings", SETTINGS)
def test_near_duplicate_groups_do_not_depend_on_row_order(settings):
    ngram, threshold, num_perm, bands, seed = settings
    texts = pl.Series(template_prompts())
    ids = np.arange(texts.len())  # a row's id: its position in the unshuffled input
    reference = dedup.duplicate_groups(
        signatures_of(texts, ngram, num_perm, seed), threshold, bands
    )
    dropped = int(dedup.near_duplicate_mask(texts, *settings).sum())
    for shuffle in range(5):
        perm = np.random.default_rng(shuffle).permutation(ids)
        shuffled = texts.gather(perm)
        signatures = signatures_of(shuffled, ngram, num_perm, seed)
        # Group ids come from the content, so each id lands in the very same group.
        group_of_id = np.empty_like(ids)
        group_of_id[perm] = dedup.duplicate_groups(signatures, threshold, bands)
        assert np.array_equal(group_of_id, reference)
        # The same rows are duplicates in any order; the survivor of each group is the
        # group's first row in the given (preference) order.
        drop = dedup.near_duplicate_mask(shuffled, *settings)
        assert int(drop.sum()) == dropped
        groups_in_order = pl.Series(reference[perm])
        assert np.array_equal(~drop, groups_in_order.is_first_distinct().to_numpy())


def test_kept_ids_are_the_same_when_the_caller_ranks_by_row_content():
    # The contract filters.py relies on: rows are passed best first; if ties are broken by
    # something in the row (here an id), every shuffle of the input keeps the same ids.
    texts = pl.Series(template_prompts())
    score = np.random.default_rng(7).integers(7, 11, size=texts.len())  # many ties
    kept = []
    for shuffle in range(5):
        perm = np.random.default_rng(shuffle).permutation(texts.len())
        frame = pl.DataFrame({"id": perm, "text": texts.gather(perm), "score": score[perm]})
        ranked = frame.sort(["score", "id"], descending=[True, False])
        drop = dedup.near_duplicate_mask(ranked["text"], *SETTINGS[0])
        kept.append(sorted(ranked["id"].filter(pl.Series(~drop)).to_list()))
    assert all(k == kept[0] for k in kept)
    # Each kept row is the best-scored of its group.
    sig = signatures_of(texts, 3, 64, 42)
    group = dedup.duplicate_groups(sig, 0.7, 32)
    best = pl.DataFrame({"group": group, "score": score}).group_by("group").agg(pl.max("score"))
    kept_scores = pl.DataFrame({"group": group[kept[0]], "score": score[kept[0]]})
    assert (
        kept_scores.join(best, on="group", suffix="_best")
        .filter(pl.col("score") != pl.col("score_best"))
        .is_empty()
    )


def test_band_pairs_lists_every_pair_of_a_bucket_and_caps_huge_ones():
    # Rows 0, 2, 3, 5 share band 0; rows 1 and 4 are alone.
    sig = np.array([[1, 1], [2, 2], [1, 1], [1, 1], [3, 3], [1, 1]], dtype=np.uint32)
    pairs = dedup.band_pairs(sig, band=0, width=2, window=10)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 2), (0, 3), (0, 5), (2, 3), (2, 5), (3, 5)]
    capped = dedup.band_pairs(sig, band=0, width=2, window=1)
    assert sorted(map(tuple, capped.tolist())) == [(0, 2), (2, 3), (3, 5)]


def test_many_copies_of_one_prompt_and_its_variants_keep_one_row():
    long = (
        "Напиши подробное эссе о влиянии климатических изменений на сельское хозяйство "
        "в северных регионах России с примерами и статистикой за последние двадцать лет"
    )
    texts = pl.Series([long] * 500 + [long + " пожалуйста", long.upper(), "Как сварить борщ?"])
    drop = dedup.near_duplicate_mask(texts, 3, 0.5, 128, 64, 0)
    assert np.flatnonzero(~drop).tolist() == [0, 502]
