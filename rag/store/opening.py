"""Opening a version: the manifest an index must agree with (model, settings, reader), the check
that names what differs, and the segments and tombstones loaded into an `Index`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from rag.config import SanadConfig, StoreConfig
from rag.errors import IndexMismatchError, StoreError
from rag.reader import reader_fingerprint
from rag.store.index import Index
from rag.store.segment import Segment, tune
from rag.store.versions import clean, read_manifest

FORMAT_VERSION = 2  # 2: segments and tombstones, no sentence vectors


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
    """The current version's corpus files: {path: [size, mtime_ns, [article ids]]}, or {}."""
    try:
        version = (Path(index_dir) / "current").resolve(strict=True)
        table = json.loads((version / "files.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def load_version(index_dir: Path, version: Path, manifest: dict, search: bool = True) -> Index:
    try:
        store = StoreConfig(**manifest["store"])
        dense = search and store.backend == "faiss"
        segments = [Segment(index_dir / "segments" / entry["name"], dense) for entry in manifest["segments"]]
        dead = [np.load(version / entry["dead"]) if entry.get("dead") else None for entry in manifest["segments"]]
        index = Index(version, manifest, segments, dead, searcher=None if dense else _NoSearch())
        for segment in segments if dense else []:
            tune(segment.faiss_index, store)
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
