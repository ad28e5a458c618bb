"""An opened, read-only index version: its live chunks numbered 0..n-1 across segments, the
articles and sentences they point into, and dense (FAISS) and BM25 search over them."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Iterable

import numpy as np

from rag import bm25
from rag.config import StoreConfig
from rag.store.segment import Segment
from rag.types import Article, Chunk, Sentence


class Index:
    """An opened, read-only index version. Chunk rows 0..len-1 number its live chunks."""

    def __init__(self, path: Path, manifest: dict, segments: list[Segment], dead: list[np.ndarray | None],
                 searcher=None):
        self.path = path
        self.manifest = manifest
        self.segments = segments
        self.store = StoreConfig(**manifest["store"])
        self._alive, self._live, self._live_rows, self._global_rows, starts, sentence_starts = [], [], [], [], [], []
        rows = sentences = 0
        for segment, dead_rows in zip(segments, dead):
            alive = None
            if dead_rows is not None and len(dead_rows):
                alive = np.ones(segment.article_count, bool)
                alive[dead_rows] = False
            live = segment.live_chunks(alive)
            live_rows = None if live is None else np.flatnonzero(live)
            global_rows = None
            if live is not None:
                global_rows = np.full(len(segment), -1, np.int64)
                global_rows[live_rows] = rows + np.arange(len(live_rows))
            self._alive.append(alive)
            self._live.append(live)
            self._live_rows.append(live_rows)
            self._global_rows.append(global_rows)
            starts.append(rows)
            sentence_starts.append(sentences)
            rows += len(segment) if live_rows is None else len(live_rows)
            sentences += len(segment.sentence_table)
        self._size = rows
        self._starts, self._sentence_starts = np.array(starts, np.int64), np.array(sentence_starts, np.int64)
        self._scorer = bm25.Scorer([bm25.Part(s.postings, live, rows, int(base)) for s, live, rows, base
                                    in zip(segments, self._live, self._global_rows, starts)])
        self._searcher = searcher or FaissSearcher(self)
        self._articles_cache: dict[tuple[int, int], Article] = {}

    def __len__(self) -> int:
        return self._size

    # --- articles, chunks, sentences

    @functools.cached_property
    def article_rows(self) -> dict[str, tuple[int, int]]:
        """Article id -> (segment, article row) of every live article."""
        rows = {}
        for number, (segment, alive) in enumerate(zip(self.segments, self._alive)):
            ids = segment.catalog[0]
            for row in (range(len(ids)) if alive is None else np.flatnonzero(alive).tolist()):
                rows[ids[row]] = (number, row)
        return rows

    @functools.cached_property
    def articles(self) -> "ArticleList":
        return ArticleList(self)

    def article(self, article_id: str) -> Article:
        return self._article(*self.article_rows[article_id])

    def article_hashes(self) -> dict[str, str]:
        """Content hash of every live article, by id."""
        hashes = {}
        for segment, alive in zip(self.segments, self._alive):
            ids, digests = segment.catalog
            rows = range(len(ids)) if alive is None else np.flatnonzero(alive).tolist()
            hashes.update((ids[row], digests[row]) for row in rows)
        return hashes

    def _article(self, number: int, row: int) -> Article:
        key = (number, row)
        article = self._articles_cache.get(key)
        if article is None:
            if len(self._articles_cache) > 256:
                self._articles_cache.clear()
            article = self._articles_cache[key] = self.segments[number].article(row)
        return article

    def _locate(self, row: int) -> tuple[int, int]:
        """Global chunk row -> (segment, local row)."""
        if not 0 <= row < self._size:
            raise IndexError(f"chunk row {row} out of range (the index has {self._size})")
        number = int(np.searchsorted(self._starts, row, side="right")) - 1  # every segment has a live chunk
        offset = row - int(self._starts[number])
        live_rows = self._live_rows[number]
        return number, offset if live_rows is None else int(live_rows[offset])

    def chunk(self, row: int) -> Chunk:
        number, local = self._locate(int(row))
        segment = self.segments[number]
        article_row, start, end, first, stop = (int(v) for v in segment.chunk_table[local])
        article = self._article(number, article_row)
        sentences = tuple(self._sentence(number, i, article) for i in range(first, stop))
        return Chunk(int(row), article.id, start, end, article.text[start:end], sentences)

    def sentence(self, row: int) -> Sentence:
        number = int(np.searchsorted(self._sentence_starts, row, side="right")) - 1
        local = int(row - self._sentence_starts[number])
        article = self._article(number, int(self.segments[number].sentence_table[local, 0]))
        return self._sentence(number, local, article)

    def _sentence(self, number: int, local: int, article: Article) -> Sentence:
        _, start, end = (int(v) for v in self.segments[number].sentence_table[local])
        return Sentence(article.id, start, end, article.text[start:end])

    def sentence_rows(self, chunk_row: int) -> range:
        number, local = self._locate(int(chunk_row))
        base = int(self._sentence_starts[number])
        _, _, _, first, stop = (int(v) for v in self.segments[number].chunk_table[local])
        return range(base + first, base + stop)

    def chunk_vectors(self, rows: Iterable[int] | None = None) -> np.ndarray:
        """Stored vectors of the given chunk rows (all live chunks when None: small indexes only)."""
        rows = range(self._size) if rows is None else rows
        located = [self._locate(int(row)) for row in rows]
        return np.array([self.segments[n].vectors[local] for n, local in located], np.float32).reshape(-1, self.dim)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    # --- search

    def search(self, query_vector: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense search: (scores, chunk rows), best first, at most ``top_k``."""
        top_k = min(top_k, self._size)
        if top_k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        return self._searcher.search(np.ascontiguousarray(query_vector, dtype=np.float32), top_k)

    def exact_search(self, query_vectors: np.ndarray, top_k: int) -> np.ndarray:
        """(q, top_k) chunk rows by exact inner product over the stored vectors (recall checks)."""
        best_scores = np.full((len(query_vectors), 0), -np.inf, np.float32)
        best_rows = np.zeros((len(query_vectors), 0), np.int64)
        for number, segment in enumerate(self.segments):
            for at in range(0, len(segment), 65536):
                scores = query_vectors @ np.asarray(segment.vectors[at:at + 65536], np.float32).T
                rows = self._to_global(number, np.arange(at, at + scores.shape[1]))
                scores[:, rows < 0] = -np.inf
                best_scores = np.concatenate([best_scores, scores], axis=1)
                best_rows = np.concatenate([best_rows, np.broadcast_to(rows, scores.shape)], axis=1)
                keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :top_k]
                best_scores = np.take_along_axis(best_scores, keep, 1)
                best_rows = np.take_along_axis(best_rows, keep, 1)
        return best_rows

    def bm25_search(self, query_terms: list[str], top_k: int) -> list[tuple[int, float]]:
        """(chunk row, BM25 score) pairs with a positive score, best first."""
        if not query_terms or self._size == 0:
            return []
        return self._searcher.keyword(query_terms, top_k)

    def bm25_scores(self, query_terms: list[str]) -> np.ndarray:
        """BM25 score of every chunk row, from the local postings."""
        return self._scorer.scores(query_terms, self._size)

    def lexical_coverage(self, query_terms: list[str]) -> float:
        """Share of the query's terms that occur in at least one live chunk."""
        if not query_terms:
            return 0.0
        return sum(df > 0 for df in self._scorer.document_frequencies(query_terms)) / len(query_terms)

    def _to_global(self, number: int, local_rows: np.ndarray) -> np.ndarray:
        global_rows = self._global_rows[number]
        return int(self._starts[number]) + local_rows if global_rows is None else global_rows[local_rows]

    def rows_for_keys(self, keys: np.ndarray) -> np.ndarray:
        """Global rows of chunk keys (-1 for a key that is not live in this version)."""
        rows = np.full(len(keys), -1, np.int64)
        for number, segment in enumerate(self.segments):
            order = segment.key_order
            at = np.minimum(np.searchsorted(segment.keys[order], keys), len(segment) - 1)
            found = (segment.keys[order[at]] == keys) & (rows < 0)
            rows[found] = self._to_global(number, order[at[found]])
        return rows


