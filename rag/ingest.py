"""Read a folder of articles: .txt/.md, .html, .jsonl/.json records.

Every article keeps its exact text as decoded from disk, because citations are
offsets into that text. Unreadable input raises `CorpusError` naming the file,
before anything is indexed, so a bad file never reaches the index.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterator

from rag.errors import CorpusError
from rag.types import Article

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
RECORD_SUFFIXES = (".jsonl", ".json")
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + RECORD_SUFFIXES
MAX_FILE_BYTES = 50_000_000


def read_corpus(root: str | Path) -> list[Article]:
    """All articles under ``root`` (recursive, sorted by path, hidden files skipped)."""
    return scan_corpus(root, {}).articles


@dataclass(frozen=True)
class Scan:
    """A corpus folder compared with what the index recorded of its files."""

    articles: list[Article]  # read from the files that are new or changed
    unchanged: list[str]  # ids of the articles in files whose size and mtime are as recorded
    files: dict[str, list]  # the table to record now: path -> [size, mtime_ns, [article ids]]


def corpus_files(root: Path) -> list[Path]:
    """The article files under ``root`` (recursive, sorted by path, hidden files skipped)."""
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"corpus folder not found: {root}")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise CorpusError(f"no articles in {root}: expected files ending in {', '.join(SUFFIXES)}")
    return files


def scan_corpus(root: str | Path, known: dict, prefix: str = "",
                read: Callable[[list[Path], Path], list[list[Article]]] | None = None) -> Scan:
    """Read only the files whose size or mtime differ from ``known`` (a `Scan.files` table from
    the last update); the others' article ids come from the table. ``prefix`` goes before every
    id and path; ``read(paths, root)`` reads files elsewhere (e.g. on Ray), one article list each."""
    root = Path(root)
    files = corpus_files(root)
    base = root.parent if root.is_file() else root
    table, unchanged, to_read = {}, [], []
    for path in files:
        key = prefix + path.relative_to(base).as_posix()
        try:
            stat = path.stat()
        except OSError as exc:
            raise CorpusError(f"{path.name}: cannot read it ({exc.strerror})") from exc
        entry = known.get(key)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            table[key] = entry
            unchanged += entry[2]
        else:
            to_read.append((path, key, [stat.st_size, stat.st_mtime_ns]))
    read = read or (lambda paths, folder: [list(read_file(path, folder)) for path in paths])
    articles = []
    for (path, key, stat), file_articles in zip(to_read, read([path for path, _, _ in to_read], base)):
        if prefix:
            file_articles = [Article(**{**article.__dict__, "id": prefix + article.id}) for article in file_articles]
        table[key] = [*stat, [article.id for article in file_articles]]
        articles += file_articles
    if not articles and not unchanged:
        raise CorpusError(f"every file in {root} is empty")
    return Scan(articles, unchanged, dict(sorted(table.items())))


def read_file(path: Path, root: Path) -> Iterator[Article]:
    """The articles of one file; ids are the path relative to ``root`` (plus ``#n`` for records)."""
    relative = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CorpusError(f"{path.name}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
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
