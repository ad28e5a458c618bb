"""The index on disk: immutable segments, tombstones, and one small manifest per version.

Layout of an index folder::

    index_dir/
      current -> v-<id>/             symlink swapped atomically, once per update
      v-<id>/manifest.json           model id + fingerprint, settings, the segment list, counts
             dead-<segment>.npy      tombstones: the deleted article rows of that segment
             files.json              size, mtime and article ids per corpus file (unchanged files are not re-read)
      segments/<segment>/            written once, never changed (all arrays memory-mapped when opened):
             articles.jsonl, article_offsets.npy   exact article texts, one JSON line each (citations slice these)
             catalog.json            article ids and content hashes
             article_chunks.npy      (a + 1,) first chunk row of each article
             chunks.npy              (n, 5) int64: article row, start, end, first sentence, end sentence
             sentences.npy           (m, 3) int64: article row, start, end
             vectors.npy, keys.npy   chunk vectors (float32); chunk keys, stable across merges (Milvus ids)
             bm25_*.npy              BM25 postings (`rag.bm25`)
             faiss.index             the segment's FAISS index (backend "faiss")
      .lock, .tmp-*                  the writers' lock; leftovers of an interrupted write

An update writes one new segment with the added and changed articles, marks the deleted and
changed ones dead in their old segments, merges segments when `MERGE_FACTOR` of one size tier
have piled up (or a segment is mostly dead), writes a new version folder and switches ``current``
to it with one rename. Its cost grows with what changed, not with the corpus. A crash at any
point leaves the old version or the new one as ``current``; leftovers are removed on the next
open or update. A reader keeps the version it opened (its files stay mapped even once removed).
An index built with another model or other settings is detected from its manifest and rebuilt.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import math
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rag import __version__, bm25
from rag.arabic import terms
from rag.chunking import chunk_article
from rag.config import SanadConfig, StoreConfig
from rag.errors import IndexMismatchError, StoreError
from rag.ingest import content_hash
from rag.reader import reader_fingerprint
from rag.types import Article, Chunk, Sentence

FORMAT_VERSION = 2  # 2: segments and tombstones, no sentence vectors
EMBED_SLICE = 512  # texts per encode call: large enough for length-sorted batches, small enough to show progress
MERGE_FACTOR = 8  # this many segments of one size tier are merged into one
TIER_CHUNKS = 1024  # segments under this many chunks share the smallest tier
EXPUNGE_SHARE = 0.3  # a segment with this share of dead chunks is rewritten without them
Progress = Callable[[int, int, str], None]  # (done, total, what)


@dataclass(frozen=True)
class UpdateReport:
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    rebuilt_because: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # (file, reason) for each file left out of the index
    merged: int = 0  # segments merged into others by this update


@dataclass(frozen=True)
class Prepared:
    """An article chunked and embedded, ready to be written into a segment."""

    article: Article
    hash: str
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray  # (len(chunks), dim) float32
    terms: tuple[list[str], ...] | None = None  # `rag.arabic.terms` of each chunk, if already made elsewhere


# --- one segment ------------------------------------------------------------------------

class Segment:
    """One immutable part of an index, memory-mapped; rows are local to the segment."""

    def __init__(self, path: Path, dense: bool = False):
        load = functools.partial(_load_array, path)
        self.path, self.name = path, path.name
        self.chunk_table, self.sentence_table = load("chunks.npy"), load("sentences.npy")
        self.article_chunks, self.article_offsets = load("article_chunks.npy"), load("article_offsets.npy")
        self.vectors, self.keys = load("vectors.npy"), load("keys.npy")
        self.postings = bm25.Postings.load(path)
        self._texts = np.memmap(path / "articles.jsonl", np.uint8, mode="r")
        self._catalog = (path / "catalog.json").read_bytes()  # parsed when first needed
        self.faiss_index = _read_faiss(path / "faiss.index") if dense else None

    def __len__(self) -> int:
        return len(self.chunk_table)

    @property
    def article_count(self) -> int:
        return len(self.article_offsets) - 1

    def article(self, row: int) -> Article:
        record = json.loads(bytes(self._texts[self.article_offsets[row]:self.article_offsets[row + 1]]))
        return Article(**record)

    def article_line(self, row: int) -> bytes:
        return bytes(self._texts[self.article_offsets[row]:self.article_offsets[row + 1]])

    @functools.cached_property
    def catalog(self) -> tuple[list[str], list[str]]:
        """(article ids, content hashes), by article row."""
        data = json.loads(self._catalog)
        return data["ids"], data["hashes"]

    @functools.cached_property
    def key_order(self) -> np.ndarray:
        """Rows by ascending key (a merge may interleave key ranges)."""
        return np.argsort(np.asarray(self.keys), kind="stable")

    def live_chunks(self, alive_articles: np.ndarray | None) -> np.ndarray | None:
        """Chunk mask of the live articles' chunks (None: all live)."""
        if alive_articles is None:
            return None
        return np.repeat(alive_articles, np.diff(np.asarray(self.article_chunks)))


