"""rag/bm25.py: segment postings score exactly as bm25s's "lucene" BM25 over the live chunks."""
from __future__ import annotations

import bm25s
import numpy as np
import pytest

from rag import bm25
from rag.arabic import terms

QUERIES = ["كم عدد الجنود الكوريين الشماليين في كورسك؟", "زيلينسكي يكشف عن إرسال كوريا الشمالية مواطنين",
           "صواريخ ستورم شادو", "السفير الروسي في سيول"]


@pytest.fixture(scope="module")
def chunk_terms(seeds_index) -> list[list[str]]:
    return [terms(seeds_index.chunk(row).text) for row in range(len(seeds_index))]


def reference(term_lists: list[list[str]], query: list[str]) -> np.ndarray:
    model = bm25s.BM25()
    model.index(term_lists, show_progress=False)
    return model.get_scores(query)


def test_scores_equal_bm25s(chunk_terms):
    scorer = bm25.Scorer([bm25.Part(bm25.build(chunk_terms), None, None, 0)])
    for query in map(terms, QUERIES):
        np.testing.assert_allclose(scorer.scores(query, len(chunk_terms)), reference(chunk_terms, query), rtol=1e-5)


def test_two_segments_with_deletions_score_as_one_index_of_the_live_chunks(chunk_terms):
    half = len(chunk_terms) // 2
    first, second = bm25.build(chunk_terms[:half]), bm25.build(chunk_terms[half:])
    live = np.ones(half, bool)
    live[[1, 4, 5]] = False
    global_rows = np.full(half, -1)
    global_rows[live] = np.arange(live.sum())
    scorer = bm25.Scorer([bm25.Part(first, live, global_rows, 0), bm25.Part(second, None, None, int(live.sum()))])
    survivors = [t for t, keep in zip(chunk_terms[:half], live) if keep] + chunk_terms[half:]
    for query in map(terms, QUERIES):
        np.testing.assert_allclose(scorer.scores(query, len(survivors)), reference(survivors, query), rtol=1e-5)
    merged = bm25.merge([(first, np.flatnonzero(live)), (second, np.arange(len(chunk_terms) - half))])
    rebuilt = bm25.build(survivors)
    for name in bm25.FILES:
        np.testing.assert_array_equal(getattr(merged, name), getattr(rebuilt, name))


def test_unknown_terms_and_empty_postings_score_zero():
    postings = bm25.build([["a", "b"], []])
    scorer = bm25.Scorer([bm25.Part(postings, None, None, 0)])
    assert scorer.scores(["zzz"], 2).tolist() == [0.0, 0.0]
    assert scorer.document_frequencies(["a", "zzz"]) == [1, 0]
    assert bm25.build([]).find(bm25.term_keys(["a"])).tolist() == [-1]
