"""Sanad inside llama-index: a retriever, a query engine and a file reader over a `ChatBot`.

    from llama_index.core import SimpleDirectoryReader
    from rag.llama_index import SanadQueryEngine, SanadReader

    docs = SimpleDirectoryReader("articles/", file_extractor=SanadReader.file_extractor()).load_data()
    bot = rag.ChatBot.from_documents(docs)
    response = SanadQueryEngine(bot).query("كم عدد الجنود؟")   # response.source_nodes: exact quotes

Nodes carry offsets into the article text Sanad keeps (``start_char_idx``/``end_char_idx``, so
``bot.index.article(node.ref_doc_id).text[start:end] == node.text``) and the article's source,
title, date and id in their metadata. Sanad embeds, retrieves and answers with its own model and
index: llama-index's ``Settings`` (LLM, embedding model) play no part.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_index.core.instrumentation as instrument
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import (
    Document,
    NodeRelationship,
    NodeWithScore,
    ObjectType,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

from rag.documents import article_from_document, articles_from_documents  # noqa: F401 - part of this module's API
from rag.errors import ConfigError, CorpusError
from rag.ingest import SUFFIXES, read_file
from rag.types import Answer, Article, Citation, Hit

if TYPE_CHECKING:
    from rag.chatbot import ChatBot

dispatcher = instrument.get_dispatcher(__name__)

RETRIEVAL_MODES = ("hybrid", "dense", "bm25")
ANSWER_MODES = ("extractive", "llm")
_HIDDEN = ["article_id", "url", "n", "related"]  # kept out of the text an LLM or embedder sees, with empty ones


class SanadReader(BaseReader):
    """A llama-index file reader for every format Sanad reads, with Sanad's text (PDF in reading order).

    ``SimpleDirectoryReader(dir, file_extractor=SanadReader.file_extractor())`` reads .txt, .md,
    .html, .json(l), .pdf and .docx as `ChatBot.from_dir` would; a file Sanad cannot read raises
    `CorpusError` (SimpleDirectoryReader then skips it and prints why, unless ``raise_on_error``).
    """

    @classmethod
    def file_extractor(cls) -> dict[str, "SanadReader"]:
        reader = cls()
        return {suffix: reader for suffix in SUFFIXES}

    def load_data(self, file: str | Path, extra_info: dict | None = None, fs=None) -> list[Document]:
        if fs is not None:
            raise CorpusError(file=Path(file).name, reason="SanadReader reads local files only")
        path = Path(file)
        documents = []
        for article in read_file(path, path.parent):
            base = str((extra_info or {}).get("file_path") or path)
            doc_id = base + article.id[len(path.name):]  # "#n" of a record stays on the id
            metadata = {**(extra_info or {}), **_metadata(article, doc_id)}
            hidden = _HIDDEN + [key for key, value in metadata.items() if value is None]
            documents.append(Document(text=article.text, id_=doc_id, metadata=metadata,
                                      excluded_embed_metadata_keys=hidden, excluded_llm_metadata_keys=list(hidden)))
        return documents


def _metadata(article: Article, article_id: str | None = None) -> dict[str, Any]:
    return {"source": article.source, "title": article.title, "date": article.date, "url": article.url,
            "outlet": article.outlet, "article_id": article_id or article.id}


# --- nodes out -----------------------------------------------------------------------------


def hit_node(hit: Hit, article: Article) -> NodeWithScore:
    """A retrieved chunk as a llama-index node whose offsets index ``article.text``."""
    chunk = hit.chunk
    return NodeWithScore(node=_node(article.id, chunk.text, chunk.start, chunk.end, _metadata(article)),
                         score=hit.score)


def citation_node(citation: Citation, article: Article | None = None) -> NodeWithScore:
    """A citation (an exact quote) as a llama-index node; ``metadata["n"]`` is its ``[n]`` marker.

    The citation carries its article's source, title, date and id; ``article`` adds url and outlet.
    """
    metadata = {"source": citation.source, "title": citation.title, "date": citation.date,
                "url": article.url if article else None, "outlet": article.outlet if article else None,
                "article_id": citation.article_id, "n": citation.n, "related": citation.related}
    return NodeWithScore(node=_node(citation.article_id, citation.quote, citation.start, citation.end, metadata),
                         score=citation.score)


def _node(article_id: str, text: str, start: int, end: int, metadata: dict) -> TextNode:
    hidden = _HIDDEN + [key for key, value in metadata.items() if value is None]
    return TextNode(
        id_=f"{article_id}:{start}-{end}", text=text, start_char_idx=start, end_char_idx=end, metadata=metadata,
        excluded_embed_metadata_keys=hidden, excluded_llm_metadata_keys=list(hidden),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=article_id, node_type=ObjectType.DOCUMENT)},
    )


class SanadRetriever(BaseRetriever):
    """llama-index retriever over a `ChatBot`'s index: Sanad's hybrid (dense + BM25) search.

    ``top_k`` and ``mode`` ("hybrid", "dense" or "bm25") default to the bot's settings. A query
    bundle's own embedding is ignored: Sanad's index was built with Sanad's model.
    """

    def __init__(self, bot: "ChatBot", top_k: int | None = None, mode: str | None = None,
                 callback_manager: CallbackManager | None = None, verbose: bool = False):
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"top_k must be a positive integer, got {top_k!r}", setting="top_k", value=top_k)
        if mode is not None and mode not in RETRIEVAL_MODES:
            raise ConfigError(f"retrieval mode must be one of {', '.join(RETRIEVAL_MODES)}; got {mode!r}",
                              setting="mode", value=mode)
        self.bot, self.top_k, self.mode = bot, top_k, mode
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        question = self.bot.check_question(query_bundle.query_str)
        index = self.bot.index  # one snapshot, even if an update swaps it meanwhile
        hits = self.bot.retrieve(question, top_k=self.top_k, mode=self.mode, index=index)
        return [hit_node(hit, index.article(hit.chunk.article_id)) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)  # the model runs off the event loop


class SanadQueryEngine(BaseQueryEngine):
    """llama-index query engine: Sanad's grounded answer as a `Response`.

    ``response.response`` is `Answer.text` (with ``[n]`` markers), ``response.source_nodes`` are its
    citations (exact quotes, ``metadata["n"]`` the marker, ``metadata["related"]`` for passages
    offered when Sanad abstains), and ``response.metadata`` is `Answer.to_dict()` without the
    citations: ``abstained``, ``short_answer``, ``language``, ``mode``, ``confidence``, ``conflict``...
    """

    def __init__(self, bot: "ChatBot", top_k: int | None = None, mode: str | None = None,
                 callback_manager: CallbackManager | None = None):
        if mode is not None and mode not in ANSWER_MODES:
            raise ConfigError(f"answer mode must be one of {', '.join(ANSWER_MODES)}; got {mode!r}",
                              setting="mode", value=mode)
        self.bot, self.mode = bot, mode
        callback_manager = callback_manager or CallbackManager([])
        self._retriever = SanadRetriever(bot, top_k=top_k, callback_manager=callback_manager)
        self.top_k = top_k
        super().__init__(callback_manager=callback_manager)

    @property
    def retriever(self) -> SanadRetriever:
        return self._retriever

    def _get_prompt_modules(self) -> dict:
        return {}  # Sanad's prompts live in prompts/ and are read per question

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._retriever.retrieve(query_bundle)

    async def aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await self._retriever.aretrieve(query_bundle)

    @dispatcher.span
    def _query(self, query_bundle: QueryBundle) -> Response:
        with self.callback_manager.event(CBEventType.QUERY,
                                         payload={EventPayload.QUERY_STR: query_bundle.query_str}) as event:
            response = self._respond(self._ask(query_bundle))
            event.on_end(payload={EventPayload.RESPONSE: response})
        return response

    @dispatcher.span
    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        with self.callback_manager.event(CBEventType.QUERY,
                                         payload={EventPayload.QUERY_STR: query_bundle.query_str}) as event:
            response = self._respond(await asyncio.to_thread(self._ask, query_bundle))
            event.on_end(payload={EventPayload.RESPONSE: response})
        return response

    def _ask(self, query_bundle: QueryBundle) -> Answer:
        return self.bot.ask(query_bundle.query_str, top_k=self.top_k, mode=self.mode)

    def _respond(self, answer: Answer) -> Response:
        index = self.bot.index
        nodes = [citation_node(citation, _article_or_none(index, citation.article_id)) for citation in answer.citations]
        metadata = {key: value for key, value in answer.to_dict().items() if key != "citations"}
        return Response(response=answer.text, source_nodes=nodes, metadata=metadata)


def _article_or_none(index, article_id: str) -> Article | None:
    try:
        return index.article(article_id)
    except KeyError:  # removed by an update since the answer was composed
        return None
