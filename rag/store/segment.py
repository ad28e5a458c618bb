"""One immutable segment of an index: its arrays as written (`SegmentData`), written once to a
folder of its own, and opened again memory-mapped (`Segment`); and the FAISS index it carries."""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag import bm25
from rag.arabic import terms
from rag.config import StoreConfig
from rag.errors import StoreError
from rag.types import Article, Chunk, Sentence


@dataclass(frozen=True)
class Prepared:
    """An article chunked and embedded, ready to be written into a segment."""

    article: Article
    hash: str
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray  # (len(chunks), dim) float32
    terms: tuple[list[str], ...] | None = None  # `rag.arabic.terms` of each chunk, if already made elsewhere


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
        self._load = load

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
    def _lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sorted id keys, their rows, content hash by row, first sentence row of each article)."""
        return (self._load("id_keys.npy"), self._load("id_rows.npy"), self._load("content_hashes.npy"),
                self._load("article_sentences.npy"))

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The article row of each id key (`id_keys`), or -1: a binary search, nothing parsed."""
        sorted_keys, rows = self._lookup[:2]
        if not len(sorted_keys):
            return np.full(len(keys), -1, np.int64)
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        return np.where(sorted_keys[at] == keys, rows[at], -1).astype(np.int64)

    def content_hash(self, row: int) -> str:
        return self._lookup[2][row].decode("ascii")

    def sentence_counts(self, rows: np.ndarray) -> np.ndarray:
        """How many sentences each of these articles has."""
        starts = self._lookup[3]
        return np.asarray(starts[rows + 1]) - np.asarray(starts[rows])

    @functools.cached_property
    def key_order(self) -> np.ndarray:
        """Rows by ascending key (a merge may interleave key ranges)."""
        return np.argsort(np.asarray(self.keys), kind="stable")

    def live_chunks(self, alive_articles: np.ndarray | None) -> np.ndarray | None:
        """Chunk mask of the live articles' chunks (None: all live)."""
        if alive_articles is None:
            return None
        return np.repeat(alive_articles, np.diff(np.asarray(self.article_chunks)))


def id_keys(ids: list[str]) -> np.ndarray:
    """The uint64 key of each article id (a 64-bit BLAKE2b hash, as for BM25 terms)."""
    return bm25.term_keys(ids)


def _load_array(folder: Path, name: str) -> np.ndarray:
    return np.load(folder / name, mmap_mode="r")


def _read_faiss(path: Path):
    import faiss

    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)  # flat codes stay on disk, paged in by search


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


def segment_data(prepared: list[Prepared], first_key: int) -> SegmentData:
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


def merged_data(sources: list[tuple[Segment, np.ndarray]]) -> SegmentData:
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


def write_segment(index_dir: Path, data: SegmentData, store: StoreConfig) -> Segment:
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
        keys = id_keys(data.ids)
        order = np.argsort(keys, kind="stable")
        article_sentences = np.searchsorted(data.sentence_table[:, 0], np.arange(len(data.ids) + 1)).astype(np.int64)
        for file, array in (("id_keys", keys[order]), ("id_rows", order.astype(np.int64)),
                            ("content_hashes", np.array(data.hashes, "S16").reshape(-1)),
                            ("article_sentences", article_sentences),
                            ("article_chunks", data.article_chunks), ("chunks", data.chunk_table),
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


def _unique_sentences(chunks: list[Chunk]) -> list[Sentence]:
    """Each sentence of an article once, in order (overlapping chunks share sentences)."""
    seen = {}
    for chunk in chunks:
        for sentence in chunk.sentences:
            seen.setdefault((sentence.start, sentence.end), sentence)
    return sorted(seen.values(), key=lambda s: s.start)


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
    tune(index, config)
    return index


def tune(index, config: StoreConfig) -> None:
    if config.index == "hnsw":
        index.hnsw.efSearch = config.hnsw_ef_search
    elif config.index == "ivf":
        index.nprobe = config.ivf_nprobe