def _load_array(folder: Path, name: str) -> np.ndarray:
    return np.load(folder / name, mmap_mode="r")


def _read_faiss(path: Path):
    import faiss

    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)  # flat codes stay on disk, paged in by search


# --- an opened version ------------------------------------------------------------------------

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


# --- opening ------------------------------------------------------------------------

def manifest_for(config: SanadConfig, model_id: str, fingerprint: str, dim: int) -> dict:
    """What an index must agree with to be reused: every key here is compared by `mismatch`."""
    return {
        "format_version": FORMAT_VERSION,
        "embedding_model": model_id,
        "embedding_fingerprint": fingerprint,
        "dim": dim,
        "chunking": dataclasses.asdict(config.chunk),
        "store": dataclasses.asdict(config.store),
        "answer_model": reader_fingerprint(),  # the reader decides how long a chunk it can read
    }


def open_index(index_dir: Path, expected: dict) -> Index:
    """Open ``index_dir/current``; raise `IndexMismatchError` if it was built differently."""
    index_dir = Path(index_dir)
    clean(index_dir)
    for attempt in range(3):  # a writer may switch versions and remove the old one while we read
        version, manifest = _read_manifest(index_dir)
        reason = mismatch(manifest, expected)
        if reason:
            raise IndexMismatchError(reason)
        try:
            return _load(index_dir, version, manifest)
        except FileNotFoundError:
            if attempt == 2:
                raise StoreError(f"the index at {index_dir} keeps changing while being opened; try again") from None


def mismatch(manifest: dict, expected: dict) -> str | None:
    """A sentence saying why a saved index cannot be used as it is, or None."""
    for key in expected:
        if manifest.get(key) != expected[key]:
            return f"the index was built with {key}={manifest.get(key)!r}, now {expected[key]!r}"
    return None


def files_table(index_dir: Path) -> dict:
    """The current version's corpus files: {path: [size, mtime_ns, [article ids]]}, or {}."""
    try:
        version = (Path(index_dir) / "current").resolve(strict=True)
        table = json.loads((version / "files.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def _read_manifest(index_dir: Path) -> tuple[Path, dict]:
    current = index_dir / "current"
    if not current.exists():
        raise StoreError(f"no index at {index_dir}; build it with `sanad index`")
    try:
        version = current.resolve(strict=True)
        manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"the index at {index_dir} is unreadable ({exc}); delete the folder to rebuild it") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("segments", []), list):
        raise StoreError(f"the index at {index_dir} has a damaged manifest; delete the folder to rebuild it")
    return version, manifest


def _load(index_dir: Path, version: Path, manifest: dict, search: bool = True) -> Index:
    try:
        store = StoreConfig(**manifest["store"])
        dense = search and store.backend == "faiss"
        segments = [Segment(index_dir / "segments" / entry["name"], dense) for entry in manifest["segments"]]
        dead = [np.load(version / entry["dead"]) if entry.get("dead") else None for entry in manifest["segments"]]
        index = Index(version, manifest, segments, dead, searcher=None if dense else _NoSearch())
        for segment in segments if dense else []:
            _tune(segment.faiss_index, store)
        if search and not dense:
            from rag.milvus import MilvusSearcher

            index._searcher = MilvusSearcher(index, index_dir)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise StoreError(f"the index at {index_dir} is damaged ({exc}); delete the folder to rebuild it") from exc
    return index


class _NoSearch:
    def search(self, query, top_k):
        raise StoreError("this index was opened for its texts only")

    keyword = search


# --- building -----------------------------------------------------------------------

def prepare_articles(articles: list[Article], embedder, config: SanadConfig, progress: Progress | None = None) -> list[Prepared]:
    """Chunk and embed articles in this process (one length sort over all their chunks)."""
    chunked = [(article, chunk_article(article, config.chunk)) for article in articles]
    texts = [chunk.text for _, chunks in chunked for chunk in chunks]
    if progress:
        progress(0, len(texts), "embedding")
    vectors = _embed(embedder, texts, progress)
    prepared, at = [], 0
    for article, chunks in chunked:
        prepared.append(Prepared(article, content_hash(article), tuple(chunks), vectors[at:at + len(chunks)]))
        at += len(chunks)
    return prepared


