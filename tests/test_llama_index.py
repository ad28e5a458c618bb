"""rag/llama_index.py: Sanad's retriever, query engine and reader inside llama-index, on real indexes.

The retriever and the query engine run over the session's seeds index (the real model, FAISS and
BM25); Documents go through `ChatBot.from_documents` into an index of their own. No answer wording
is asserted: quotes slice back into the article text, responses mirror `ChatBot.ask`.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re

import pytest
from llama_index.core import Document, SimpleDirectoryReader
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag.chatbot import ChatBot
from rag.config import REPO_ROOT
from rag.errors import ConfigError, CorpusError, QuestionError
from rag.ingest import read_corpus
from rag.llama_index import SanadQueryEngine, SanadReader, SanadRetriever, article_from_document

KURSK_AR = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
KURSK_EN = "How many North Korean troops are in Kursk?"
OFF_TOPIC = "What is the capital of Canada?"
LIBRARY = ("مكتبة الزيتون في طرابلس\n"
           "افتتحت بلدية طرابلس مكتبة الزيتون العامة التي تضم 4321 مخطوطة نادرة. "
           "وقال رئيس البلدية إن المكتبة ستفتح أبوابها يوميا للباحثين.\n")
LIBRARY_QUESTION = "كم مخطوطة تضم مكتبة الزيتون في طرابلس؟"
BRIDGE = ("جسر النهر الجديد في الموصل\n"
          "افتتحت محافظة نينوى جسرا جديدا على نهر دجلة بطول 640 مترا، بعد عامين من العمل.\n")


def library_documents() -> list[Document]:
    """Fresh Document objects (llama-index gives each a new random id_)."""
    return [
        Document(text=LIBRARY, metadata={"title": "مكتبة الزيتون", "date": "2026-11-20", "file_name": "library.txt",
                                         "url": "https://example.org/library", "publisher": "وكالة الأنباء"}),
        Document(text=BRIDGE, metadata={"file_name": "bridge.txt", "file_path": "/news/bridge.txt"}),
    ]


def assert_nodes_slice_back(index, nodes: list[NodeWithScore]) -> None:
    for item in nodes:
        node = item.node
        assert isinstance(node, TextNode)
        article = index.article(node.ref_doc_id)
        assert article.text[node.start_char_idx:node.end_char_idx] == node.text
        assert node.metadata["article_id"] == article.id
        assert (node.metadata["source"], node.metadata["title"], node.metadata["date"]) == \
            (article.source, article.title, article.date)


# --- retriever ---------------------------------------------------------------------------------


def test_retriever_returns_sanads_hits_as_nodes_with_article_offsets(seeds_bot):
    nodes = SanadRetriever(seeds_bot, top_k=4).retrieve(KURSK_AR)
    hits = seeds_bot.retrieve(KURSK_AR, top_k=4)
    assert [(n.node.ref_doc_id, n.node.start_char_idx, n.node.end_char_idx) for n in nodes] == \
        [(h.chunk.article_id, h.chunk.start, h.chunk.end) for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits])
    assert_nodes_slice_back(seeds_bot.index, nodes)
    assert len({n.node.node_id for n in nodes}) == len(nodes)


def test_retriever_modes_and_top_k(seeds_bot):
    bm25 = SanadRetriever(seeds_bot, top_k=2, mode="bm25").retrieve(KURSK_AR)
    assert [n.node.start_char_idx for n in bm25] == \
        [h.chunk.start for h in seeds_bot.retrieve(KURSK_AR, top_k=2, mode="bm25")]
    assert len(bm25) == 2
    assert len(SanadRetriever(seeds_bot).retrieve(KURSK_EN)) == seeds_bot.config.retrieve.top_k


def test_retriever_keeps_ids_out_of_the_text_an_llm_sees(seeds_bot):
    from llama_index.core.schema import MetadataMode

    node = SanadRetriever(seeds_bot, top_k=1).retrieve(KURSK_AR)[0].node
    seen = node.get_content(metadata_mode=MetadataMode.LLM)
    assert f"title: {node.metadata['title']}" in seen and node.text in seen
    assert "article_id:" not in seen and "date: None" not in seen


def test_aretrieve_matches_retrieve(seeds_bot):
    retriever = SanadRetriever(seeds_bot, top_k=3)
    sync_nodes = retriever.retrieve(KURSK_EN)
    async_nodes = asyncio.run(retriever.aretrieve(KURSK_EN))
    assert [(n.node.node_id, n.score) for n in async_nodes] == [(n.node.node_id, n.score) for n in sync_nodes]


def test_retriever_reports_to_its_callback_manager(seeds_bot):
    debug = LlamaDebugHandler()
    SanadRetriever(seeds_bot, top_k=2, callback_manager=CallbackManager([debug])).retrieve(KURSK_AR)
    [(_, end)] = debug.get_event_pairs(CBEventType.RETRIEVE)
    assert len(end.payload["nodes"]) == 2


def test_retriever_rejects_bad_settings_and_questions(seeds_bot):
    with pytest.raises(ConfigError, match="retrieval mode"):
        SanadRetriever(seeds_bot, mode="fuzzy")
    with pytest.raises(ConfigError, match="top_k"):
        SanadRetriever(seeds_bot, top_k=0)
    with pytest.raises(QuestionError):
        SanadRetriever(seeds_bot).retrieve("   ")


# --- query engine --------------------------------------------------------------------------------


@pytest.mark.parametrize("question", [KURSK_AR, KURSK_EN, OFF_TOPIC])
def test_query_engine_response_is_sanads_answer_with_its_citations(seeds_bot, question):
    response = SanadQueryEngine(seeds_bot).query(question)
    answer = seeds_bot.ask(question)
    assert isinstance(response, Response)
    assert response.response == answer.text == str(response)
    assert response.metadata == {key: value for key, value in answer.to_dict().items() if key != "citations"}
    assert isinstance(response.metadata["abstained"], bool)
    assert [(n.node.metadata["n"], n.node.text, n.node.start_char_idx, n.node.end_char_idx, n.node.metadata["related"])
            for n in response.source_nodes] == \
        [(c.n, c.quote, c.start, c.end, c.related) for c in answer.citations]
    assert_nodes_slice_back(seeds_bot.index, response.source_nodes)
    for node in response.source_nodes:
        if not node.node.metadata["related"]:
            assert f"[{node.node.metadata['n']}]" in response.response


def test_aquery_matches_query(seeds_bot):
    engine = SanadQueryEngine(seeds_bot)
    sync_response = engine.query(KURSK_AR)
    async_response = asyncio.run(engine.aquery(KURSK_AR))
    assert async_response.response == sync_response.response
    assert async_response.metadata == sync_response.metadata
    assert [n.node.node_id for n in async_response.source_nodes] == [n.node.node_id for n in sync_response.source_nodes]


def test_query_engine_passes_its_callback_manager_on(seeds_bot):
    debug = LlamaDebugHandler()
    engine = SanadQueryEngine(seeds_bot, top_k=2, callback_manager=CallbackManager([debug]))
    assert engine.retriever.callback_manager is engine.callback_manager
    response = engine.query(KURSK_AR)
    [(start, end)] = debug.get_event_pairs(CBEventType.QUERY)
    assert start.payload["query_str"] == KURSK_AR
    assert end.payload["response"] is response
    assert len(engine.retrieve(QueryBundle(KURSK_AR))) == 2
    assert len(debug.get_event_pairs(CBEventType.RETRIEVE)) == 1


def test_query_engine_rejects_bad_settings_and_questions(seeds_bot):
    with pytest.raises(ConfigError, match="answer mode"):
        SanadQueryEngine(seeds_bot, mode="creative")
    with pytest.raises(QuestionError):
        SanadQueryEngine(seeds_bot).query("؟؟")


# --- Documents in ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents_bot(config, embedder, tmp_path_factory) -> ChatBot:
    return ChatBot.from_documents(library_documents(), config=config,
                                  index_dir=tmp_path_factory.mktemp("documents") / "index")


def test_documents_round_trip_to_a_response_whose_offsets_slice_back(documents_bot):
    documents = library_documents()
    response = SanadQueryEngine(documents_bot).query(LIBRARY_QUESTION)
    assert response.source_nodes
    assert_nodes_slice_back(documents_bot.index, response.source_nodes)
    by_id = {article_from_document(d).id: d for d in documents}
    for node in response.source_nodes:
        document = by_id[node.node.ref_doc_id]
        assert document.text[node.node.start_char_idx:node.node.end_char_idx] == node.node.text


def test_document_metadata_becomes_article_fields(documents_bot):
    articles = {a.id: a for a in documents_bot.articles}
    library = next(a for a in articles.values() if a.source == "library.txt")
    assert (library.title, library.date, library.url, library.outlet, library.text) == \
        ("مكتبة الزيتون", "2026-11-20", "https://example.org/library", "وكالة الأنباء", LIBRARY)
    bridge = articles["/news/bridge.txt"]
    assert (bridge.source, bridge.title, bridge.date) == ("bridge.txt", "جسر النهر الجديد في الموصل", None)


def test_document_ids_are_stable_so_a_new_run_embeds_nothing(documents_bot, config):
    again = ChatBot.from_documents(library_documents(), config=config, index_dir=documents_bot.index_dir)
    assert (again.last_update.added, again.last_update.changed, again.last_update.unchanged) == (0, 0, 2)
    assert sorted(a.id for a in again.articles) == sorted(a.id for a in documents_bot.articles)


def test_document_id_rules():
    text = "نص المقال"
    assert article_from_document(Document(text=text, metadata={"article_id": "a-1", "file_path": "/x"})).id == "a-1"
    assert article_from_document(Document(text=text, id_="news-42")).id == "news-42"
    assert article_from_document(Document(text=text, metadata={"file_path": "/r.pdf", "page_label": "3",
                                                               "file_name": "r.pdf"})).id == "/r.pdf#3"
    hashed = article_from_document(Document(text=text)).id
    assert hashed == article_from_document(Document(text=text)).id and re.fullmatch(r"doc-[0-9a-f]{16}", hashed)
    assert article_from_document(Document(text=text, metadata={"file_name": "r.pdf", "page_label": "3"})).source \
        == "r.pdf#3"


def test_document_with_presentation_forms_is_stored_in_standard_letters():
    drawn = "ﺲﻠﺑاﺮﻃ ﻲﻓ نﻮﺘﻳﺰﻟا ﺔﺒﺘﻜﻣ"  # as a PDF extractor leaves "مكتبة الزيتون في طرابلس"
    assert article_from_document(Document(text=drawn)).text == "مكتبة الزيتون في طرابلس"


def test_from_documents_refuses_no_text_and_clashing_ids(config):
    with pytest.raises(CorpusError, match="no documents"):
        ChatBot.from_documents([Document(text="  ")], config=config)
    with pytest.raises(CorpusError, match="two documents have the id 'same'"):
        ChatBot.from_documents([Document(text="أ", id_="same"), Document(text="ب", id_="same")], config=config)


def test_add_documents_adds_and_replaces_by_id(documents_bot, config, tmp_path):
    import shutil

    shutil.copytree(documents_bot.index_dir, tmp_path / "index", symlinks=True)
    bot = ChatBot.from_documents(library_documents(), config=config, index_dir=tmp_path / "index")
    extra = Document(text="سوق الخضار\nأعيد افتتاح سوق الخضار القديم بعد ترميمه.\n", id_="market")
    report = bot.add_documents([extra])
    assert (report.added, report.unchanged) == (1, 2)
    report = bot.add_documents([Document(text="سوق الخضار\nأغلق سوق الخضار القديم للترميم.\n", id_="market")])
    assert (report.added, report.changed) == (0, 1)
    assert bot.index.article("market").text.startswith("سوق الخضار\nأغلق")


# --- reader ---------------------------------------------------------------------------------------


def test_sanad_reader_in_simple_directory_reader_reads_as_sanad_does(tmp_path, seeds_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "page.html").write_text("<html><head><title>عنوان</title></head><body><p>فقرة أولى</p>"
                                      "<script>x()</script></body></html>", encoding="utf-8")
    (corpus / "news.jsonl").write_text('{"text": "خبر أول", "date": "2026-01-02"}\n{"text": "خبر ثان"}\n',
                                       encoding="utf-8")
    documents = SimpleDirectoryReader(str(corpus), file_extractor=SanadReader.file_extractor()).load_data()
    assert sorted(d.text for d in documents) == sorted(a.text for a in read_corpus(corpus))
    ids = sorted(article_from_document(d).id for d in documents)
    records = str(corpus / "news.jsonl")
    assert ids == sorted([records + "#1", records + "#2", str(corpus / "page.html")])
    dated = next(d for d in documents if d.text == "خبر أول")
    assert article_from_document(dated).date == "2026-01-02"
    assert article_from_document(dated).source == "news.jsonl#1"


# --- README -----------------------------------------------------------------------------------------


def readme_snippet() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from llama-index", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_llama_index_snippet_runs(config, embedder, tmp_path, monkeypatch):
    """The README's snippet, unchanged, with the default settings; only the cache folder is a temporary one
    (holding a link to the built model), so its index is not left in the user's cache."""
    for key in [key for key in os.environ if key.startswith("SANAD_")]:
        monkeypatch.delenv(key)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(config.cache_dir / "models", target_is_directory=True)
    monkeypatch.setenv("SANAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO_ROOT)
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(readme_snippet(), "README.md", "exec"), scope)
    response, bot = scope["response"], scope["bot"]
    assert printed.getvalue().startswith(response.response)
    assert response.source_nodes
    for node in response.source_nodes:
        article = bot.index.article(node.node.ref_doc_id)
        assert article.text[node.node.start_char_idx:node.node.end_char_idx] == node.node.text
    assert list((tmp_path / "cache" / "indexes").iterdir())
