"""store.backend = "milvus": real Milvus Lite (a file in the index folder) gives FAISS's retrieval.

One seeds index is built per module with the Milvus backend and Milvus's BM25 (``store.keyword =
"milvus"``, ~10 s); the comparison runs over the first questions of the seed gold set, hybrid
retrieval as `ChatBot.retrieve` does it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from eval import SEEDS_GOLD
from rag.arabic import terms
from rag.chatbot import ChatBot
from rag.config import load_config
from rag.errors import ConfigError
from rag.indexing import manifest_for, update_index
from rag.milvus import client
from rag.store import open_index
from rag.store.opening import load_version
from rag.store.versions import read_manifest


@pytest.fixture(scope="module")
def milvus_config(config):
    return config.replace(store={"backend": "milvus", "keyword": "milvus"})


@pytest.fixture(scope="module")
def milvus_bot(milvus_config, seeds_dir, tmp_path_factory):
    return ChatBot.from_dir(seeds_dir, config=milvus_config, index_dir=tmp_path_factory.mktemp("milvus") / "index")


@pytest.fixture(scope="module")
def gold_questions() -> list[str]:
    lines = SEEDS_GOLD.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:40]


@pytest.mark.service
def test_the_collection_lives_in_a_lite_file_in_the_index_folder(milvus_bot):
    assert (milvus_bot.index_dir / "milvus.db").exists()
    assert milvus_bot.index.manifest["milvus_collection"].startswith("sanad_")
    assert not any((segment.path / "faiss.index").exists() for segment in milvus_bot.index.segments)


@pytest.mark.service
def test_milvus_retrieves_what_faiss_retrieves(milvus_bot, seeds_bot, gold_questions):
    vectors = seeds_bot.embedder.encode_queries(gold_questions)
    for question, vector in zip(gold_questions, vectors):
        for mode in ("dense", "bm25", "hybrid"):
            served = [hit.chunk for hit in milvus_bot.retrieve(question, top_k=5, mode=mode, query_vector=vector)]
            local = [hit.chunk for hit in seeds_bot.retrieve(question, top_k=5, mode=mode, query_vector=vector)]
            assert served == local, (mode, question)


@pytest.mark.service
def test_updates_reach_milvus_and_a_reopened_index_searches_it(milvus_bot, milvus_config, seeds_articles, embedder,
                                                               tmp_path):
    index_dir = tmp_path / "index"
    kept = [a for a in seeds_articles if a.id != "004_d287910d6ae0b8d5.txt"]
    update_index(index_dir, seeds_articles, embedder, milvus_config)
    index, report = update_index(index_dir, kept, embedder, milvus_config)
    assert report.removed == 1
    reopened = open_index(index_dir, manifest_for(milvus_config, embedder.model_id, embedder.fingerprint, embedder.dim))
    vector = embedder.encode_queries(["كم عدد الجنود الكوريين الشماليين في كورسك؟"])[0]
    rows = reopened.search(vector, len(reopened)).rows
    assert len(rows) == len(reopened) == len(index)  # every live chunk once, none of the deleted article's
    assert {reopened.chunk(int(r)).article_id for r in rows} == {a.id for a in kept}
    rows = client(str(index_dir / "milvus.db")).query(reopened.manifest["milvus_collection"], filter="key >= 0",
                                                      output_fields=["count(*)"])
    assert rows[0]["count(*)"] == len(reopened)  # the deleted article's rows are gone from Milvus too


@pytest.mark.service
def test_bm25_stays_local_unless_milvus_is_chosen_for_it(milvus_bot, seeds_bot, gold_questions):
    version, manifest = read_manifest(milvus_bot.index_dir)
    local = load_version(milvus_bot.index_dir, version, {**manifest, "store": {**manifest["store"], "keyword": "local"}})
    vectors = seeds_bot.embedder.encode_queries(gold_questions[:10])
    for question, vector in zip(gold_questions, vectors):
        query_terms = terms(question)
        assert local.bm25_search(query_terms, 30).pairs() == seeds_bot.index.bm25_search(query_terms, 30).pairs()
        assert local.search(vector, 5).pairs() == milvus_bot.index.search(vector, 5).pairs()  # dense: still Milvus
    query_terms = terms(gold_questions[0])
    served, own = milvus_bot.index.bm25_search(query_terms, 5), local.bm25_search(query_terms, 5)
    assert len(served) and not np.allclose(served.scores, own.scores)  # Milvus scores on its own scale


def test_milvus_keyword_search_needs_the_milvus_backend():
    with pytest.raises(ConfigError, match="store.keyword 'milvus' needs store.backend 'milvus'.*'faiss'"):
        load_config(env={"SANAD_STORE_KEYWORD": "milvus"})
    assert load_config(env={"SANAD_STORE_BACKEND": "milvus"}).store.keyword == "local"


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="store.backend must be one of faiss, milvus"):
        load_config(env={"SANAD_STORE_BACKEND": "elastic"})


def test_milvus_uri_is_read_from_the_environment():
    assert load_config(env={"SANAD_MILVUS_URI": "http://milvus:19530"}).store.milvus_uri == "http://milvus:19530"
