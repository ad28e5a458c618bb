"""The searchers an `Index` is given: dense search over vectors and keyword search over terms, each
one result type, `Ranked`. FAISS and BM25 over the segments are here; Milvus's are in `rag.milvus`.

Which ones an index gets is a choice of `rag.config.StoreConfig` (``backend`` for dense search,
``keyword`` for BM25), made when a version is opened (`rag.store.opening`); the index hands each
searcher itself, since a searcher maps what it finds to the version's chunk rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

if TYPE_CHECKING:
    from rag.store.index import Index


@dataclass(frozen=True, eq=False)
class Ranked:
    """Chunk rows and their scores, best first: what every search returns."""

    rows: np.ndarray  # int64 chunk rows of the open version
    scores: np.ndarray  # float32; cosines (dense) or BM25 scores (keyword)

    @classmethod
    def empty(cls) -> "Ranked":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def pairs(self) -> list[tuple[int, float]]:
        """(row, score) pairs, as `rag.retrieve.reciprocal_rank_fusion` takes them."""
        return list(zip(self.rows.tolist(), self.scores.tolist()))


class DenseSearcher(Protocol):
    def search(self, query_vector: np.ndarray, top_k: int) -> Ranked:
        """The ``top_k`` live chunks nearest to a float32 query vector (``top_k`` at most the chunk count)."""


class KeywordSearcher(Protocol):
    def search(self, query_terms: list[str], top_k: int) -> Ranked:
        """Up to ``top_k`` live chunks with a positive BM25 score for the (normalized, stemmed) terms."""


DenseFactory = Callable[["Index"], DenseSearcher]
KeywordFactory = Callable[["Index"], KeywordSearcher]


class FaissSearcher:
    """Dense search over every segment's FAISS index, deleted chunks filtered out."""

    def __init__(self, index: Index):
        self.index = index
        self.params = [part.search_parameters for part in index.parts]  # made once per segment and tombstones

    def search(self, query_vector: np.ndarray, top_k: int) -> Ranked:
        all_scores, all_rows = [], []
        for number, segment in enumerate(self.index.segments):
            if segment.faiss_index is None or not segment.faiss_index.ntotal:
                continue
            scores, rows = segment.faiss_index.search(query_vector[None, :], min(top_k, segment.faiss_index.ntotal),
                                                      params=self.params[number])
            keep = rows[0] >= 0
            all_scores.append(scores[0][keep])
            all_rows.append(self.index.global_rows(number, rows[0][keep]))
        return _best(np.concatenate(all_scores or [np.zeros(0, np.float32)]),
                     np.concatenate(all_rows or [np.zeros(0, np.int64)]), top_k)


class BM25Searcher:
    """BM25 over the segments' own postings (`rag.bm25`), scored with the live chunks' statistics."""

    def __init__(self, index: Index):
        self.index = index

    def search(self, query_terms: list[str], top_k: int) -> Ranked:
        scores = self.index.bm25_scores(query_terms)
        top_k = min(top_k, len(scores))
        rows = np.argpartition(-scores, top_k - 1)[:top_k]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        rows = rows[scores[rows] > 0]
        return Ranked(rows.astype(np.int64), scores[rows])


def _best(scores: np.ndarray, rows: np.ndarray, top_k: int) -> Ranked:
    """The ``top_k`` best (score, row) pairs, ties broken by row."""
    keep = rows >= 0
    rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:top_k]
    return Ranked(rows[order].astype(np.int64), scores[order].astype(np.float32))
