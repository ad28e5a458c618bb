"""The index on disk: FAISS over chunk vectors, BM25, the chunk/sentence tables and a manifest.

Layout of an index folder::

    index_dir/
      current -> v-<id>/        symlink swapped atomically after every write
      v-<id>/manifest.json      model id + weight fingerprint, settings, article hashes
              articles.jsonl    the exact article texts (citations slice these)
              chunks.npy        (n, 5) int64: article row, start, end, first sentence, end sentence
              sentences.npy     (m, 3) int64: article row, start, end
              chunk_vectors.npy, sentence_vectors.npy, faiss.index, bm25/

A new version is written to a temporary folder and made ``current`` with one
``rename``, so a crash or a bad file never leaves a half-written index. An index
built with another model or other chunk settings is detected from its manifest
and rebuilt; adding, changing or deleting an article re-embeds only that article.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rag import __version__
from rag.arabic import terms
from rag.chunking import chunk_article
from rag.config import SanadConfig, StoreConfig
from rag.errors import IndexMismatchError, StoreError
from rag.ingest import content_hash
from rag.reader import reader_fingerprint
from rag.types import Article, Chunk, Sentence

FORMAT_VERSION = 1
EMBED_SLICE = 512  # texts per encode call: large enough for length-sorted batches, small enough to show progress
Progress = Callable[[int, int, str], None]  # (done, total, what)


@dataclass(frozen=True)
class UpdateReport:
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    rebuilt_because: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # (file, reason) for each file left out of the index


class Index:
    """An opened, read-only index version. Chunks are materialized on demand."""

    def __init__(self, path: Path, manifest: dict, articles: list[Article], chunk_table: np.ndarray,
                 sentence_table: np.ndarray, chunk_vectors: np.ndarray, sentence_vectors: np.ndarray,
                 faiss_index, bm25):
        self.path = path
        self.manifest = manifest
        self.articles = articles
        self.article_rows = {article.id: row for row, article in enumerate(articles)}
        self.chunk_table = chunk_table
        self.sentence_table = sentence_table
        self.chunk_vectors = chunk_vectors
        self.sentence_vectors = sentence_vectors
        self.faiss_index = faiss_index
        self.bm25 = bm25

    def __len__(self) -> int:
        return len(self.chunk_table)

    def article(self, article_id: str) -> Article:
        return self.articles[self.article_rows[article_id]]

    def chunk(self, row: int) -> Chunk:
        article_row, start, end, first, stop = (int(v) for v in self.chunk_table[row])
        article = self.articles[article_row]
        sentences = tuple(self.sentence(i) for i in range(first, stop))
        return Chunk(row, article.id, start, end, article.text[start:end], sentences)

    def sentence(self, row: int) -> Sentence:
        article_row, start, end = (int(v) for v in self.sentence_table[row])
        article = self.articles[article_row]
        return Sentence(article.id, start, end, article.text[start:end])

    def sentence_rows(self, chunk_row: int) -> range:
        return range(int(self.chunk_table[chunk_row, 3]), int(self.chunk_table[chunk_row, 4]))

    def search(self, query_vector: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense search: (scores, chunk rows), best first, at most ``top_k``."""
        top_k = min(top_k, len(self))
        if top_k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, rows = self.faiss_index.search(np.ascontiguousarray(query_vector[None, :], dtype=np.float32), top_k)
        keep = rows[0] >= 0
        return scores[0][keep], rows[0][keep]


# --- opening ------------------------------------------------------------------------

