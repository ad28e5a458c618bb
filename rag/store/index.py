"""An opened, read-only index version: its live chunks numbered 0..n-1 across segments, the
articles and sentences they point into, and dense and keyword search over them through the
searchers it is given (`rag.store.search`)."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Iterable

import numpy as np

from rag import bm25
from rag.config import StoreConfig
from rag.errors import StoreError
from rag.store.search import DenseFactory, KeywordFactory, Ranked
from rag.store.segment import Segment, id_keys
from rag.types import Article, Chunk, Sentence


class LiveSegment:
    """A segment as one version sees it: its tombstones and what follows from them (live masks, the
    live rows' ranks, BM25 statistics, FAISS search parameters). Built once per (segment, tombstone
    file) and handed on to the next version when an update leaves that segment alone."""

    def __init__(self, segment: Segment, dead_name: str | None, dead_rows: np.ndarray | None, store: StoreConfig):
        self.segment, self.dead_name, self.store = segment, dead_name, store
        self.alive = None  # per article row (None: all alive)
        if dead_rows is not None and len(dead_rows):
            self.alive = np.ones(segment.article_count, bool)
            self.alive[dead_rows] = False
        self.live = segment.live_chunks(self.alive)  # per chunk row (None: all live)
        self.live_rows = None if self.live is None else np.flatnonzero(self.live)
        self.ranks = None  # per chunk row: position among the live chunk rows, -1 if dead
        if self.live is not None:
            self.ranks = np.full(len(segment), -1, np.int64)
            self.ranks[self.live_rows] = np.arange(len(self.live_rows))
        self.size = len(segment) if self.live_rows is None else len(self.live_rows)
        self.articles = segment.article_count if self.alive is None else int(self.alive.sum())
        self.bm25_documents, self.bm25_length = bm25.live_statistics(segment.postings, self.live)
        self._under: dict[str, np.ndarray] = {}  # by id prefix: all rows, dead or alive (shared with later tombstones)

    @functools.cached_property
    def alive_rows(self) -> np.ndarray:
        return np.arange(self.segment.article_count) if self.alive is None else np.flatnonzero(self.alive)

    def rows_under(self, prefix: str) -> np.ndarray:
        """Live article rows whose id starts with ``prefix`` (the catalog is read once per segment)."""
        if prefix not in self._under:
            ids = self.segment.catalog[0]
            self._under[prefix] = np.array([row for row, article_id in enumerate(ids) if article_id.startswith(prefix)],
                                           np.int64)
        rows = self._under[prefix]
        return rows if self.alive is None else rows[self.alive[rows]]

    def is_alive(self, row: int) -> bool:
        return row >= 0 and (self.alive is None or bool(self.alive[row]))

    @functools.cached_property
    def search_parameters(self):
        """FAISS parameters that skip the dead chunks (None: nothing to skip)."""
        if self.live is None:
            return None
        import faiss

        bitmap = np.packbits(self.live, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(self.live), faiss.swig_ptr(bitmap))
        selector.bitmap_array = bitmap  # keep the bits alive as long as the selector
        return _search_parameters(self.store, selector)


class Index:
    """An opened, read-only index version. Chunk rows 0..len-1 number its live chunks. ``dense`` and
    ``keyword`` make its searchers from it; an index opened for its texts only has none."""

    def __init__(self, path: Path, manifest: dict, parts: list[LiveSegment], dense: DenseFactory | None = None,
                 keyword: KeywordFactory | None = None):
        self.path = path
        self.manifest = manifest
        self.parts = parts
        self.segments = [part.segment for part in parts]
        self.store = StoreConfig(**manifest["store"])
        sizes = [part.size for part in parts]
        self._starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if parts else np.zeros(0, np.int64)
        self._size = int(sum(sizes))
        self._sentence_starts = np.concatenate([[0], np.cumsum([len(p.segment.sentence_table) for p in parts])[:-1]]
                                               ).astype(np.int64) if parts else np.zeros(0, np.int64)
        self._article_starts = np.concatenate([[0], np.cumsum([p.articles for p in parts])]).astype(np.int64)
        self._scorer = bm25.Scorer([bm25.Part(p.segment.postings, p.live, p.ranks, int(base), p.bm25_documents,
                                              p.bm25_length) for p, base in zip(parts, self._starts)])
        self._articles_cache: dict[tuple[int, int], Article] = {}
        self._dense = dense(self) if dense else None  # last: a searcher may read the index it is given
        self._keyword = keyword(self) if keyword else None

    def __len__(self) -> int:
        return self._size

    # --- articles, chunks, sentences

    @property
    def article_count(self) -> int:
        return int(self._article_starts[-1])

    @functools.cached_property
    def articles(self) -> "ArticleList":
        return ArticleList(self)

    def locate(self, article_ids: Sequence[str]) -> list[tuple[int, int] | None]:
        """(segment, article row) of each live article id, or None: binary searches, nothing parsed."""
        keys = id_keys(list(article_ids))
        found: list[tuple[int, int] | None] = [None] * len(keys)
        for number, part in enumerate(self.parts):
            rows = part.segment.find(keys)
            for i in np.flatnonzero(rows >= 0).tolist():
                if found[i] is None and part.is_alive(int(rows[i])):
                    found[i] = (number, int(rows[i]))
        return found

    def __contains__(self, article_id) -> bool:
        return isinstance(article_id, str) and self.locate([article_id])[0] is not None

    def article(self, article_id: str) -> Article:
        place = self.locate([article_id])[0] if isinstance(article_id, str) else None
        if place is None:
            raise KeyError(article_id)
        return self._article(*place)

    def articles_under(self, prefix: str, limit: int) -> list[Article]:
        """Up to ``limit`` live articles whose id starts with ``prefix`` (e.g. the uploads), in index order."""
        found = []
        for number, part in enumerate(self.parts):
            found += [self._article(number, int(row)) for row in part.rows_under(prefix)[:limit - len(found)]]
        return found

    def article_hashes(self) -> dict[str, str]:
        """Content hash of every live article, by id (reads every catalog: for checks, not updates)."""
        hashes = {}
        for part in self.parts:
            ids, digests = part.segment.catalog
            hashes.update((ids[row], digests[row]) for row in part.alive_rows.tolist())
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
        live_rows = self.parts[number].live_rows
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

    def search(self, query_vector: np.ndarray, top_k: int) -> Ranked:
        """Dense search: at most ``top_k`` chunk rows and their cosines, best first."""
        searcher = self._searchable(self._dense)
        top_k = min(top_k, self._size)
        if top_k <= 0:
            return Ranked.empty()
        return searcher.search(np.ascontiguousarray(query_vector, dtype=np.float32), top_k)

    def exact_search(self, query_vectors: np.ndarray, top_k: int) -> np.ndarray:
        """(q, top_k) chunk rows by exact inner product over the stored vectors (recall checks)."""
        best_scores = np.full((len(query_vectors), 0), -np.inf, np.float32)
        best_rows = np.zeros((len(query_vectors), 0), np.int64)
        for number, segment in enumerate(self.segments):
            for at in range(0, len(segment), 65536):
                scores = query_vectors @ np.asarray(segment.vectors[at:at + 65536], np.float32).T
                rows = self.global_rows(number, np.arange(at, at + scores.shape[1]))
                scores[:, rows < 0] = -np.inf
                best_scores = np.concatenate([best_scores, scores], axis=1)
                best_rows = np.concatenate([best_rows, np.broadcast_to(rows, scores.shape)], axis=1)
                keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :top_k]
                best_scores = np.take_along_axis(best_scores, keep, 1)
                best_rows = np.take_along_axis(best_rows, keep, 1)
        return best_rows

    def bm25_search(self, query_terms: list[str], top_k: int) -> Ranked:
        """Keyword search: at most ``top_k`` chunk rows with a positive BM25 score, best first."""
        searcher = self._searchable(self._keyword)
        if not query_terms or self._size == 0:
            return Ranked.empty()
        return searcher.search(query_terms, top_k)

    def _searchable(self, searcher):
        """``searcher``, or a `StoreError` for an index opened for its texts only."""
        if searcher is None:
            raise StoreError(f"the index at {self.path} was opened for its texts only and cannot be searched")
        return searcher

    def bm25_scores(self, query_terms: list[str]) -> np.ndarray:
        """BM25 score of every chunk row, from the local postings."""
        return self._scorer.scores(query_terms, self._size)

    def lexical_coverage(self, query_terms: list[str]) -> float:
        """Share of the query's terms that occur in at least one live chunk."""
        return self._scorer.coverage(query_terms)

    def global_rows(self, number: int, local_rows: np.ndarray) -> np.ndarray:
        """Global rows of a segment's local chunk rows (-1 for a dead chunk)."""
        ranks = self.parts[number].ranks
        if ranks is None:
            return int(self._starts[number]) + local_rows
        ranked = ranks[local_rows]
        return np.where(ranked >= 0, int(self._starts[number]) + ranked, -1)

    def rows_for_keys(self, keys: np.ndarray) -> np.ndarray:
        """Global rows of chunk keys (-1 for a key that is not live in this version)."""
        rows = np.full(len(keys), -1, np.int64)
        for number, segment in enumerate(self.segments):
            order = segment.key_order
            at = np.minimum(np.searchsorted(segment.keys[order], keys), len(segment) - 1)
            found = (segment.keys[order[at]] == keys) & (rows < 0)
            rows[found] = self.global_rows(number, order[at[found]])
        return rows


class ArticleList(Sequence):
    """The live articles of an index, read from disk when asked for."""

    def __init__(self, index: Index):
        self._index = index

    def __len__(self) -> int:
        return self._index.article_count

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        if item < 0:
            item += len(self)
        if not 0 <= item < len(self):
            raise IndexError(item)
        starts = self._index._article_starts
        number = int(np.searchsorted(starts, item, side="right")) - 1
        return self._index._article(number, int(self._index.parts[number].alive_rows[item - int(starts[number])]))


def _search_parameters(config: StoreConfig, selector):
    import faiss

    if selector is None:
        return None
    if config.index == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=config.hnsw_ef_search)
    if config.index == "ivf":
        return faiss.SearchParametersIVF(sel=selector, nprobe=config.ivf_nprobe)
    return faiss.SearchParameters(sel=selector)
