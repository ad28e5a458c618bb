"""Frozen dataclasses that flow between the stages. No I/O here.

Offsets always index the *original* article text, so for every citation
``article.text[c.start:c.end] == c.quote`` holds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Article:
    """One article exactly as decoded from disk (offsets index this decoded text)."""

    id: str  # stable: the source path relative to the corpus root (+ "#n" for records)
    source: str  # file name shown to the reader, e.g. "002_2e4104477adbd184.txt" or "news.jsonl#3"
    title: str
    text: str
    date: str | None = None
    url: str | None = None
    outlet: str | None = None  # the publisher named by a record's "source" field
    encoding: str = "utf-8"  # how the file was decoded: utf-8, utf-8-sig, utf-16-le/be, cp1256, iso8859_6


@dataclass(frozen=True)
class Corpus:
    """What a folder scan read: the articles, and each file left out with the reason (file, reason)."""

    articles: tuple[Article, ...]
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Excerpt:
    """An exact stretch of an article: ``text == article.text[start:end]`` (character offsets)."""

    article_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Sentence(Excerpt):
    """A sentence of an article."""


@dataclass(frozen=True)
class Chunk:
    """A sentence-aligned, token-budgeted window of an article."""

    id: int  # row in the FAISS index
    article_id: str
    start: int
    end: int
    text: str  # == article.text[start:end]
    sentences: tuple[Sentence, ...] = ()


@dataclass(frozen=True)
class Hit:
    """A chunk returned by a retriever, with its score and 0-based rank."""

    chunk: Chunk
    score: float
    rank: int
    retriever: str  # "dense", "bm25" or "hybrid"


@dataclass(frozen=True)
class Span(Excerpt):
    """The stretch of an article the reader points at as the answer."""

    score: float  # start + end logits: compares the spans of one question


@dataclass(frozen=True)
class Reading:
    """What the reader made of one retrieved chunk: its best spans and how much it answers the question."""

    hit: Hit
    spans: tuple[Span, ...]  # best first, at most a few, not overlapping
    answer_logit: float  # the answerability head (uncalibrated; `rag.reader.Gate` turns it into a probability)


@dataclass(frozen=True)
class Citation:
    """A numbered pointer to an exact span of an article."""

    n: int  # the marker used in Answer.text as "[n]"
    source: str
    title: str
    quote: str  # == article_text[start:end]
    start: int
    end: int
    score: float
    article_id: str = ""
    date: str | None = None
    related: bool = False  # True: offered as a nearby passage, not as support

    @classmethod
    def of(cls, n: int, article: Article, start: int, end: int, score: float, related: bool = False) -> Citation:
        """Marker ``n`` for ``article.text[start:end]``: the quote is sliced from the article, so it always
        matches the offsets; the score is rounded to 4 places."""
        return cls(n=n, source=article.source, title=article.title, quote=article.text[start:end], start=start,
                   end=end, score=round(score, 4), article_id=article.id, date=article.date, related=related)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """What `ChatBot.ask` returns. "No answer" is `abstained=True`, not an exception."""

    text: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    short_answer: str | None = None  # the direct answer: the reader's best span (when sources differ, the first)
    spans: tuple[Span, ...] = ()  # the short answer(s) as exact article spans, one per figure when sources differ
    language: str = "ar"  # "ar" or "en": the question's language, used for the framing
    mode: str = "extractive"  # "extractive" or "llm"
    confidence: float = 0.0  # the calibrated probability that the best chunk answers: what the gate compared
    conflict: bool = False  # True when sources give different figures for the question

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "abstained": self.abstained,
            "short_answer": self.short_answer,
            "language": self.language,
            "mode": self.mode,
            "confidence": self.confidence,
            "conflict": self.conflict,
            "spans": [asdict(span) for span in self.spans],
            "citations": [c.to_dict() for c in self.citations],
        }
