"""Indexing: articles chunked and embedded with the model, and the manifest an index must agree with
(model, chunk and store settings, reader), handed to the store (`rag.store`), which keeps what it
is given. `rag.chatbot`, `rag.ray_index` (whose ``prepare`` runs on Ray) and eval call this."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import numpy as np

from rag import store
from rag.chunking import chunk_article
from rag.config import SanadConfig
from rag.hashing import content_hash
from rag.progress import Progress
from rag.reader import reader_fingerprint, reader_folder
from rag.types import Article

EMBED_SLICE = 512  # texts per encode call: large enough for length-sorted batches, small enough to show progress


def manifest_for(config: SanadConfig, model_id: str, fingerprint: str, dim: int) -> dict:
    """What an index must agree with to be reused: every key here is compared by `rag.store.mismatch`."""
    return {
        "format_version": store.FORMAT_VERSION,
        "embedding_model": model_id,
        "embedding_fingerprint": fingerprint,
        "dim": dim,
        "chunking": dataclasses.asdict(config.chunk),
        "store": dataclasses.asdict(config.store),
        "answer_model": reader_fingerprint(reader_folder(config.answer.reader)),  # the reader decides how long a chunk it can read
    }


def update_index(index_dir: Path, articles: list[Article], embedder, config: SanadConfig,
                 progress: Progress | None = None, *, unchanged: Iterable[str] = (), files: dict | None = None,
                 prepare: store.Prepare | None = None, index: store.Index | None = None
                 ) -> tuple[store.Index, store.UpdateReport]:
    """`rag.store.update_index` for this model and config: new and changed articles are chunked and
    embedded here, or by ``prepare`` (e.g. on Ray)."""
    expected = manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)
    return store.update_index(index_dir, articles, expected, prepare or _preparer(embedder, config, progress),
                              unchanged=unchanged, files=files, index=index)


def apply_change(index_dir: Path, change: store.Change, embedder, config: SanadConfig,
                 progress: Progress | None = None, *, index: store.Index | None = None,
                 prepare: store.Prepare | None = None) -> tuple[store.Index, store.UpdateReport]:
    """`rag.store.apply_change` for this model and config (an upload, a removal)."""
    expected = manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)
    return store.apply_change(index_dir, change, expected, prepare or _preparer(embedder, config, progress),
                              index=index)


def _preparer(embedder, config: SanadConfig, progress: Progress | None) -> store.Prepare:
    return lambda articles: prepare_articles(articles, embedder, config, progress)


def prepare_articles(articles: list[Article], embedder, config: SanadConfig,
                     progress: Progress | None = None) -> list[store.Prepared]:
    """Chunk and embed articles in this process (one length sort over all their chunks)."""
    chunked = [(article, chunk_article(article, config.chunk)) for article in articles]
    texts = [chunk.text for _, chunks in chunked for chunk in chunks]
    if progress:
        progress(0, len(texts), "embedding")
    vectors = embed_texts(embedder, texts, progress)
    prepared, at = [], 0
    for article, chunks in chunked:
        prepared.append(store.Prepared(article, content_hash(article), tuple(chunks), vectors[at:at + len(chunks)]))
        at += len(chunks)
    return prepared


def embed_texts(embedder, texts: list[str], progress: Progress | None) -> np.ndarray:
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