def update_index(index_dir: Path, articles: list[Article], embedder, config: SanadConfig,
                 progress: Progress | None = None, *, unchanged: Iterable[str] = (), files: dict | None = None,
                 prepare: Callable | None = None) -> tuple[Index, UpdateReport]:
    """Bring the index in line with ``articles`` plus the ``unchanged`` ones, embedding only what is
    new or changed. ``unchanged``: ids of indexed articles the caller knows did not change (their
    files' size and mtime are as recorded in ``files``), which are kept without being read.
    ``prepare(articles) -> list[Prepared]`` chunks and embeds elsewhere (e.g. on Ray)."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    expected = manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)
    prepare = prepare or (lambda fresh: prepare_articles(fresh, embedder, config, progress))
    with _locked(index_dir):
        _clean_locked(index_dir)
        old, rebuilt_because = None, None
        try:
            old = open_index(index_dir, expected)
        except IndexMismatchError as exc:
            rebuilt_because = str(exc)
        except StoreError as exc:
            if (index_dir / "current").exists() or (index_dir / "current").is_symlink():
                rebuilt_because = str(exc)
        if rebuilt_because:
            print(f"Rebuilding the index: {rebuilt_because}.", file=sys.stderr)
        unchanged = list(unchanged)
        live = old.article_hashes() if old else {}
        if unchanged and old is None:  # a rebuild: read what the caller did not, from the old version's texts
            articles = list(articles) + _texts_of(index_dir, unchanged)
            unchanged = []
        hashes = {article.id: content_hash(article) for article in articles}
        if len(hashes) != len(articles) or any(article_id in hashes for article_id in unchanged):
            raise StoreError("two articles share an id; give every file a distinct path")
        missing = [article_id for article_id in unchanged if article_id not in live]
        if missing:
            raise StoreError(f"{missing[0]} is not in the index at {index_dir}; run the update again")
        kept = set(unchanged) | {a for a, h in hashes.items() if live.get(a) == h}
        report = UpdateReport(
            added=sum(1 for a in hashes if a not in live),
            changed=sum(1 for a, h in hashes.items() if a in live and live[a] != h),
            removed=sum(1 for a in live if a not in hashes and a not in kept),
            unchanged=len(kept), rebuilt_because=rebuilt_because)
        fresh = [a for a in articles if a.id not in kept]
        if old is not None and not fresh and not report.removed and (files is None or files == files_table(index_dir)):
            return old, report
        dead_ids = {a for a in live if a not in kept}
        index, merged = _write_update(index_dir, old, expected, prepare(fresh) if fresh else [], dead_ids, files,
                                      config.store)
    return index, dataclasses.replace(report, merged=merged)


def _texts_of(index_dir: Path, article_ids: list[str]) -> list[Article]:
    """Articles read back from the current version's segments, whatever its settings."""
    try:
        version, manifest = _read_manifest(index_dir)
        stored = _load(index_dir, version, manifest, search=False)
        return [stored.article(article_id) for article_id in article_ids]
    except (StoreError, KeyError, OSError, ValueError) as exc:
        raise StoreError(f"the index at {index_dir} must be rebuilt but its texts cannot be read ({exc}); "
                         "delete the folder and index again") from exc


