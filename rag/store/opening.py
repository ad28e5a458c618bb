"""Opening a version: the check that it agrees with the manifest the caller expects (naming what
differs), the segments and tombstones loaded into an `Index`, and the searchers its store settings
choose handed to it."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from rag.config import StoreConfig
from rag.errors import IndexMismatchError, StoreError
from rag.store.index import Index, LiveSegment
from rag.store.search import BM25Searcher, DenseFactory, FaissSearcher, KeywordFactory
from rag.store.segment import Segment, tune
from rag.store.versions import TABLES, clean, read_manifest

FORMAT_VERSION = 3  # 2: segments and tombstones, no sentence vectors; 3: id lookups, shared tables


def open_index(index_dir: Path, expected: dict) -> Index:
    """Open ``index_dir/current``; raise `IndexMismatchError` if it was built differently from
    ``expected`` (the manifest the caller would write: `rag.indexing.manifest_for`)."""
    index_dir = Path(index_dir)
    clean(index_dir)
    for attempt in range(3):  # a writer may switch versions and remove the old one while we read
        version, manifest = read_manifest(index_dir)
        reason = mismatch(manifest, expected)
        if reason:
            raise IndexMismatchError(reason)
        try:
            return load_version(index_dir, version, manifest)
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
    """The current version's corpus files: {path: [size, mtime_ns, [article ids]]}, or {}. Read from
    its parts, oldest first, a later part's entry replacing an earlier one (None: the file is gone)."""
    try:
        version, manifest = read_manifest(Path(index_dir))
        parts = manifest.get("files")
        if not isinstance(parts, list):  # format 2: one files.json in the version folder
            table = json.loads((version / "files.json").read_text(encoding="utf-8"))
            return table if isinstance(table, dict) else {}
        table = {}
        for part in parts:
            table.update(read_files_part(Path(index_dir), part["name"]))
    except (StoreError, OSError, ValueError, KeyError, TypeError):
        return {}
    return {path: entry for path, entry in table.items() if entry is not None}


def files_entry(index_dir: Path, path: str) -> list | None:
    """One file's entry in the current files table (the newest part that names it), or None."""
    try:
        _, manifest = read_manifest(Path(index_dir))
        for part in reversed(manifest.get("files") or []):
            table = read_files_part(Path(index_dir), part["name"])
            if path in table:
                return table[path]
    except (StoreError, OSError, ValueError, KeyError, TypeError):
        pass
    return None


def read_files_part(index_dir: Path, name: str) -> dict:
    """One part of the files table (parsed once per process: a part never changes; do not modify it)."""
    return _parsed_part(str(Path(index_dir).resolve() / TABLES / name))


@functools.lru_cache(maxsize=32)
def _parsed_part(path: str) -> dict:
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(table, dict):
        raise ValueError(f"{path} is not a table")
    return table


def load_version(index_dir: Path, version: Path, manifest: dict, search: bool = True, reuse: Index | None = None) -> Index:
    """Open a version's segments and tombstones; those ``reuse`` (an open version) already has
    (same segment, same tombstones) are taken from it, not read again. Without ``search``, only its
    texts and tables are opened (no FAISS index, no Milvus) and it cannot be searched."""
    try:
        store = StoreConfig(**manifest["store"])
        faiss = search and store.backend == "faiss"
        known = {(part.segment.name, part.dead_name): part for part in (reuse.parts if reuse else [])}
        tables = index_dir / TABLES if manifest.get("format_version", 0) >= 3 else version
        parts = []
        for entry in manifest["segments"]:
            part = known.get((entry["name"], entry.get("dead")))
            if part is None:
                segment = Segment(index_dir / "segments" / entry["name"], faiss)
                if faiss:
                    tune(segment.faiss_index, store)
                dead = np.load(tables / entry["dead"]) if entry.get("dead") else None
                part = LiveSegment(segment, entry.get("dead"), dead, store)
            parts.append(part)
        if not search:
            return Index(version, manifest, parts)
        return Index(version, manifest, parts, dense=_dense_searcher(store, index_dir),
                     keyword=_keyword_searcher(store, index_dir))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise StoreError(f"the index at {index_dir} is damaged ({exc}); delete the folder to rebuild it") from exc


def _dense_searcher(store: StoreConfig, index_dir: Path) -> DenseFactory:
    """``store.backend``: the segments' FAISS indexes, or the Milvus collection."""
    if store.backend == "milvus":
        from rag.milvus import MilvusDenseSearcher

        return functools.partial(MilvusDenseSearcher, index_dir=index_dir)
    return FaissSearcher


def _keyword_searcher(store: StoreConfig, index_dir: Path) -> KeywordFactory:
    """``store.keyword``: BM25 over the segments' postings, or Milvus's BM25 over the same terms."""
    if store.keyword == "milvus":
        from rag.milvus import MilvusKeywordSearcher

        return functools.partial(MilvusKeywordSearcher, index_dir=index_dir)
    return BM25Searcher
