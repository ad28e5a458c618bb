"""Documents from other tools (llama-index `Document`s, or any object with ``text``, ``metadata`` and
``id_``) as Sanad `Article`s, with ids that stay the same across runs. Duck-typed: no llama-index import."""
from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from typing import Iterable

from rag.errors import CorpusError
from rag.formats import logical_text
from rag.types import Article

# Document metadata keys read into Article fields, first match wins.
TITLE_KEYS = ("title", "headline", "document_title")
DATE_KEYS = ("date", "publish_date", "published_date", "publication_date", "published", "pub_date")
URL_KEYS = ("url", "link", "source_url")
OUTLET_KEYS = ("outlet", "publisher", "site_name")
_URL = re.compile(r"^https?://", re.IGNORECASE)


def article_from_document(document) -> Article:
    """One llama-index `Document` (or any object with ``text``, ``metadata`` and ``id_``) as an `Article`.

    The id is stable across runs: ``metadata["article_id"]``, else an id the caller set
    (``Document(id_=...)``, ``filename_as_id=True``), else the file path (plus the page label of a
    per-page reader), else a hash of the text. The random id llama-index gives by default is never used.
    Arabic in presentation forms, as PDF extractors leave it, is brought to standard letters in
    reading order (`rag.formats.logical_text`); other text is kept exactly.
    """
    text = getattr(document, "text", None)
    if not isinstance(text, str):
        raise CorpusError(f"a document must have a text string, got {type(document).__name__}")
    metadata = dict(getattr(document, "metadata", None) or {})
    text = logical_text(text)
    article_id = _document_id(document, metadata, text)
    source = _first(metadata, ("source",))
    url = _first(metadata, URL_KEYS) or (source if source and _URL.match(source) else None)
    if not source or _URL.match(source):
        file_name, page = metadata.get("file_name"), metadata.get("page_label")
        source = f"{file_name}#{page}" if file_name and page else (file_name or url or article_id)
    title = _first(metadata, TITLE_KEYS) or _first_line(text)
    return Article(id=article_id, source=str(source), title=title, text=text,
                   date=_first(metadata, DATE_KEYS), url=url, outlet=_first(metadata, OUTLET_KEYS))


def articles_from_documents(documents: Iterable) -> list[Article]:
    """`article_from_document` for each, empty texts skipped; none left, or two with one id, are refused."""
    articles: dict[str, Article] = {}
    for document in documents:
        article = article_from_document(document)
        if not article.text.strip():
            continue
        if article.id in articles and articles[article.id] != article:
            raise CorpusError(f"two documents have the id {article.id!r}; give each its own "
                              "metadata['article_id'] or id_")
        articles[article.id] = article
    if not articles:
        raise CorpusError("no documents with text were given")
    return list(articles.values())


def _document_id(document, metadata: dict, text: str) -> str:
    if metadata.get("article_id"):
        return str(metadata["article_id"])
    fields_set = getattr(document, "model_fields_set", None)
    if getattr(document, "id_", None) and (fields_set is None or "id_" in fields_set):
        return str(document.id_)
    if metadata.get("file_path"):
        page = metadata.get("page_label")
        return f"{metadata['file_path']}#{page}" if page else str(metadata["file_path"])
    return "doc-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _first(metadata: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        if value not in (None, ""):
            return str(value)
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
