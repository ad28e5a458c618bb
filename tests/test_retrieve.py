"""rag/retrieve.py: dense, BM25 and hybrid search over the seeds index, and reciprocal rank fusion."""
from __future__ import annotations

import copy

import pytest

from rag.errors import ConfigError
from rag.retrieve import MODES, Retriever, reciprocal_rank_fusion
from rag.types import Hit

KURSK_AR = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
KURSK_EN = "How many North Korean troops are in Kursk?"
KURSK_ARTICLES = {"002_2e4104477adbd184.txt", "004_d287910d6ae0b8d5.txt"}  # the two that give Kursk figures


@pytest.fixture(scope="module")
def retriever(seeds_index, config) -> Retriever:
    return Retriever(seeds_index, config.retrieve)


@pytest.fixture(scope="module")
def vectors(embedder) -> dict:
    questions = [KURSK_AR, KURSK_EN]
    return dict(zip(questions, embedder.encode_queries(questions)))


def search(retriever, vectors, question, mode, top_k=3) -> list[Hit]:
    return retriever.search(question, vectors.get(question), top_k=top_k, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_arabic_kursk_question_finds_a_kursk_article_in_the_top_3(retriever, vectors, mode):
    hits = search(retriever, vectors, KURSK_AR, mode)
    assert len(hits) == 3
    assert {hit.chunk.article_id for hit in hits} & KURSK_ARTICLES, [h.chunk.article_id for h in hits]
    assert any("كورسك" in hit.chunk.text for hit in hits)


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_english_question_finds_the_arabic_articles_through_dense(retriever, vectors, mode):
    hits = search(retriever, vectors, KURSK_EN, mode)
    assert {hit.chunk.article_id for hit in hits} & KURSK_ARTICLES, [h.chunk.article_id for h in hits]


def test_bm25_cannot_match_english_against_arabic(retriever, vectors):
    assert search(retriever, vectors, KURSK_EN, "bm25") == []


@pytest.mark.parametrize("mode", MODES)
def test_hits_are_ranked_new_objects_that_slice_back(retriever, vectors, seeds_index, mode):
    hits = search(retriever, vectors, KURSK_AR, mode, top_k=5)
    assert [hit.rank for hit in hits] == list(range(5))
    assert all(hit.retriever == mode for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert len({hit.chunk.id for hit in hits}) == 5
    for hit in hits:
        article = seeds_index.article(hit.chunk.article_id)
        assert article.text[hit.chunk.start:hit.chunk.end] == hit.chunk.text
        assert hit.chunk == seeds_index.chunk(hit.chunk.id)


def test_dense_scores_are_cosines(retriever, vectors):
    hits = search(retriever, vectors, KURSK_AR, "dense")
    assert all(0.0 < hit.score <= 1.0 for hit in hits)


def test_hybrid_scores_are_fused_ranks(retriever, vectors, config):
    hits = search(retriever, vectors, KURSK_AR, "hybrid")
    rrf_k = config.retrieve.rrf_k
    assert all(1 / (rrf_k + config.retrieve.candidates) <= hit.score <= 2 / (rrf_k + 1) for hit in hits)


def test_hybrid_agrees_with_fusing_dense_and_bm25_itself(retriever, vectors, config):
    candidates = config.retrieve.candidates
    expected = reciprocal_rank_fusion([retriever.dense(vectors[KURSK_AR], candidates),
                                       retriever.bm25(KURSK_AR, candidates)], config.retrieve.rrf_k)[:5]
    hits = search(retriever, vectors, KURSK_AR, "hybrid", top_k=5)
    assert [(hit.chunk.id, hit.score) for hit in hits] == expected


def test_default_mode_follows_the_hybrid_setting(seeds_index, config, vectors):
    hybrid = Retriever(seeds_index, config.retrieve).search(KURSK_AR, vectors[KURSK_AR])
    dense = Retriever(seeds_index, config.replace(retrieve={"hybrid": False}).retrieve).search(KURSK_AR,
                                                                                                vectors[KURSK_AR])
    assert len(hybrid) == len(dense) == config.retrieve.top_k
    assert {hit.retriever for hit in hybrid} == {"hybrid"}
    assert {hit.retriever for hit in dense} == {"dense"}


def test_top_k_caps_the_hits(retriever, vectors, seeds_index):
    assert len(search(retriever, vectors, KURSK_AR, "dense", top_k=1)) == 1
    assert len(search(retriever, vectors, KURSK_AR, "dense", top_k=1000)) == len(seeds_index)


def test_bm25_keeps_only_positive_scores(retriever):
    hits = retriever.bm25("كورسك", 1000)
    assert hits and all(score > 0 for _, score in hits)
    assert len(hits) < 1000


def test_bm25_of_stopwords_only_is_empty(retriever):
    assert retriever.bm25("هل كان من الذي في", 5) == []


def test_bm25_ranks_an_exact_name_first(retriever, seeds_index):
    row, _ = retriever.bm25("ستورم شادو", 1)[0]
    assert "ستورم شادو" in seeds_index.chunk(row).text


@pytest.mark.parametrize("mode", ["semantic", "BM25", "dense "])
def test_invalid_mode_is_a_config_error(retriever, vectors, mode):
    with pytest.raises(ConfigError, match=f"retrieval mode must be one of dense, bm25, hybrid; got '{mode}'"):
        search(retriever, vectors, KURSK_AR, mode)


# --- reciprocal rank fusion --------------------------------------------------------------

def test_agreement_beats_a_single_first_place():
    dense = [(1, 0.9), (2, 0.8), (3, 0.7)]
    bm25 = [(4, 12.0), (2, 10.0), (3, 9.0)]
    fused = reciprocal_rank_fusion([dense, bm25], k=60)
    assert [row for row, _ in fused][:2] == [2, 3]
    assert dict(fused)[2] == pytest.approx(2 / 62)
    assert dict(fused)[1] == pytest.approx(1 / 61)


def test_fusion_uses_ranks_not_scores():
    first = reciprocal_rank_fusion([[(1, 1000.0), (2, 0.001)], [(2, 0.5), (1, 0.4)]])
    second = reciprocal_rank_fusion([[(1, 0.1), (2, 0.0)], [(2, 99.0), (1, -5.0)]])
    assert first == second


def test_fusion_returns_new_objects_and_leaves_its_input_alone():
    rankings = [[(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)]]
    snapshot = copy.deepcopy(rankings)
    fused = reciprocal_rank_fusion(rankings)
    assert rankings == snapshot
    assert all(fused is not ranking for ranking in rankings)
    fused.append((99, 1.0))
    assert rankings == snapshot


def test_fusion_ties_break_by_row_and_k_damps_the_top():
    assert [row for row, _ in reciprocal_rank_fusion([[(5, 1.0)], [(3, 1.0)]])] == [3, 5]
    sharp = dict(reciprocal_rank_fusion([[(1, 0), (2, 0)]], k=0))
    assert sharp[1] == pytest.approx(1.0) and sharp[2] == pytest.approx(0.5)


def test_fusion_of_nothing():
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


def test_search_builds_new_hits_each_time(retriever, vectors):
    first, second = (search(retriever, vectors, KURSK_AR, "hybrid") for _ in range(2))
    assert first == second
    assert all(a is not b for a, b in zip(first, second))
