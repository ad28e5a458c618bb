"""Read a folder of articles: .txt/.md, .html, .jsonl/.json records, .pdf and .docx (`rag.formats`).

Every article keeps its exact text as decoded from disk, because citations are
offsets into that text. The encoding is found from a byte order mark (UTF-8, UTF-16,
UTF-32), else strict UTF-8, else charset-normalizer choosing between the two legacy
Arabic code pages (Windows-1256, ISO-8859-6), and recorded on the article. A file that
cannot be read raises `CorpusError` naming it; `scan_corpus` skips such files and lists
them with the reason, so one bad file in a news archive does not stop the rest.
"""
from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterator

from rag.errors import CorpusError
from rag.formats import DOCX_SUFFIXES, PDF_SUFFIXES, docx_text, pdf_text
from rag.types import Article

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
RECORD_SUFFIXES = (".jsonl", ".json")
DOCUMENT_SUFFIXES = PDF_SUFFIXES + DOCX_SUFFIXES  # binary formats: their text is extracted, not decoded
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + RECORD_SUFFIXES + DOCUMENT_SUFFIXES
MAX_FILE_BYTES = 50_000_000
# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
LEGACY_ENCODINGS = ["cp1256", "iso8859_6"]  # still common for Arabic text; the detector picks between them


def read_corpus(root: str | Path) -> list[Article]:
    """All articles under ``root``; the first unreadable file raises `CorpusError` (all or nothing)."""
    return scan_corpus(root, strict=True).articles


@dataclass(frozen=True)
class Scan:
    """A corpus folder compared with what the index recorded of its files."""

    articles: list[Article]  # read from the files that are new or changed
    unchanged: list[str]  # ids of the articles in files whose size and mtime are as recorded
    files: dict[str, list]  # the table to record now: path -> [size, mtime_ns, [article ids]]
    skipped: tuple[tuple[str, str], ...] = ()  # (path relative to the root, reason) of each file left out
    empty: tuple[str, ...] = ()  # the files of ``skipped`` that were read and hold no text


# Reads files elsewhere (e.g. on Ray): one entry per path, its articles or the reason it cannot be read.
FileReader = Callable[[list[Path], Path], list["list[Article] | str"]]


def corpus_files(root: Path) -> list[Path]:
    """Every file under ``root`` (recursive, sorted by path, hidden files left out)."""
    if not root.exists():
        raise CorpusError(f"corpus folder not found: {root}")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_files(paths: list[Path], root: Path) -> list[list[Article] | str]:
    """Each file's articles, or the reason it cannot be read (its `CorpusError`'s ``reason``)."""
    found: list[list[Article] | str] = []
    for path in paths:
        try:
            found.append(list(read_file(path, root)))
        except CorpusError as exc:
            found.append(exc.reason)
    return found


def scan_corpus(root: str | Path, known: dict | None = None, prefix: str = "", read: FileReader | None = None,
                strict: bool = False) -> Scan:
    """The articles of the files under ``root`` that are new or changed since ``known`` (a `Scan.files`
    table from the last update; the other files' article ids come from the table), and the files left out.

    A file that cannot be read, has no text or has an unsupported type is listed in ``skipped`` with the
    reason; with ``strict`` an unreadable file raises instead. ``prefix`` goes before every id and path;
    ``read(paths, root)`` reads the files elsewhere (e.g. on Ray).
    """
    root, known = Path(root), known or {}
    files = corpus_files(root)
    scan = scan_files(files, root.parent if root.is_file() else root, known, prefix, read, strict)
    if not scan.articles and not scan.unchanged:
        if not any(path.suffix.lower() in SUFFIXES for path in files):
            raise CorpusError(f"no articles in {root}: expected files ending in {', '.join(SUFFIXES)}")
        if len(scan.empty) == len(scan.skipped):  # every file left out was read and holds no text
            raise CorpusError(f"every file in {root} is empty")
        listed = "; ".join(f"{file}: {reason}" for file, reason in scan.skipped[:5])
        raise CorpusError(f"no readable articles in {root} ({listed}{'; …' if len(scan.skipped) > 5 else ''})")
    return scan


