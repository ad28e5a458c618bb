"""The Milvus backend (``store.backend = "milvus"``): dense search served by Milvus, and BM25 keyword
search too with ``store.keyword = "milvus"`` (by default Sanad's own BM25 over the segments answers it).

Milvus Lite (a local file, run inside this process) by default and in the tests; the same code
talks to a Milvus server or cluster when ``store.milvus_uri`` (``SANAD_MILVUS_URI``) names one.
The index folder keeps what citations need (article texts, chunk and sentence tables, the
manifest); Milvus holds one row per chunk: its stable key, its vector, and its normalized,
stemmed terms (`rag.arabic.terms`, the text Sanad's own BM25 reads) from which Milvus's BM25
function makes a sparse vector. The two result lists are fused by `rag.retrieve` as for FAISS.

Crash safety: a new segment's rows are inserted before the version switch, under keys from the
manifest's ``next_key`` on, and searches only ask for keys below the open version's
``next_key``, so an interrupted update's rows are never seen; the next update deletes them.
Deleted chunks are deleted from Milvus after the switch, and again before a merge drops them.

llama-index's ``MilvusVectorStore`` is not used: it keys nodes by string ids and stores each
node's text and metadata as JSON, while this backend needs integer keys that survive segment
merges, deletes by key, a keyword field holding Sanad's stemmed terms rather than the raw text,
and the two lists back separately for Sanad's weighted fusion (its hybrid mode fuses inside Milvus).
"""
from __future__ import annotations

import contextlib
import functools
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.config import StoreConfig
from rag.errors import StoreError
from rag.store.search import Ranked

if TYPE_CHECKING:
    from rag.store.index import Index

BATCH = 1000  # rows per insert call
SLACK = 16  # results asked for beyond top_k: room for deleted rows an interrupted update left in Milvus
MAX_TERMS_BYTES = 65535  # Milvus VARCHAR limit
# Milvus's BM25 with the constants of Sanad's own (`rag.bm25`, bm25s "lucene")
BM25_PARAMS = {"bm25_k1": 1.5, "bm25_b": 0.75}


def uri_for(index_dir: Path, store: StoreConfig) -> str:
    return store.milvus_uri or str(Path(index_dir) / "milvus.db")


@functools.lru_cache(maxsize=8)
def client(uri: str):
    """One client per URI per process (Milvus Lite serves one file from one process)."""
    try:
        from pymilvus import MilvusClient

        return MilvusClient(uri)
    except ImportError as exc:
        raise StoreError("store.backend is 'milvus' but pymilvus is not installed: pip install pymilvus milvus-lite") from exc
    except Exception as exc:  # connection refused, a bad URI, a locked Lite file
        raise StoreError(f"cannot connect to Milvus at {uri}: {exc}") from exc


def _dense_index(store: StoreConfig) -> tuple[str, dict, dict]:
    """(index type, build params, search params) matching the FAISS kind of ``store.index``."""
    if store.index == "hnsw":
        return "HNSW", {"M": store.hnsw_m, "efConstruction": max(40, 2 * store.hnsw_m)}, {"ef": store.hnsw_ef_search}
    if store.index == "ivf":
        return "IVF_FLAT", {"nlist": store.ivf_nlist or 1024}, {"nprobe": store.ivf_nprobe}
    return "FLAT", {}, {}


