"""`ChatBot`: the stages wired together from one config. The CLI, UI and eval are thin shells over it."""
from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from pathlib import Path
from typing import Iterator, Sequence

from rag.config import DEFAULT_CORPUS, SanadConfig, load_config
from rag.errors import ConfigError, CorpusError, QuestionError
from rag.ingest import SUFFIXES, Scan, read_file, scan_corpus
from rag.store import Progress, UpdateReport, files_table, update_index
from rag.types import Answer, Article, Hit

UPLOADS = "uploads"  # folder inside the index folder that holds articles added through the UI
History = Sequence[tuple[str, "str | Answer"]]


class ChatBot:
    """Answers questions about a folder of articles, citing exact spans.

    >>> bot = ChatBot()                       # the seed articles shipped in seeds/
    >>> bot.ask("كم عدد الجنود الكوريين الشماليين في كورسك؟").text
    """

    def __init__(self, corpus: str | Path | None = None, config: SanadConfig | None = None,
                 llm=None, index_dir: str | Path | None = None, progress: Progress | None = None,
                 prepare=None, read=None):
        from rag.answer import Answerer
        from rag.embeddings import Embedder

        self.config = config or load_config()
        self.corpus = Path(corpus) if corpus else DEFAULT_CORPUS
        self.index_dir = Path(index_dir) if index_dir else default_index_dir(self.config, self.corpus)
        self._prepare, self._read = prepare, read  # chunk + embed, and read files, elsewhere (`rag.ray_index`)
        scan = self._scan()  # a bad corpus fails here, before the model is loaded
        self.embedder = Embedder(self.config.embed, self.config.cache_dir)
        self._lock = threading.Lock()  # one index update at a time; readers use the current snapshot
        self.index, self.last_update = self._update(scan, progress)
        if llm is None and self.config.answer.mode == "llm":
            from rag.llm import from_config

            llm = from_config(self.config)
            if llm is None:
                raise ConfigError("answer.mode is 'llm' but no LLM server is set: set SANAD_LLM_BASE_URL and SANAD_LLM_MODEL")
        self.answerer = Answerer(self.config, llm=llm)

    @classmethod
    def from_dir(cls, path: str | Path, **kwargs) -> "ChatBot":
        """A chatbot over any folder of .txt/.md/.html/.jsonl/.json articles."""
        return cls(corpus=path, **kwargs)

    # --- questions ----------------------------------------------------------------

    def ask(self, question: str, history: History | None = None, top_k: int | None = None,
            mode: str | None = None) -> Answer:
        """The grounded answer: `Answer.text` with ``[n]`` markers that index `Answer.citations`."""
        answer = None
        for answer in self.stream(question, history, top_k, mode):
            pass
        return answer

    def stream(self, question: str, history: History | None = None, top_k: int | None = None,
               mode: str | None = None) -> Iterator[str | Answer]:
        """Yield text increments as the answer is composed, then the final `Answer`.

        ``top_k`` (passages) and ``mode`` ("extractive" or "llm") override the config for this question;
        a chatbot given an LLM answers in "llm" mode unless told otherwise.
        """
        question = self.check_question(question)
        mode = mode or ("llm" if self.answerer.llm is not None else self.config.answer.mode)
        if mode not in ("extractive", "llm"):
            raise ConfigError(f"answer mode must be 'extractive' or 'llm', got {mode!r}")
        if mode == "llm" and self.answerer.llm is None:
            raise ConfigError("no LLM is configured: set SANAD_LLM_BASE_URL and SANAD_LLM_MODEL, or pass llm=")
        index = self.index  # one snapshot for the whole answer, even if an upload swaps it
        query = self.answerer.retrieval_query(question, history)
        query_vector = self.embedder.encode_queries([query])[0]
        hits = self.retrieve(query, top_k=top_k, query_vector=query_vector, index=index)
        yield from self.answerer.stream(question, hits, query_vector, index, history, use_llm=mode == "llm")

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

    # --- corpus -------------------------------------------------------------------

    def add_files(self, paths: Sequence[str | Path], progress: Progress | None = None) -> UpdateReport:
        """Add articles (validated first: a bad file changes nothing) and index them incrementally."""
        paths = [Path(p) for p in paths]
        if not paths:
            raise CorpusError("no files given")
        for path in paths:  # read everything before copying anything
            if path.name.startswith("."):
                raise CorpusError(f"{path.name}: hidden files are not indexed; rename it without the leading dot")
            if path.suffix.lower() not in SUFFIXES:
                raise CorpusError(f"{path.name}: unsupported file type; use {', '.join(SUFFIXES)}")
            if not list(read_file(path, path.parent)):
                raise CorpusError(f"{path.name}: the file has no text")
        with self._lock:
            uploads = self.index_dir / UPLOADS
            uploads.mkdir(parents=True, exist_ok=True)
            for path in paths:
                shutil.copyfile(path, uploads / path.name)
            self.index, report = self._update(self._scan(), progress)
        self.last_update = report
        return report

    @property
    def articles(self) -> list[Article]:
        return self.index.articles

    def _scan(self) -> Scan:
        """The corpus and the uploads, reading only files whose size or mtime changed since the last update."""
        known = files_table(self.index_dir)
        scan = scan_corpus(self.corpus, known, read=self._read)
        uploads = self.index_dir / UPLOADS
        if uploads.is_dir() and any(uploads.iterdir()):
            more = scan_corpus(uploads, known, prefix=f"{UPLOADS}/", read=self._read)
            scan = Scan(scan.articles + more.articles, scan.unchanged + more.unchanged, {**scan.files, **more.files})
        return scan

    def _update(self, scan: Scan, progress: Progress | None):
        return update_index(self.index_dir, scan.articles, self.embedder, self.config, progress,
                            unchanged=scan.unchanged, files=scan.files, prepare=self._prepare)


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


def ask(question: str, history: History | None = None) -> Answer:
    """``rag.ChatBot().ask(question)`` on the seed articles, the chatbot kept for the next call."""
    return _default_chatbot().ask(question, history)


@functools.lru_cache(maxsize=1)
def _default_chatbot() -> ChatBot:
    return ChatBot()
