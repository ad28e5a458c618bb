"""`ChatBot`: the stages wired together from one config. The CLI, UI and eval are thin shells over it."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Iterator, Sequence

from rag.config import DEFAULT_CORPUS, SanadConfig, load_config
from rag.documents import articles_from_documents
from rag.errors import ConfigError, CorpusError, QuestionError
from rag.ingest import SUFFIXES, Scan, read_file, scan_corpus, scan_files
from rag.indexing import apply_change, update_index
from rag.progress import Progress
from rag.store import Change, UpdateReport, files_entry, files_table
from rag.types import Answer, Article, Hit, Reading

UPLOADS = "uploads"  # folder inside the index folder that holds articles added through the UI
History = Sequence[tuple[str, "str | Answer"]]


class ChatBot:
    """Answers questions about a folder of articles, citing exact spans.

    >>> bot = ChatBot()                       # the seed articles shipped in seeds/
    >>> bot.ask("كم عدد الجنود الكوريين الشماليين في كورسك؟").text
    """

    def __init__(self, corpus: str | Path | None = None, config: SanadConfig | None = None,
                 llm=None, index_dir: str | Path | None = None, progress: Progress | None = None,
                 articles: Sequence[Article] = (), strict: bool = False, prepare=None, read=None):
        """``articles``: articles held in memory (llama-index `Document`s become these, see
        `from_documents`), with or without a corpus folder. ``strict``: one unreadable file in the folder
        stops everything (by default it is skipped and listed in ``last_update.skipped``). ``prepare``
        and ``read``: chunk and embed, and read files, elsewhere (`rag.ray_index`)."""
        from rag.answer import Answerer
        from rag.embeddings import Embedder
        from rag.reader import Reader, reader_folder

        self.config = config or load_config()
        self._documents = {article.id: article for article in articles}  # given in memory, not read from disk
        self.corpus = Path(corpus) if corpus else (None if articles else DEFAULT_CORPUS)
        self.index_dir = Path(index_dir) if index_dir else (
            default_index_dir(self.config, self.corpus) if self.corpus else documents_index_dir(self.config, articles))
        self.strict = strict
        self._prepare, self._read = prepare, read
        scan = self._scan()  # a bad corpus fails here, before the model is loaded
        self.embedder = Embedder(self.config.embed, self.config.cache_dir)
        self._lock = threading.Lock()  # one index update at a time; readers use the current snapshot
        self.index, self.last_update = self._update(progress, scan)
        if llm is None and self.config.answer.mode == "llm":
            from rag.llm import from_config

            llm = from_config(self.config)
            if llm is None:
                raise ConfigError("answer.mode is 'llm' but no LLM server is set: set SANAD_LLM_BASE_URL and SANAD_LLM_MODEL",
                                  setting="llm.base_url", value=self.config.llm.base_url)
        self.reader = Reader(self.embedder, reader_folder(self.config.answer.reader), precision=self.config.answer.precision)
        self.answerer = Answerer(self.config, self.reader, llm=llm, embedder=self.embedder)

    @classmethod
    def from_dir(cls, path: str | Path, **kwargs) -> "ChatBot":
        """A chatbot over any folder of .txt/.md/.html/.jsonl/.json/.pdf/.docx articles."""
        return cls(corpus=path, **kwargs)

    @classmethod
    def from_documents(cls, documents, **kwargs) -> "ChatBot":
        """A chatbot over llama-index `Document`s (any reader's output); see `rag.llama_index`.

        Their metadata fills the `Article` fields and their ids are stable across runs, so running
        this again with the same documents reuses the index on disk instead of embedding anew.
        """
        articles = articles_from_documents(documents)
        return cls(articles=articles, **kwargs)

    # --- questions ----------------------------------------------------------------

    def ask(self, question: str, history: History | None = None, top_k: int | None = None,
            mode: str | None = None) -> Answer:
        """The grounded answer: `Answer.text` with ``[n]`` markers that index `Answer.citations`.

        ``top_k`` sets how many chunks are retrieved and read for this question (else ``retrieve.top_k``
        and ``answer.read_k``); ``mode`` ("extractive" or "llm") overrides ``answer.mode`` (a chatbot
        given an LLM answers in "llm" mode unless told otherwise).
        """
        question = self.check_question(question)
        mode = self._answer_mode(mode)
        index = self.index  # one snapshot for the whole answer, even if an upload swaps it
        query = self.answerer.retrieval_query(question, history)  # a follow-up, with the question it follows
        query_vector = self.embedder.encode_queries([query])[0]
        hits = self.retrieve(query, top_k=top_k, query_vector=query_vector, index=index)
        readings = self.read(question, query, hits[:top_k or self.config.answer.read_k])
        answer = self.answerer.answer(question, readings, index)
        return self.answerer.write(question, answer, hits, index) if mode == "llm" else answer

    def stream(self, question: str, history: History | None = None, top_k: int | None = None,
               mode: str | None = None) -> Iterator[str | Answer]:
        """`ask` for a UI that shows the answer as it comes: yields the answer's text, then the `Answer`.

        The text comes in one piece, once the answer is ready: the reader reads the chunks in one or two passes,
        and an LLM's reply is verified sentence by sentence before any of it is shown: nothing earlier could be.
        """
        answer = self.ask(question, history, top_k, mode)
        yield answer.text
        yield answer

    def read(self, question: str, query: str, hits: list[Hit]) -> list[Reading]:
        """The reader's readings of ``hits`` for ``query`` (the question, or a follow-up with the one it
        follows). With ``answer.adaptive`` and a reader fitted for it, the first chunks are read alone,
        and the rest only when those leave the answer open (`Answerer.settled`): then the readings stop
        early, and the answer is what reading on would almost always give (`eval.calibrate_reader`)."""
        cascade = self.reader.settings.cascade
        if not self.config.answer.adaptive or cascade is None or len(hits) <= cascade.first:
            return self.reader.read(query, hits)
        first = self.reader.read(query, hits[:cascade.first])
        if self.answerer.settled(question, first):
            return first
        return first + self.reader.read(query, hits[cascade.first:])

    def retrieve(self, question: str, top_k: int | None = None, mode: str | None = None,
                 query_vector=None, index=None) -> list[Hit]:
        """The best chunks for ``question`` (``mode``: "dense", "bm25" or "hybrid")."""
        from rag.retrieve import Retriever

        if query_vector is None and mode != "bm25":
            query_vector = self.embedder.encode_queries([question])[0]
        return Retriever(index or self.index, self.config.retrieve).search(question, query_vector, top_k, mode)

    def check_question(self, question) -> str:
        """The question stripped, or a `QuestionError` saying what is wrong with it."""
        return check_question(question, self.config.answer.max_question_chars)

    def _answer_mode(self, mode: str | None) -> str:
        """``mode``, else "llm" when this chatbot has an LLM, else ``answer.mode``; a `ConfigError` if it cannot be."""
        mode = mode or ("llm" if self.answerer.llm is not None else self.config.answer.mode)
        if mode not in ("extractive", "llm"):
            raise ConfigError(f"answer mode must be 'extractive' or 'llm', got {mode!r}", setting="mode", value=mode)
        if mode == "llm" and self.answerer.llm is None:
            raise ConfigError("no LLM is configured: set SANAD_LLM_BASE_URL and SANAD_LLM_MODEL, or pass llm=",
                              setting="llm.base_url", value=self.config.llm.base_url)
        return mode

    # --- corpus -------------------------------------------------------------------

    def add_files(self, paths: Sequence[str | Path], progress: Progress | None = None,
                  strict: bool = False) -> UpdateReport:
        """Add articles and index them incrementally.

        Every file is checked before anything is copied: a file that cannot be read, is over
        ``upload.max_file_bytes`` or has the name of an earlier upload is skipped and listed in
        the report's ``skipped`` (with ``strict``, it stops the whole upload). An upload never
        replaces another: remove the old one first (`remove`).
        """
        paths = [Path(p) for p in paths]
        if not paths:
            raise CorpusError("no files given")
        uploads = self.index_dir / UPLOADS
        with self._lock:  # checked under the lock, so two uploads of one name cannot both pass
            accepted, skipped = [], []
            for path in paths:
                try:
                    self._check_upload(path, uploads, {p.name for p in accepted})
                except CorpusError as exc:
                    if strict:
                        raise
                    skipped.append((path.name, exc.reason))
                    continue
                accepted.append(path)
            if not accepted:
                raise CorpusError("nothing added: " + "; ".join(f"{name}: {reason}" for name, reason in skipped))
            uploads.mkdir(parents=True, exist_ok=True)
            copied = []
            try:
                for path in accepted:
                    partial = uploads / f".part-{path.name}"  # hidden: never read half-copied
                    shutil.copyfile(path, partial)
                    os.replace(partial, uploads / path.name)
                    copied.append(uploads / path.name)
                scan = scan_files(copied, uploads, {}, prefix=f"{UPLOADS}/", read=self._read)
                self.index, report = self._apply(Change(tuple(scan.articles), files=scan.files), progress)
            except BaseException:
                for path in copied:  # nothing half-added: the files go with the failed update
                    path.unlink(missing_ok=True)
                raise
        self.last_update = dataclasses.replace(report, skipped=tuple(skipped))  # this upload's files only
        return self.last_update

    def refresh(self, progress: Progress | None = None) -> UpdateReport:
        """Scan the corpus folder and the uploads again, as `sanad index` does (only files whose size
        or mtime changed are read), and bring the index in line with them."""
        with self._lock:
            self.index, report = self._update(progress)
        self.last_update = report
        return report

    def remove(self, article_id: str, progress: Progress | None = None) -> UpdateReport:
        """Remove an uploaded article (for a record of a .jsonl/.json upload, the whole file) and
        update the index. Articles of the corpus folder are removed by deleting their file there."""
        with self._lock:
            key = f"{UPLOADS}/{self._upload_name(article_id)}"
            entry = files_entry(self.index_dir, key)  # its article ids, as recorded when it was indexed
            (self.index_dir / key).unlink()
            self.index, report = self._apply(Change(remove=tuple(entry[2] if entry else ()), files={key: None}), progress)
        self.last_update = report
        return report

    def add_documents(self, documents, progress: Progress | None = None) -> UpdateReport:
        """Add or replace llama-index `Document`s (by id) and index them incrementally.

        They are held by this chatbot, not copied to disk: a new chatbot is given them again
        (and finds their vectors in the index).
        """
        articles = articles_from_documents(documents)
        with self._lock:
            before = dict(self._documents)
            for article in articles:
                if article.id not in before and article.id in self.index:
                    raise CorpusError(f"document id {article.id!r} is already the id of an article file")
            self._documents.update({article.id: article for article in articles})
            try:
                self.index, report = self._apply(Change(tuple(articles)), progress)
            except BaseException:
                self._documents = before
                raise
        self.last_update = report
        return report

    @property
    def uploads(self) -> list[str]:
        """The uploaded files, as `remove` takes them (``uploads/<name>``): the uploads folder, not the index."""
        folder = self.index_dir / UPLOADS
        return sorted(f"{UPLOADS}/{p.name}" for p in folder.iterdir()
                      if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []

    @property
    def articles(self) -> list[Article]:
        return self.index.articles

    def _check_upload(self, path: Path, uploads: Path, batch: set[str]) -> None:
        """Raise `CorpusError` naming ``path`` when it cannot be uploaded as it is."""
        limit = self.config.upload.max_file_bytes
        if path.name.startswith("."):
            raise CorpusError(file=path.name, reason="hidden files are not indexed; rename it without the leading dot")
        if path.suffix.lower() not in SUFFIXES:
            raise CorpusError(file=path.name, reason=f"unsupported file type; use {', '.join(SUFFIXES)}")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CorpusError(file=path.name, reason=f"cannot read it ({exc.strerror})") from exc
        if size > limit:
            raise CorpusError(file=path.name, reason=f"{size:,} bytes is over the upload limit of {limit:,} bytes "
                                                     "(upload.max_file_bytes)")
        existing = uploads / path.name
        if path.name in batch or existing.exists():
            same = existing.exists() and existing.read_bytes() == path.read_bytes()
            raise CorpusError(file=path.name, reason="already uploaded" + (
                " (the same file)" if same else "; another file has this name: remove the uploaded one first, or rename this one"))
        if not list(read_file(path, path.parent)):
            raise CorpusError(file=path.name, reason="the file has no text")

    def _upload_name(self, article_id: str) -> str:
        """The file in the uploads folder that holds ``article_id`` (``uploads/name`` or ``uploads/name#n``)."""
        prefix = f"{UPLOADS}/"
        name = article_id[len(prefix):].split("#")[0] if isinstance(article_id, str) and article_id.startswith(prefix) else ""
        if name and "/" not in name and not name.startswith(".") and (self.index_dir / UPLOADS / name).is_file():
            return name
        if article_id in self.index:
            raise CorpusError(f"{article_id!r} belongs to the corpus folder {self.corpus}, not to the uploads: "
                              f"delete its file there and run `sanad index`")
        raise CorpusError(f"{article_id!r} is not an uploaded article; uploaded: {', '.join(self.uploads) or 'none'}")

    def _update(self, progress: Progress | None, scan: Scan | None = None):
        """Bring the index in line with the whole corpus (the folder, the uploads, the documents)."""
        scan = scan or self._scan()
        index, report = update_index(self.index_dir, scan.articles, self.embedder, self.config, progress,
                                     unchanged=scan.unchanged, files=scan.files, prepare=self._prepare)
        return index, dataclasses.replace(report, skipped=scan.skipped)

    def _apply(self, change: Change, progress: Progress | None):
        """Apply a change the caller knows in full (an upload, a removal): no folder scan."""
        return apply_change(self.index_dir, change, self.embedder, self.config, progress, index=self.index,
                            prepare=self._prepare)

    def _scan(self) -> Scan:
        """The corpus folder (reading only files whose size or mtime changed since the last update), the
        articles held in memory, then the uploads (ids under ``uploads/``); unreadable files are listed."""
        known = files_table(self.index_dir)
        scan = scan_corpus(self.corpus, known, read=self._read, strict=self.strict) if self.corpus else Scan([], [], {})
        scan = dataclasses.replace(scan, articles=scan.articles + list(self._documents.values()))
        uploads = self.index_dir / UPLOADS
        if not uploads.is_dir() or not any(p.is_file() and not p.name.startswith(".") for p in uploads.iterdir()):
            return scan
        more = scan_corpus(uploads, known, prefix=f"{UPLOADS}/", read=self._read)
        return Scan(scan.articles + more.articles, scan.unchanged + more.unchanged, {**scan.files, **more.files},
                    scan.skipped + more.skipped)


def check_question(question, limit: int) -> str:
    """The question stripped, or a `QuestionError` saying what is wrong with it."""
    if not isinstance(question, str):
        raise QuestionError(f"the question must be text, got {type(question).__name__}")
    question = question.strip()
    if not question:
        raise QuestionError("the question is empty; type a question about the articles")
    if len(question) > limit:
        raise QuestionError(f"the question is {len(question):,} characters long; the limit is {limit:,}")
    if not any(ch.isalnum() and ch != "\u0640" for ch in question):
        raise QuestionError("the question has no words in it (only punctuation, diacritics or tatweel)")
    return question


def default_index_dir(config: SanadConfig, corpus: Path) -> Path:
    """One index folder per corpus folder, under the cache directory."""
    resolved = Path(corpus).resolve()
    digest = hashlib.sha1(str(resolved).encode("utf-8")).hexdigest()[:10]
    return Path(config.cache_dir) / "indexes" / f"{resolved.name}-{digest}"


def documents_index_dir(config: SanadConfig, articles: Sequence[Article]) -> Path:
    """One index folder per set of document ids, under the cache directory."""
    digest = hashlib.sha1("\n".join(sorted(a.id for a in articles)).encode("utf-8")).hexdigest()[:10]
    return Path(config.cache_dir) / "indexes" / f"documents-{digest}"


def ask(question: str, history: History | None = None) -> Answer:
    """``rag.ChatBot().ask(question)`` on the seed articles, the chatbot kept for the next call."""
    return _default_chatbot().ask(question, history)


@functools.lru_cache(maxsize=1)
def _default_chatbot() -> ChatBot:
    return ChatBot()
