"""Read a folder of articles: .txt/.md, .html, .jsonl/.json records, .pdf and .docx (`rag.formats`).

Every article keeps its exact text as decoded from disk, because citations are
offsets into that text. Unreadable input raises `CorpusError` naming the file,
before anything is indexed, so a bad file never reaches the index.
"""
from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from rag.errors import CorpusError
from rag.formats import DOCX_SUFFIXES, PDF_SUFFIXES, docx_text, pdf_text
from rag.types import Article

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
RECORD_SUFFIXES = (".jsonl", ".json")
DOCUMENT_SUFFIXES = PDF_SUFFIXES + DOCX_SUFFIXES  # binary formats: their text is extracted, not decoded
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + RECORD_SUFFIXES + DOCUMENT_SUFFIXES
MAX_FILE_BYTES = 50_000_000


def read_corpus(root: str | Path) -> list[Article]:
    """All articles under ``root`` (recursive, sorted by path, hidden files skipped)."""
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"corpus folder not found: {root}")
    if root.is_file():
        return list(read_file(root, root.parent))
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise CorpusError(f"no articles in {root}: expected files ending in {', '.join(SUFFIXES)}")
    articles = [article for path in files for article in read_file(path, root)]
    if not articles:
        raise CorpusError(f"every file in {root} is empty")
    return articles


def read_file(path: Path, root: Path) -> Iterator[Article]:
    """The articles of one file; ids are the path relative to ``root`` (plus ``#n`` for records)."""
    relative = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CorpusError(f"{path.name}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    if suffix in DOCUMENT_SUFFIXES:
        yield from _document(path, relative)
        return
    text = _decode(path)
    if suffix in RECORD_SUFFIXES:
        yield from _records(path, relative, text)
        return
    if suffix in HTML_SUFFIXES:
        title, text = _html_text(text)
    else:
        title = _first_line(text, markdown=suffix == ".md")
    if text.strip():
        yield Article(id=relative, source=path.name, title=title, text=text)


def content_hash(article: Article) -> str:
    """What decides whether an article must be re-embedded."""
    payload = json.dumps([article.title, article.text, article.date, article.url], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _decode(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CorpusError(f"{path.name}: {size:,} bytes is larger than the {MAX_FILE_BYTES:,} allowed for one file")
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path.name}: cannot read it ({exc.strerror})") from exc
    if b"\x00" in data[:8192]:
        raise CorpusError(f"{path.name}: looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path.name}: not valid UTF-8 (byte {exc.start}); save it as UTF-8 and try again") from exc


def _document(path: Path, relative: str) -> Iterator[Article]:
    """A PDF or DOCX article: its extracted text is the article text, its first line the headline."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CorpusError(f"{path.name}: cannot read it ({exc.strerror})") from exc
    if size > MAX_FILE_BYTES:
        raise CorpusError(f"{path.name}: {size:,} bytes is larger than the {MAX_FILE_BYTES:,} allowed for one file")
    text = pdf_text(path) if path.suffix.lower() in PDF_SUFFIXES else docx_text(path)
    if text.strip():
        yield Article(id=relative, source=path.name, title=_first_line(text), text=text)


def _first_line(text: str, markdown: bool = False) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip() if markdown else line.strip()
    return ""


def _records(path: Path, relative: str, text: str) -> Iterator[Article]:
    try:
        if path.suffix.lower() == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            records = data if isinstance(data, list) else [data]
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path.name}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CorpusError(f"{path.name}: record {number} needs a \"text\" string")
        if not record["text"].strip():
            continue
        yield Article(
            id=f"{relative}#{number}",
            source=f"{path.name}#{number}",
            title=str(record.get("title") or _first_line(record["text"])),
            text=record["text"],
            date=_optional(record.get("date")),
            url=_optional(record.get("url")),
            outlet=_optional(record.get("source")),
        )


def _optional(value) -> str | None:
    return str(value) if value not in (None, "") else None


class _VisibleText(HTMLParser):
    """Collects the text a browser would show, with line breaks at block elements."""

    BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "blockquote"}
    HIDDEN = {"script", "style", "noscript", "template", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self._hidden += 1
        self._in_title = self._in_title or tag == "title"
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        if tag == "title":
            self._in_title = False
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._hidden:
            self.parts.append(data)


def _html_text(html: str) -> tuple[str, str]:
    parser = _VisibleText()
    parser.feed(html)
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(line for line in lines if line)
    return (parser.title.strip() or _first_line(text)), text