def manifest_for(config: SanadConfig, model_id: str, fingerprint: str, dim: int) -> dict:
    """What an index must agree with to be reused (articles are compared separately)."""
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
    current = Path(index_dir) / "current"
    if not current.exists():
        raise StoreError(f"no index at {index_dir}; build it with `sanad index`")
    try:
        manifest = json.loads((current / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"the index at {index_dir} is unreadable ({exc}); delete the folder to rebuild it") from exc
    if not isinstance(manifest, dict):
        raise StoreError(f"the index at {index_dir} has a damaged manifest; delete the folder to rebuild it")
    reason = mismatch(manifest, expected)
    if reason:
        raise IndexMismatchError(reason)
    return _load_version(current.resolve(), manifest)


def mismatch(manifest: dict, expected: dict) -> str | None:
    """A sentence saying why a saved index cannot be used as it is, or None."""
    for key in ("format_version", "embedding_model", "embedding_fingerprint", "dim", "chunking", "store", "answer_model"):
        if manifest.get(key) != expected.get(key):
            return f"the index was built with {key}={manifest.get(key)!r}, now {expected.get(key)!r}"
    return None


def _load_version(path: Path, manifest: dict) -> Index:
    import faiss

    try:
        with open(path / "articles.jsonl", encoding="utf-8") as handle:
            articles = [Article(**{k: v for k, v in json.loads(line).items() if k != "hash"}) for line in handle]
        chunk_table = np.load(path / "chunks.npy")
        sentence_table = np.load(path / "sentences.npy")
        chunk_vectors = np.load(path / "chunk_vectors.npy", mmap_mode="r")
        sentence_vectors = np.load(path / "sentence_vectors.npy", mmap_mode="r")
        faiss_index = faiss.read_index(str(path / "faiss.index"))
        _tune(faiss_index, StoreConfig(**manifest["store"]))
        bm25 = _load_bm25(path / "bm25")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise StoreError(f"the index at {path.parent} is damaged ({exc}); delete the folder to rebuild it") from exc
    return Index(path, manifest, articles, chunk_table, sentence_table, chunk_vectors, sentence_vectors, faiss_index, bm25)


# --- building -----------------------------------------------------------------------

def update_index(index_dir: Path, articles: list[Article], embedder, config: SanadConfig,
                 progress: Progress | None = None) -> tuple[Index, UpdateReport]:
    """Bring the index in line with ``articles``, embedding only what is new or changed."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    expected = manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)
    with _locked(index_dir):
        _remove_leftovers(index_dir)
        old, rebuilt_because = None, None
        try:
            old = open_index(index_dir, expected)
        except IndexMismatchError as exc:
            rebuilt_because = str(exc)
            print(f"Rebuilding the index: {exc}.", file=sys.stderr)
        except StoreError as exc:
            if (index_dir / "current").exists():
                rebuilt_because = str(exc)
                print(f"Rebuilding the index: {exc}.", file=sys.stderr)
        old_hashes = old.manifest["articles"] if old else {}
        hashes = {article.id: content_hash(article) for article in articles}
        if len(hashes) != len(articles):
            raise StoreError("two articles share an id; give every file a distinct path")
        report = UpdateReport(
            added=sum(1 for a in hashes if a not in old_hashes),
            changed=sum(1 for a, h in hashes.items() if a in old_hashes and old_hashes[a] != h),
            removed=sum(1 for a in old_hashes if a not in hashes),
            unchanged=sum(1 for a, h in hashes.items() if old_hashes.get(a) == h),
            rebuilt_because=rebuilt_because,
        )
        if old is not None and report.added == report.changed == report.removed == 0:
            return old, report
        tables = _assemble(articles, hashes, old, embedder, config, progress)
        manifest = {**expected, "articles": hashes, "sanad_version": __version__,
                    "chunks": len(tables[0]), "sentences": len(tables[1])}
        path = _write_version(index_dir, manifest, articles, *tables, config.store)
        _prune(index_dir, keep=path.name)
    return _load_version(path, manifest), report


def _assemble(articles, hashes, old: Index | None, embedder, config: SanadConfig, progress):
    """Chunk tables and vectors for all articles: reused rows for unchanged ones, new for the rest."""
    old_hashes = old.manifest["articles"] if old else {}
    fresh = [a for a in articles if old_hashes.get(a.id) != hashes[a.id]]
    fresh_chunks = {a.id: chunk_article(a, config.chunk) for a in fresh}
    sentence_texts = [s.text for a in fresh for s in _unique_sentences(fresh_chunks[a.id])]
    chunk_texts = [c.text for a in fresh for c in fresh_chunks[a.id]]
    total = len(chunk_texts) + len(sentence_texts)
    if progress:
        progress(0, total, "embedding")
    new_vectors = _embed(embedder, chunk_texts + sentence_texts, progress)  # one length sort for both
    new_chunk_vectors, new_sentence_vectors = new_vectors[:len(chunk_texts)], new_vectors[len(chunk_texts):]

    chunk_rows, sentence_rows, chunk_vectors, sentence_vectors = [], [], [], []
    fresh_chunk_at = fresh_sentence_at = 0
    for article_row, article in enumerate(articles):
        sentence_base = sum(len(r) for r in sentence_rows)
        if article.id in fresh_chunks:
            chunks = fresh_chunks[article.id]
            sentences = _unique_sentences(chunks)
            position = {(s.start, s.end): i for i, s in enumerate(sentences)}
            sentence_rows.append(np.array([[article_row, s.start, s.end] for s in sentences], np.int64).reshape(-1, 3))
            chunk_rows.append(np.array([[article_row, c.start, c.end,
                                         sentence_base + position[(c.sentences[0].start, c.sentences[0].end)],
                                         sentence_base + position[(c.sentences[-1].start, c.sentences[-1].end)] + 1]
                                        for c in chunks], np.int64).reshape(-1, 5))
            chunk_vectors.append(new_chunk_vectors[fresh_chunk_at:fresh_chunk_at + len(chunks)])
            sentence_vectors.append(new_sentence_vectors[fresh_sentence_at:fresh_sentence_at + len(sentences)])
            fresh_chunk_at += len(chunks)
            fresh_sentence_at += len(sentences)
        else:  # unchanged: copy its rows from the old version, renumbered
            old_row = old.article_rows[article.id]
            chunk_mask = old.chunk_table[:, 0] == old_row
            sentence_mask = old.sentence_table[:, 0] == old_row
            old_first_sentence = int(np.argmax(sentence_mask)) if sentence_mask.any() else 0
            rows = old.chunk_table[chunk_mask].copy()
            rows[:, 0] = article_row
            rows[:, 3:] += sentence_base - old_first_sentence
            sentences = old.sentence_table[sentence_mask].copy()
            sentences[:, 0] = article_row
            chunk_rows.append(rows)
            sentence_rows.append(sentences)
            chunk_vectors.append(np.asarray(old.chunk_vectors[chunk_mask], np.float32))
            sentence_vectors.append(np.asarray(old.sentence_vectors[sentence_mask], np.float16))
    dim = embedder.dim
    return (np.concatenate(chunk_rows) if chunk_rows else np.zeros((0, 5), np.int64),
            np.concatenate(sentence_rows) if sentence_rows else np.zeros((0, 3), np.int64),
            np.concatenate(chunk_vectors).astype(np.float32) if chunk_vectors else np.zeros((0, dim), np.float32),
            np.concatenate(sentence_vectors).astype(np.float16) if sentence_vectors else np.zeros((0, dim), np.float16))


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


def build_bm25(chunk_texts: list[str]):
    import bm25s

    bm25 = bm25s.BM25()
    bm25.index([terms(text) or [""] for text in chunk_texts] or [[""]], show_progress=False)
    return bm25


def _load_bm25(path: Path):
    import bm25s

    return bm25s.BM25.load(str(path), load_vocab=True, show_progress=False)


def _write_version(index_dir: Path, manifest, articles, chunk_table, sentence_table,
                   chunk_vectors, sentence_vectors, store_config: StoreConfig) -> Path:
    import faiss

    name = f"v-{uuid.uuid4().hex[:12]}"
    temporary = index_dir / f".tmp-{name}"
    try:
        temporary.mkdir()
        (temporary / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        with open(temporary / "articles.jsonl", "w", encoding="utf-8") as handle:
            for article in articles:
                handle.write(json.dumps(dataclasses.asdict(article), ensure_ascii=False) + "\n")
        np.save(temporary / "chunks.npy", chunk_table)
        np.save(temporary / "sentences.npy", sentence_table)
        np.save(temporary / "chunk_vectors.npy", chunk_vectors)
        np.save(temporary / "sentence_vectors.npy", sentence_vectors)
        faiss.write_index(build_faiss(chunk_vectors, store_config), str(temporary / "faiss.index"))
        chunk_texts = [articles[row].text[start:end] for row, start, end in chunk_table[:, :3].tolist()]
        build_bm25(chunk_texts).save(str(temporary / "bm25"), show_progress=False)
        final = index_dir / name
        os.rename(temporary, final)
        link = index_dir / f".link-{name}"
        os.symlink(name, link)
        os.replace(link, index_dir / "current")  # the atomic switch
    except (OSError, RuntimeError) as exc:  # faiss reports I/O failures as RuntimeError
        shutil.rmtree(temporary, ignore_errors=True)
        raise StoreError(f"cannot write the index to {index_dir}: {exc}") from exc
    return final


def _prune(index_dir: Path, keep: str) -> None:
    """Delete versions other than ``keep`` and leftovers of interrupted writes."""
    for entry in index_dir.iterdir():
        if entry.name != keep and (entry.name.startswith("v-") or entry.name.startswith(".tmp-")):
            shutil.rmtree(entry, ignore_errors=True)


def _remove_leftovers(index_dir: Path) -> None:
    """Folders a killed writer left behind (``.tmp-*``, a ``v-*`` never made current, ``.link-*``)."""
    current = index_dir / "current"
    keep = os.readlink(current) if current.is_symlink() else None
    for entry in index_dir.iterdir():
        if entry.name.startswith(".link-"):
            entry.unlink(missing_ok=True)
    _prune(index_dir, keep=keep)


@contextlib.contextmanager
def _locked(index_dir: Path):
    """One writer at a time per index folder, across processes."""
    with open(index_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