def _write_update(index_dir: Path, old: Index | None, expected: dict, prepared: list[Prepared],
                  dead_ids: set[str], files: dict | None, store: StoreConfig) -> tuple[Index, int]:
    """New segment, tombstones, merges, then the version switch; the old files are removed last."""
    milvus = None
    if store.backend == "milvus":
        from rag.milvus import MilvusWriter

        milvus = MilvusWriter(index_dir, old.manifest if old else None, store, expected["dim"])
    pairs: list[tuple[Segment, np.ndarray]] = []  # (segment, which of its articles are alive)
    newly_dead_keys = [np.zeros(0, np.int64)]
    for number, segment in enumerate(old.segments if old else []):
        alive = np.ones(segment.article_count, bool) if old._alive[number] is None else old._alive[number].copy()
        ids = segment.catalog[0]
        for row in np.flatnonzero(alive).tolist():
            if ids[row] in dead_ids:
                alive[row] = False
                newly_dead_keys.append(np.asarray(segment.keys[segment.article_chunks[row]:segment.article_chunks[row + 1]]))
        pairs.append((segment, alive))
    next_key = old.manifest["next_key"] if old else 0
    if prepared:
        data = _segment_data(prepared, next_key)
        next_key += len(data.keys)
        if milvus:
            milvus.insert(data.keys, data.vectors, data.chunk_terms)
        pairs.append((_write_segment(index_dir, data, store), np.ones(len(prepared), bool)))
    merged, replaced = 0, {}
    for group in plan_merges([(len(s), int(s.live_chunks(alive).sum())) for s, alive in pairs]):
        sources = [pairs[i] for i in group]
        if milvus:  # the merge drops dead chunks for good: make sure Milvus has them deleted too
            milvus.delete(np.concatenate([np.asarray(s.keys)[~s.live_chunks(alive)] for s, alive in sources]))
        replaced.update((i, None) for i in group)
        if any(alive.any() for _, alive in sources):
            segment = _write_segment(index_dir, _merged_data(sources), store)
            replaced[group[0]] = (segment, np.ones(segment.article_count, bool))
        merged += len(group)
    pairs = [replaced.get(i, pair) if i in replaced else pair for i, pair in enumerate(pairs)]
    entries, dead_arrays = [], {}
    for segment, alive in (pair for pair in pairs if pair is not None and pair[1].any()):
        entry = {"name": segment.name, "dead": None, "chunks": int(segment.live_chunks(alive).sum()),
                 "sentences": int(alive[np.asarray(segment.sentence_table[:, 0])].sum()), "articles": int(alive.sum())}
        if not alive.all():
            entry["dead"] = f"dead-{segment.name}.npy"
            dead_arrays[entry["dead"]] = np.flatnonzero(~alive)
        entries.append(entry)
    manifest = {**expected, "sanad_version": __version__, "segments": entries, "next_key": next_key,
                "chunks": sum(e["chunks"] for e in entries), "sentences": sum(e["sentences"] for e in entries),
                "articles": sum(e["articles"] for e in entries)}
    if milvus:
        manifest["milvus_collection"] = milvus.collection
    version = _write_version(index_dir, manifest, dead_arrays, files)
    if milvus:
        milvus.delete(np.concatenate(newly_dead_keys))
    _prune(index_dir, version, manifest)
    return _load(index_dir, version, manifest), merged


def plan_merges(sizes: list[tuple[int, int]]) -> list[list[int]]:
    """Groups of segment positions to merge, given (chunks, live chunks) per segment: any segment
    mostly dead on its own, and `MERGE_FACTOR` segments of one size tier (tier t holds segments of
    ``TIER_CHUNKS * MERGE_FACTOR**(t-1)`` chunks and up) into one. So there are at most
    ``MERGE_FACTOR - 1`` segments per tier, a logarithmic number in all, and each chunk is
    rewritten once per tier it climbs."""
    groups, taken = [], set()
    for i, (chunks, live) in enumerate(sizes):
        if chunks and live < (1 - EXPUNGE_SHARE) * chunks:
            groups.append([i])
            taken.add(i)
    tiers: dict[int, list[int]] = {}
    for i, (_, live) in enumerate(sizes):
        if i not in taken:
            tier = 0 if live < TIER_CHUNKS else 1 + int(math.log(live / TIER_CHUNKS, MERGE_FACTOR))
            tiers.setdefault(tier, []).append(i)
    for tier in sorted(tiers):
        members = tiers[tier]
        while len(members) >= MERGE_FACTOR:
            groups.append(members[:MERGE_FACTOR])
            members = members[MERGE_FACTOR:]
    return groups


# --- segment files ------------------------------------------------------------------------

@dataclass
class SegmentData:
    """The arrays of one segment before they are written."""

    lines: list[bytes]  # one JSON line per article
    ids: list[str]
    hashes: list[str]
    article_chunks: np.ndarray
    chunk_table: np.ndarray
    sentence_table: np.ndarray
    vectors: np.ndarray
    keys: np.ndarray
    postings: bm25.Postings
    chunk_terms: list[list[str]] | None = None  # for Milvus's keyword field (new segments only)


