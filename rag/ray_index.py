"""``sanad index DIR --ray [ADDRESS]``: read, chunk and embed on Ray Data; the store is written here.

The files that changed since the last update (as `rag.ingest.scan_corpus` decides) are read by
Ray tasks, their new or changed articles chunked (and stemmed for BM25) by a ``flat_map`` with
Sanad's own chunker, and
the chunks, sorted by length (longest first, so a batch pads little), embedded by a pool of
actors that each hold one `Embedder`. The driver then writes the segment through
`rag.indexing.update_index` (its ``prepare`` hook), so the index is the single-process one: the same
chunk table, and vectors equal within bfloat16 rounding. On a cluster the workers need Sanad
installed and the corpus folder mounted at the same path.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from rag.arabic import terms
from rag.chunking import chunk_article
from rag.config import SanadConfig
from rag.errors import ConfigError
from rag.hashing import content_hash
from rag.indexing import EMBED_SLICE
from rag.ingest import read_files
from rag.store import Prepared
from rag.types import Article, Chunk, Sentence


class RayIndexer:
    """The ``read`` and ``prepare`` hooks of `rag.chatbot.ChatBot`, run on a Ray cluster."""

    def __init__(self, config: SanadConfig, address: str | None = None, num_cpus: int | None = None,
                 actors: int | None = None, cpus_per_actor: int = 1):
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--ray needs Ray Data: pip install 'ray[data]'") from exc
        self.config = config
        if not ray.is_initialized():
            local = {"num_cpus": num_cpus or len(os.sched_getaffinity(0)), "object_store_memory": 1 << 30} \
                if not address else {}
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}}, **local)
        self.cpus_per_actor = cpus_per_actor
        self.actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // (cpus_per_actor + 1))
        self.last_embedding = {}  # chunks, seconds, and seconds the actors spent encoding, of the last pass

    def read(self, paths: list[Path], root: Path) -> list[list[Article] | str]:
        import ray

        if not paths:
            return []
        rows = ray.data.from_items([{"at": i, "path": str(p), "root": str(root)} for i, p in enumerate(paths)])
        done = rows.map(_read_row).take_all()
        by_position = {row["at"]: row["error"] or [Article(**a) for a in json.loads(row["articles"])] for row in done}
        return [by_position[i] for i in range(len(paths))]

    def prepare(self, articles: list[Article]) -> list[Prepared]:
        import ray

        chunk_config = dataclasses.asdict(self.config.chunk)
        rows = ray.data.from_items([{"at": i, "article": json.dumps(dataclasses.asdict(a), ensure_ascii=False),
                                     "chunk_config": json.dumps(chunk_config)} for i, a in enumerate(articles)])
        chunks = rows.flat_map(_chunk_rows).sort("length", descending=True)
        started = time.perf_counter()
        embedded = chunks.map_batches(_Embed, fn_constructor_kwargs={"config": self.config},
                                      batch_size=EMBED_SLICE, concurrency=self.actors,
                                      num_cpus=self.cpus_per_actor).take_all()
        self.last_embedding = {"chunks": len(embedded), "seconds": time.perf_counter() - started,
                               "actor_seconds": float(sum(row["encode_s"] for row in embedded)), "actors": self.actors}
        by_article: dict[int, list[dict]] = {}
        for row in embedded:
            by_article.setdefault(int(row["at"]), []).append(row)
        prepared = []
        for i, article in enumerate(articles):
            parts = sorted(by_article.get(i, []), key=lambda row: int(row["position"]))
            chunks = tuple(_chunk(article, row) for row in parts)
            vectors = np.array([row["vector"] for row in parts], np.float32).reshape(len(parts), -1)
            prepared.append(Prepared(article, content_hash(article), chunks, vectors,
                                     tuple(json.loads(row["terms"]) for row in parts)))
        return prepared


def _read_row(row: dict) -> dict:
    """One file's articles, or the reason it cannot be read (as `rag.ingest.read_files` gives it)."""
    (found,) = read_files([Path(row["path"])], Path(row["root"]))
    if isinstance(found, str):
        return {"at": row["at"], "articles": "", "error": found}
    return {"at": row["at"], "articles": json.dumps([dataclasses.asdict(a) for a in found], ensure_ascii=False),
            "error": ""}


def _chunk_rows(row: dict) -> list[dict]:
    from rag.config import ChunkConfig

    article = Article(**json.loads(row["article"]))
    chunks = chunk_article(article, ChunkConfig(**json.loads(row["chunk_config"])))
    return [{"at": row["at"], "position": j, "text": chunk.text, "length": len(chunk.text), "start": chunk.start,
             "end": chunk.end, "sentences": json.dumps([[s.start, s.end] for s in chunk.sentences]),
             "terms": json.dumps(terms(chunk.text), ensure_ascii=False)}  # BM25's stemming, done on the workers too
            for j, chunk in enumerate(chunks)]


def _chunk(article: Article, row: dict) -> Chunk:
    start, end = int(row["start"]), int(row["end"])
    sentences = tuple(Sentence(article.id, s, e, article.text[s:e]) for s, e in json.loads(row["sentences"]))
    return Chunk(int(row["position"]), article.id, start, end, article.text[start:end], sentences)


class _Embed:
    """A Ray actor holding the model: passage vectors for a batch of chunk texts."""

    def __init__(self, config: SanadConfig):
        from rag.embeddings import Embedder

        self.embedder = Embedder(config.embed, config.cache_dir)

    def __call__(self, batch: dict) -> dict:
        started = time.perf_counter()
        batch["vector"] = self.embedder.encode_passages([str(text) for text in batch["text"]])
        batch["encode_s"] = np.full(len(batch["text"]), (time.perf_counter() - started) / len(batch["text"]))
        return batch