class ArticleList(Sequence):
    """The live articles of an index, read from disk when asked for."""

    def __init__(self, index: Index):
        self._index = index
        self._rows = [(n, row) for n, (s, alive) in enumerate(zip(index.segments, index._alive))
                      for row in (range(s.article_count) if alive is None else np.flatnonzero(alive).tolist())]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self._index._article(*key) for key in self._rows[item]]
        return self._index._article(*self._rows[item])


class FaissSearcher:
    """Dense search over every segment's FAISS index, deleted chunks filtered out; BM25 locally."""

    def __init__(self, index: Index):
        import faiss

        self.index = index
        self.params = []
        for live in index._live:
            selector = None
            if live is not None:
                bitmap = np.packbits(live, bitorder="little")
                selector = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bitmap))
                selector.bitmap_array = bitmap  # keep the bits alive as long as the selector
            self.params.append(_search_parameters(index.store, selector))

    def search(self, query: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        all_scores, all_rows = [], []
        for number, segment in enumerate(self.index.segments):
            if segment.faiss_index is None or not segment.faiss_index.ntotal:
                continue
            scores, rows = segment.faiss_index.search(query[None, :], min(top_k, segment.faiss_index.ntotal),
                                                      params=self.params[number])
            keep = rows[0] >= 0
            all_scores.append(scores[0][keep])
            all_rows.append(self.index._to_global(number, rows[0][keep]))
        return _best(np.concatenate(all_scores or [np.zeros(0, np.float32)]),
                     np.concatenate(all_rows or [np.zeros(0, np.int64)]), top_k)

    def keyword(self, query_terms: list[str], top_k: int) -> list[tuple[int, float]]:
        scores = self.index.bm25_scores(query_terms)
        top_k = min(top_k, len(scores))
        rows = np.argpartition(-scores, top_k - 1)[:top_k]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        return [(int(row), float(scores[row])) for row in rows if scores[row] > 0]


def _best(scores: np.ndarray, rows: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` best (score, row) pairs, ties broken by row."""
    rows = rows[rows >= 0] if len(rows) else rows
    order = np.lexsort((rows, -scores))[:top_k]
    return scores[order].astype(np.float32), rows[order].astype(np.int64)


def _search_parameters(config: StoreConfig, selector):
    import faiss

    if selector is None:
        return None
    if config.index == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=config.hnsw_ef_search)
    if config.index == "ivf":
        return faiss.SearchParametersIVF(sel=selector, nprobe=config.ivf_nprobe)
    return faiss.SearchParameters(sel=selector)
