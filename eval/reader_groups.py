"""Retrieval groups: each training question with the chunks Sanad's retriever would hand the reader.

At run time the reader sees the top retrieved chunks of a question and the answer layer compares spans
across them, but single-passage training only ever shows it one passage at a time, so a span score in
one chunk means nothing next to one in another. A `Group` is the question, the chunk of its paragraph
that holds the answer, and the chunks the product's hybrid retriever ranks highest for it in the same
corpus: dense search with the embedder and BM25 over normalized terms, fused by reciprocal rank with
BM25 weighted by the share of the question's terms the corpus holds (`rag.retrieve`), over paragraphs
cut into chunks with the product's own chunker. `python -m eval.train_reader` normalizes the span
scores of all of a group's chunks together (shared normalization, Clark & Gardner 2018), so the reader
learns to prefer the answering chunk, not only the answering words.

A share of the answerable questions are asked with every chunk holding the answer taken out: the
on-topic unanswerables the abstention gate must learn ("gold passage removed"). Unanswerable
questions of the sources (AAQAD's) keep their own paragraph's best chunk with the distractors.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.reader_data import QAExample
from rag import bm25
from rag.arabic import normalize, terms
from rag.chunking import chunk_article
from rag.config import ChunkConfig, RetrieveConfig
from rag.retrieve import reciprocal_rank_fusion
from rag.types import Article


@dataclass(frozen=True)
class Group:
    """One question over several chunks; ``answers[i]`` holds the (start, end) offsets of the answer in
    ``passages[i]``, empty where that chunk does not hold it."""

    id: str
    question: str
    language: str
    source: str  # the example's source, plus "+absent" when the answering chunks were taken out
    passages: tuple[str, ...]
    answers: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def answerable(self) -> bool:
        return any(self.answers)


@dataclass(frozen=True)
class _Piece:
    """A chunk of one paragraph of a corpus (offsets in the paragraph)."""

    start: int
    end: int
    text: str


class _Corpus:
    """One source's paragraphs cut into chunks, with their vectors and BM25 over them."""

    def __init__(self, paragraphs: list[str], chunking: ChunkConfig, embedder, cache: Path | None):
        self.paragraph_ids = {text: i for i, text in enumerate(paragraphs)}
        self.pieces: list[_Piece] = []
        self.by_paragraph: dict[int, list[int]] = {}
        for number, text in enumerate(paragraphs):
            for chunk in chunk_article(Article(id=str(number), source=str(number), title="", text=text), chunking):
                self.by_paragraph.setdefault(number, []).append(len(self.pieces))
                self.pieces.append(_Piece(chunk.start, chunk.end, chunk.text))
        self.normalized = [normalize(p.text) for p in self.pieces]
        postings = bm25.build([terms(p.text) for p in self.pieces])
        self.scorer = bm25.Scorer([bm25.Part(postings, None, None, 0)])
        self.vectors = _passage_vectors(embedder, [p.text for p in self.pieces], cache)

    def ranked(self, question: str, query_vector: np.ndarray, count: int, retrieve: RetrieveConfig) -> list[int]:
        """The ``count`` best chunks for the question, as `rag.retrieve.Retriever.search` ranks them in hybrid mode."""
        candidates = max(retrieve.candidates, count)
        question_terms = terms(question)
        scores = self.scorer.scores(question_terms, len(self.pieces))
        lexical = [(int(i), float(scores[i])) for i in np.argsort(-scores, kind="stable")[:candidates] if scores[i] > 0]
        similarity = self.vectors @ query_vector
        dense = [(int(i), float(similarity[i])) for i in np.argsort(-similarity, kind="stable")[:candidates]]
        fused = reciprocal_rank_fusion([dense, lexical], retrieve.rrf_k, weights=[1.0, self.scorer.coverage(question_terms)])
        return [row for row, _ in fused[:count]]


def _passage_vectors(embedder, texts: list[str], cache: Path | None) -> np.ndarray:
    """The embedder's passage vectors of ``texts``, kept in ``cache`` (keyed by the texts and the model)
    so that a resumed training run does not embed its corpora again."""
    digest = hashlib.sha256(embedder.fingerprint.encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    path = cache / f"vectors-{digest.hexdigest()[:16]}.npy" if cache else None
    if path and path.exists():
        return np.load(path)
    vectors = embedder.encode_passages(texts)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, vectors)
        temporary.replace(path)
    return vectors


def build_groups(examples: list[QAExample], rng: random.Random, embedder, distractors: int = 3,
                 absent_share: float = 0.25, chunking: ChunkConfig = ChunkConfig(),
                 retrieve: RetrieveConfig = RetrieveConfig(), cache: Path | None = None) -> list[Group]:
    """A group for each example that is not a made negative (their sources' own questions, both splits
    alike); ``embedder`` is the product's (`rag.embeddings.Embedder`), for the dense half of retrieval."""
    base = [e for e in examples if "+" not in e.source]
    corpora: dict[str, _Corpus] = {}
    for source in sorted({e.source for e in base}):
        paragraphs = list(dict.fromkeys(e.context for e in base if e.source == source))
        corpora[source] = _Corpus(paragraphs, chunking, embedder, cache)
    query_vectors = embedder.encode_queries([e.question for e in base]) if base else []
    groups = []
    for example, query_vector in zip(base, query_vectors):
        corpus = corpora[example.source]
        paragraph = corpus.paragraph_ids[example.context]
        answers = example.answers
        answer_texts = {normalize(example.context[s:e]) for s, e in answers}
        holds = lambda i: any(a and a in corpus.normalized[i] for a in answer_texts)  # noqa: E731
        ranking = corpus.ranked(example.question, query_vector, 8 * (distractors + 1), retrieve)
        own = corpus.by_paragraph[paragraph]
        if example.answerable:
            gold = next((i for i in own if any(corpus.pieces[i].start <= s and e <= corpus.pieces[i].end
                                                for s, e in answers)), None)
            if gold is None:
                continue  # the answer straddles a chunk boundary
            absent = rng.random() < absent_share
        else:
            gold, absent = next((i for i in ranking if i in own), own[0]), False  # its paragraph's best chunk
        others = [i for i in ranking if i != gold and not holds(i)]
        if len(others) < distractors + 1:  # a tiny corpus: fill from the same paragraph, then at random
            spare = [i for i in own if i != gold and not holds(i)] + rng.sample(range(len(corpus.pieces)),
                                                                              min(len(corpus.pieces), 4 * distractors))
            others += [i for i in dict.fromkeys(spare) if i not in others and i != gold and not holds(i)]
        if absent:
            chosen = others[:distractors + 1]
            labels = [()] * len(chosen)
            source = example.source + "+absent"
        else:
            chosen = [gold] + others[:distractors]
            piece = corpus.pieces[gold]
            gold_answers = tuple((s - piece.start, e - piece.start) for s, e in answers
                                 if piece.start <= s and e <= piece.end)
            labels = [gold_answers] + [()] * (len(chosen) - 1)
            source = example.source
        order = list(range(len(chosen)))
        rng.shuffle(order)  # the answering chunk is not always first
        groups.append(Group(example.id, example.question, example.language, source,
                            tuple(corpus.pieces[chosen[i]].text for i in order), tuple(labels[i] for i in order)))
    return groups