def _segment_data(prepared: list[Prepared], first_key: int) -> SegmentData:
    chunk_rows, sentence_rows, counts = [], [], []
    for article_row, item in enumerate(prepared):
        sentences = _unique_sentences(list(item.chunks))
        position = {(s.start, s.end): i + len(sentence_rows) for i, s in enumerate(sentences)}
        sentence_rows += [(article_row, s.start, s.end) for s in sentences]
        chunk_rows += [(article_row, c.start, c.end, position[(c.sentences[0].start, c.sentences[0].end)],
                        position[(c.sentences[-1].start, c.sentences[-1].end)] + 1) for c in item.chunks]
        counts.append(len(item.chunks))
    chunk_terms = [words for item in prepared
                   for words in (item.terms if item.terms is not None else [terms(c.text) for c in item.chunks])]
    vectors = [np.asarray(item.vectors, np.float32) for item in prepared]
    dim = vectors[0].shape[1] if vectors else 0
    return SegmentData(
        lines=[json.dumps(dataclasses.asdict(item.article), ensure_ascii=False).encode("utf-8") + b"\n"
               for item in prepared],
        ids=[item.article.id for item in prepared], hashes=[item.hash for item in prepared],
        article_chunks=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        chunk_table=np.array(chunk_rows, np.int64).reshape(-1, 5),
        sentence_table=np.array(sentence_rows, np.int64).reshape(-1, 3),
        vectors=np.concatenate(vectors).reshape(-1, dim),
        keys=first_key + np.arange(len(chunk_rows), dtype=np.int64),
        postings=bm25.build(chunk_terms), chunk_terms=chunk_terms)


def _merged_data(sources: list[tuple[Segment, np.ndarray]]) -> SegmentData:
    """One segment's arrays from the live articles of several (vectorized: no per-chunk Python)."""
    lines, ids, hashes, counts, chunk_parts, sentence_parts, vectors, keys, postings = [], [], [], [], [], [], [], [], []
    article_base = sentence_base = 0
    for segment, alive in sources:
        live_chunks = np.flatnonzero(segment.live_chunks(alive))
        table = np.asarray(segment.sentence_table)
        live_sentences = np.flatnonzero(alive[table[:, 0]]) if len(table) else np.zeros(0, np.int64)
        article_map = np.full(segment.article_count, -1, np.int64)
        article_map[alive] = article_base + np.arange(int(alive.sum()))
        sentence_map = np.full(len(table) + 1, -1, np.int64)
        sentence_map[live_sentences] = sentence_base + np.arange(len(live_sentences))
        chunks = np.asarray(segment.chunk_table)[live_chunks].copy()
        chunks[:, 3] = sentence_map[chunks[:, 3]]
        chunks[:, 4] = sentence_map[chunks[:, 4] - 1] + 1
        chunks[:, 0] = article_map[chunks[:, 0]]
        sentences = table[live_sentences].copy()
        sentences[:, 0] = article_map[sentences[:, 0]]
        chunk_parts.append(chunks)
        sentence_parts.append(sentences)
        vectors.append(np.asarray(segment.vectors[live_chunks], np.float32))
        keys.append(np.asarray(segment.keys)[live_chunks])
        postings.append((segment.postings, live_chunks))
        segment_ids, segment_hashes = segment.catalog
        for row in np.flatnonzero(alive).tolist():
            lines.append(segment.article_line(row))
            ids.append(segment_ids[row])
            hashes.append(segment_hashes[row])
        counts.append(np.diff(np.asarray(segment.article_chunks))[alive])
        article_base += int(alive.sum())
        sentence_base += len(live_sentences)
    return SegmentData(lines, ids, hashes, np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64),
                       np.concatenate(chunk_parts), np.concatenate(sentence_parts), np.concatenate(vectors),
                       np.concatenate(keys), bm25.merge(postings))


def _write_segment(index_dir: Path, data: SegmentData, store: StoreConfig) -> Segment:
    import faiss

    name = f"s-{uuid.uuid4().hex[:12]}"
    temporary = index_dir / f".tmp-{name}"
    try:
        temporary.mkdir()
        with open(temporary / "articles.jsonl", "wb") as handle:
            for line in data.lines:
                handle.write(line)
        np.save(temporary / "article_offsets.npy", np.concatenate([[0], np.cumsum([len(x) for x in data.lines])]).astype(np.int64))
        (temporary / "catalog.json").write_text(json.dumps({"ids": data.ids, "hashes": data.hashes}, ensure_ascii=False),
                                                encoding="utf-8")
        for file, array in (("article_chunks", data.article_chunks), ("chunks", data.chunk_table),
                            ("sentences", data.sentence_table), ("vectors", data.vectors), ("keys", data.keys)):
            np.save(temporary / f"{file}.npy", array)
        data.postings.save(temporary)
        if store.backend == "faiss":
            faiss.write_index(build_faiss(data.vectors, store), str(temporary / "faiss.index"))
        (index_dir / "segments").mkdir(exist_ok=True)
        final = index_dir / "segments" / name
        os.rename(temporary, final)
    except (OSError, RuntimeError) as exc:  # faiss reports I/O failures as RuntimeError
        shutil.rmtree(temporary, ignore_errors=True)
        raise StoreError(f"cannot write the index to {index_dir}: {exc}") from exc
    return Segment(final, dense=False)


