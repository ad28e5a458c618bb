"""Dense, BM25 and hybrid retrieval over an `Index`.

Dense search finds passages across languages (an English question, Arabic
articles); BM25 over normalized, stemmed Arabic catches exact names and figures
the small embedding model blurs. Reciprocal rank fusion combines the two lists
by rank alone, so neither retriever's score scale needs calibrating.
"""
from __future__ import annotations

import numpy as np

from rag.arabic import terms
from rag.config import RetrieveConfig
from rag.errors import ConfigError
from rag.store import Index
from rag.types import Hit

MODES = ("dense", "bm25", "hybrid")


class Retriever:
    def __init__(self, index: Index, config: RetrieveConfig):
        self.index = index
        self.config = config

    def dense(self, query_vector: np.ndarray, top_k: int) -> list[tuple[int, float]]:
        """(chunk row, cosine) pairs, best first."""
        return self.index.search(query_vector, top_k).pairs()

    def bm25(self, question: str, top_k: int) -> list[tuple[int, float]]:
        """(chunk row, BM25 score) pairs with a positive score, best first."""
        return self.index.bm25_search(terms(question), top_k).pairs()

    def lexical_weight(self, question: str) -> float:
        """Share of the question's terms that occur in the corpus: an English question over
        Arabic articles shares almost none, so its BM25 list (noise) barely counts."""
        return self.index.lexical_coverage(terms(question))

    def search(self, question: str, query_vector: np.ndarray | None, top_k: int | None = None,
               mode: str | None = None) -> list[Hit]:
        """The ``top_k`` best chunks for the question, as new `Hit` objects."""
        mode = mode or ("hybrid" if self.config.hybrid else "dense")
        if mode not in MODES:
            raise ConfigError(f"retrieval mode must be one of {', '.join(MODES)}; got {mode!r}", setting="mode", value=mode)
        top_k = top_k or self.config.top_k
        candidates = max(self.config.candidates, top_k)
        if mode == "bm25":
            ranked = self.bm25(question, top_k)
        elif mode == "dense":
            ranked = self.dense(query_vector, top_k)
        else:
            ranked = reciprocal_rank_fusion(
                [self.dense(query_vector, candidates), self.bm25(question, candidates)], self.config.rrf_k,
                weights=[1.0, self.lexical_weight(question)])[:top_k]
        return [Hit(self.index.chunk(row), score, rank, mode) for rank, (row, score) in enumerate(ranked)]


def reciprocal_rank_fusion(rankings: list[list[tuple[int, float]]], k: int = 60,
                           weights: list[float] | None = None) -> list[tuple[int, float]]:
    """Fuse ranked lists: score(d) = sum over lists of weight / (k + rank(d)), rank from 1.

    ``k`` (60 in Cormack, Clarke & Buettcher 2009) damps the weight of the very first
    ranks so that agreement between retrievers beats one retriever's confidence.
    """
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings)):
        for rank, (row, _) in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