def scan_files(files: list[Path], base: Path, known: dict, prefix: str = "", read: FileReader | None = None,
               strict: bool = False) -> Scan:
    """`scan_corpus` for given files under ``base`` (an upload names its files: no folder to list)."""
    table, unchanged, to_read, skipped, empty = {}, [], [], [], []
    for path in files:
        key = prefix + path.relative_to(base).as_posix()
        if path.suffix.lower() not in SUFFIXES:
            skipped.append((key, f"unsupported file type {path.suffix or '(none)'}"))
            continue
        try:
            stat = path.stat()
        except OSError as exc:
            raise CorpusError(file=path.name, reason=f"cannot read it ({exc.strerror})") from exc
        entry = known.get(key)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            table[key] = entry
            unchanged += entry[2]
        else:
            to_read.append((path, key, [stat.st_size, stat.st_mtime_ns]))
    articles = []
    for (path, key, stat), found in zip(to_read, (read or read_files)([path for path, _, _ in to_read], base)):
        if isinstance(found, str):
            if strict:
                raise CorpusError(file=path.name, reason=found)
            skipped.append((key, found))
            continue
        if not found:
            skipped.append((key, "no text"))
            empty.append(key)
            continue
        if prefix:
            found = [Article(**{**article.__dict__, "id": prefix + article.id}) for article in found]
        table[key] = [*stat, [article.id for article in found]]
        articles += found
    return Scan(articles, unchanged, dict(sorted(table.items())), tuple(sorted(skipped)), tuple(sorted(empty)))


def read_file(path: Path, root: Path) -> Iterator[Article]:
    """The articles of one file; ids are the path relative to ``root`` (plus ``#n`` for records)."""
    relative = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CorpusError(file=path.name,
                          reason=f"unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    if suffix in DOCUMENT_SUFFIXES:
        yield from _document(path, relative)
        return
    text, encoding = decode(path)
    if suffix in RECORD_SUFFIXES:
        yield from _records(path, relative, text, encoding)
        return
    if suffix in HTML_SUFFIXES:
        title, text = _html_text(text)
    else:
        title = _first_line(text, markdown=suffix == ".md")
    if text.strip():
        yield Article(id=relative, source=path.name, title=title, text=text, encoding=encoding)


def decode(path: Path) -> tuple[str, str]:
    """(text, encoding name): a byte order mark, else strict UTF-8, else a legacy Arabic code page."""
    _check_size(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(file=path.name, reason=f"cannot read it ({exc.strerror})") from exc
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding.removesuffix("-sig")), encoding
            except UnicodeDecodeError as exc:
                name = encoding.removesuffix("-sig").upper()
                raise CorpusError(file=path.name, reason=f"starts with a {name} byte order mark but is not valid "
                                                         f"{name} (byte {exc.start + len(bom)})") from exc
    if b"\x00" in data[:8192]:
        raise CorpusError(file=path.name, reason="looks like a binary file, not text")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc.start
    from charset_normalizer import from_bytes

    match = from_bytes(data, cp_isolation=LEGACY_ENCODINGS).best()
    if match is None:
        raise CorpusError(file=path.name, reason=f"not text in UTF-8 (bad byte {utf8_error}), UTF-16, Windows-1256 "
                                                 "or ISO-8859-6; save it as UTF-8 and try again")
    return data.decode(match.encoding), match.encoding


def _document(path: Path, relative: str) -> Iterator[Article]:
    """A PDF or DOCX article: its extracted text is the article text, its first line the headline;
    the format stands where a text file's encoding would."""
    _check_size(path)
    text = pdf_text(path) if path.suffix.lower() in PDF_SUFFIXES else docx_text(path)
    if text.strip():
        yield Article(id=relative, source=path.name, title=_first_line(text), text=text,
                      encoding=path.suffix.lower().lstrip("."))


def _check_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CorpusError(file=path.name, reason=f"cannot read it ({exc.strerror})") from exc
    if size > MAX_FILE_BYTES:
        raise CorpusError(file=path.name,
                          reason=f"{size:,} bytes is larger than the {MAX_FILE_BYTES:,} allowed for one file")


def _first_line(text: str, markdown: bool = False) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip() if markdown else line.strip()
    return ""


def _records(path: Path, relative: str, text: str, encoding: str) -> Iterator[Article]:
    try:
        if path.suffix.lower() == ".jsonl":
            # Lines end at "\n" only: str.splitlines() would also cut at U+2028 or U+0085 inside a string.
            records = [json.loads(line) for line in text.split("\n") if line.strip()]
        else:
            data = json.loads(text)
            records = data if isinstance(data, list) else [data]
    except json.JSONDecodeError as exc:
        raise CorpusError(file=path.name, reason=f"invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CorpusError(file=path.name, reason=f"record {number} needs a \"text\" string")
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
            encoding=encoding,
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