def _write_version(index_dir: Path, manifest: dict, dead_arrays: dict, files: dict | None) -> Path:
    name = f"v-{uuid.uuid4().hex[:12]}"
    temporary = index_dir / f".tmp-{name}"
    try:
        temporary.mkdir()
        for file, rows in dead_arrays.items():
            np.save(temporary / file, rows.astype(np.int64))
        if files is not None:
            (temporary / "files.json").write_text(json.dumps(files, ensure_ascii=False), encoding="utf-8")
        (temporary / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        final = index_dir / name
        os.rename(temporary, final)
        link = index_dir / f".tmp-link-{name}"
        os.symlink(name, link)
        os.replace(link, index_dir / "current")  # the atomic switch
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(index_dir / f".tmp-link-{name}")
        raise StoreError(f"cannot write the index to {index_dir}: {exc}") from exc
    return final


def _unique_sentences(chunks: list[Chunk]) -> list[Sentence]:
    """Each sentence of an article once, in order (overlapping chunks share sentences)."""
    seen = {}
    for chunk in chunks:
        for sentence in chunk.sentences:
            seen.setdefault((sentence.start, sentence.end), sentence)
    return sorted(seen.values(), key=lambda s: s.start)


def _embed(embedder, texts: list[str], progress) -> np.ndarray:
    """Embed in slices so the progress bar moves. All texts are sorted by length first (longest
    first, as sentence-transformers sorts within one call), so the batches of every slice pad little."""
    if not texts:
        return np.zeros((0, embedder.dim), np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    vectors = np.empty((len(texts), embedder.dim), np.float32)
    for at in range(0, len(texts), EMBED_SLICE):
        rows = order[at:at + EMBED_SLICE]
        vectors[rows] = embedder.encode_passages([texts[i] for i in rows])
        if progress:
            progress(min(at + EMBED_SLICE, len(texts)), len(texts), "embedding")
    return vectors


def build_faiss(vectors: np.ndarray, config: StoreConfig):
    """Exact inner product by default; HNSW or IVF for large corpora (approximate)."""
    import faiss

    dim = vectors.shape[1]
    if config.index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * config.hnsw_m)
    elif config.index == "ivf":
        nlist = config.ivf_nlist or max(1, int(4 * np.sqrt(len(vectors))))
        nlist = max(1, min(nlist, len(vectors) // 39 or 1))  # FAISS wants ~39 points per centroid
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if len(vectors):
            index.train(vectors)
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _tune(index, config)
    return index


def _tune(index, config: StoreConfig) -> None:
    if config.index == "hnsw":
        index.hnsw.efSearch = config.hnsw_ef_search
    elif config.index == "ivf":
        index.nprobe = config.ivf_nprobe


# --- housekeeping ---------------------------------------------------------------------------

def clean(index_dir: Path) -> None:
    """Remove what interrupted writes left behind, unless a writer is at work right now."""
    lock = Path(index_dir) / ".lock"
    if not lock.exists():
        return
    with contextlib.suppress(OSError), open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            _clean_locked(Path(index_dir))
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clean_locked(index_dir: Path) -> None:
    try:
        version, manifest = _read_manifest(index_dir)
    except StoreError:
        version, manifest = None, None
    for entry in index_dir.iterdir():
        if entry.name.startswith((".tmp-", ".link-")):  # a write, or a switch, killed midway
            _remove(entry)
    if manifest is not None:
        _prune(index_dir, version, manifest)


def _prune(index_dir: Path, keep: Path, manifest: dict) -> None:
    """Delete versions other than ``keep`` and segments its manifest does not name."""
    names = {entry["name"] for entry in manifest.get("segments", []) if isinstance(entry, dict)}
    for entry in index_dir.iterdir():
        if entry.name.startswith("v-") and entry.name != keep.name:
            _remove(entry)
    segments = index_dir / "segments"
    if segments.is_dir():
        for entry in segments.iterdir():
            if entry.name not in names:
                _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def _locked(index_dir: Path):
    """One writer at a time per index folder, across processes."""
    with open(index_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