class MilvusWriter:
    """Inserts and deletes the chunk rows of one index's collection."""

    def __init__(self, index_dir: Path, old_manifest: dict | None, store: StoreConfig, dim: int):
        self.client = client(uri_for(index_dir, store))
        self.store = store
        try:
            if old_manifest and self.client.has_collection(old_manifest.get("milvus_collection", "")):
                self.collection = old_manifest["milvus_collection"]
                self.client.delete(self.collection, filter=f"key >= {int(old_manifest['next_key'])}")
            else:
                self._drop_previous(index_dir)
                self.collection = f"sanad_{uuid.uuid4().hex[:16]}"
                self._create(dim)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Milvus failed: {exc}") from exc

    def _drop_previous(self, index_dir: Path) -> None:
        """A rebuild replaces the collection the current version names, if it can still be read."""
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            manifest = json.loads(((Path(index_dir) / "current").resolve() / "manifest.json").read_text("utf-8"))
            name = manifest.get("milvus_collection")
            if name and self.client.has_collection(name):
                self.client.drop_collection(name)

    def _create(self, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType

        schema = self.client.create_schema(auto_id=False)
        schema.add_field("key", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        # Milvus Lite offers the "standard" and "jieba" tokenizers only; the terms are already
        # normalized, stemmed words separated by spaces, which "standard" splits back as they are.
        schema.add_field("terms", DataType.VARCHAR, max_length=MAX_TERMS_BYTES, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                     output_field_names=["sparse"]))
        params = self.client.prepare_index_params()
        kind, build, _ = _dense_index(self.store)
        params.add_index("vector", index_type=kind, metric_type="IP", params=build)
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=BM25_PARAMS)
        self.client.create_collection(self.collection, schema=schema, index_params=params, consistency_level="Strong")

    def insert(self, keys: np.ndarray, vectors: np.ndarray, chunk_terms: list[list[str]]) -> None:
        try:
            for at in range(0, len(keys), BATCH):
                rows = [{"key": int(key), "vector": vector.tolist(), "terms": _terms_text(words)}
                        for key, vector, words in zip(keys[at:at + BATCH], vectors[at:at + BATCH],
                                                      chunk_terms[at:at + BATCH])]
                self.client.insert(self.collection, rows)
        except Exception as exc:
            raise StoreError(f"cannot insert into Milvus collection {self.collection}: {exc}") from exc

    def delete(self, keys: np.ndarray) -> None:
        try:
            for at in range(0, len(keys), BATCH):
                self.client.delete(self.collection, ids=[int(k) for k in keys[at:at + BATCH]])
        except Exception as exc:
            raise StoreError(f"cannot delete from Milvus collection {self.collection}: {exc}") from exc


def _terms_text(words: list[str]) -> str:
    text = " ".join(words)
    data = text.encode("utf-8")
    return text if len(data) <= MAX_TERMS_BYTES else data[:MAX_TERMS_BYTES].decode("utf-8", "ignore")


class MilvusSearcher:
    """One open version's rows of its collection: searches ask only for the version's own keys and
    map them to its chunk rows. `MilvusDenseSearcher` and `MilvusKeywordSearcher` search one field each."""

    field = ""

    def __init__(self, index: Index, index_dir: Path):
        self.index = index
        self.client = client(uri_for(index_dir, index.store))
        self.collection = index.manifest.get("milvus_collection")
        if not self.collection or not self.client.has_collection(self.collection):
            raise StoreError(f"the Milvus collection of the index at {index_dir} is missing; delete the folder to rebuild it")
        self.client.load_collection(self.collection)
        self.filter = f"key < {int(index.manifest['next_key'])}"  # rows of a newer or unfinished update

    def _query(self, data, params: dict, top_k: int) -> Ranked:
        try:
            result = self.client.search(self.collection, data=[data], anns_field=self.field, filter=self.filter,
                                        limit=min(top_k + SLACK, 16384), search_params={"params": params},
                                        output_fields=[])
        except Exception as exc:
            raise StoreError(f"Milvus search failed: {exc}") from exc
        hits = result[0]
        rows = self.index.rows_for_keys(np.array([hit["key"] for hit in hits], np.int64))
        scores = np.array([hit["distance"] for hit in hits], np.float32)
        live = rows >= 0
        return Ranked(rows[live][:top_k], scores[live][:top_k])


class MilvusDenseSearcher(MilvusSearcher):
    """`rag.store.search.DenseSearcher` over the collection's vectors."""

    field = "vector"

    def search(self, query_vector: np.ndarray, top_k: int) -> Ranked:
        return self._query(query_vector.tolist(), _dense_index(self.index.store)[2], top_k)


class MilvusKeywordSearcher(MilvusSearcher):
    """`rag.store.search.KeywordSearcher` through Milvus's BM25 function over the collection's terms."""

    field = "sparse"

    def search(self, query_terms: list[str], top_k: int) -> Ranked:
        ranked = self._query(_terms_text(query_terms), {}, top_k)
        # Milvus Lite reports BM25 as a negated distance; the order is best first either way
        return Ranked(ranked.rows, np.abs(ranked.scores))
