"""The answer, from the reader's readings of the retrieved chunks: the best span as the short answer,
the sentence holding it as an exact quote, figures from different articles side by side when they
differ, or a plain "the articles do not say" when no chunk answers the question well enough.

`ChatBot.ask` runs the steps before it (the follow-up rewrite, `Answerer.retrieval_query`, once;
retrieval; the reader) and hands the readings to `Answerer.answer`. Every word of that answer is a
fixed framing phrase, text copied from an article, or (for an English question) a figure of the span
written in digits, so it cannot say what the articles do not. The optional LLM mode
(`Answerer.write`, `rag.llm`) is verified against its citations and falls back to it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from rag.arabic import Number, is_arabic, normalize, read_numbers, terms
from rag.config import SanadConfig
from rag.reader import Gate, ReaderSettings
from rag.types import Answer, Citation, Hit, Reading, Sentence, Span

MAX_QUOTE_WORDS = 55  # longer sentences are trimmed to the clauses around the answer
MAX_FIGURE_ARTICLES = 3  # differing figures are shown side by side from at most this many articles
_TEXTS = {
    "ar": {"abstain": "لا تتضمن المقالات إجابة عن هذا السؤال.",
           "related": "أقرب المقاطع إلى السؤال معروضة أدناه للاطلاع، لا كإجابة.",
           "differ": "تختلف المصادر في هذا:"},
    "en": {"abstain": "The articles do not contain the answer to this question.",
           "related": "The closest passages are listed below for reference, not as an answer.",
           "differ": "The articles give different figures:"},
}
# A follow-up leans on the previous turn: "وحسب زيلينسكي؟", "and according to Peskov?", "what did he say?".
_FOLLOW_UP = re.compile(r"^(?:و|ف)(?:حسب|ماذا|ما|من|مين|اين|متي|كم|هل|بالنسبه|عن|مع|في|لماذا)\b|^(?:and|what about|how about|"
                        r"according to)\b|\b(?:he|she|they|him|her|them|his|their|its|it)\b")


@dataclass(frozen=True)
class Claim:
    """A span the answer states, the chunk's calibrated probability, and the quoted stretch around it."""

    span: Span
    logit: float  # the chunk's answerability logit
    probability: float  # ... calibrated
    quote_start: int  # article offsets of the quote: the sentence(s) holding the span, maybe trimmed
    quote_end: int
    value: Number | None  # the figure the span gives, when it gives one
    rank: int  # the chunk's rank in retrieval (0 first)
    retrieval: float  # ... and the retriever's score of it (hybrid: fused reciprocal ranks)

    def features(self) -> dict[str, float]:
        """What the best claim is chosen by (`claim_weights` in reader.json, fitted by `eval.calibrate_reader`)."""
        return {"logit": self.logit, "span": self.span.score, "rank": float(self.rank), "retrieval": self.retrieval}

    def score(self, weights: dict[str, float]) -> float:
        return sum(weights.get(name, 0.0) * value for name, value in self.features().items())


class Answerer:
    """Turns the reader's readings into an `Answer`, by the reader's settings (`ReaderSettings`); with an
    LLM, also has it write the answer from the retrieved chunks (the embedder checks its sentences)."""

    def __init__(self, config: SanadConfig, reader, llm=None, embedder=None):
        self.config = config
        self.reader = reader
        self.llm = llm
        self.embedder = embedder

    @property
    def abstain_threshold(self) -> dict[str, float]:
        """Per question language, the probability below which the answer is "the articles do not say"."""
        return {language: gate.threshold for language, gate in self.reader.gates.items()}

    @staticmethod
    def retrieval_query(question: str, history: Sequence | None) -> str:
        """A follow-up ("وحسب زيلينسكي؟") is searched, and read, together with the previous question."""
        previous = previous_question(history)
        return f"{previous} {question}" if previous and is_follow_up(question) else question

    def answer(self, question: str, readings: list[Reading], index) -> Answer:
        """The extractive answer (no LLM): short answer, quotes, conflicts, or an abstention."""
        language, gate, claims = self._claims(question, readings)
        confidence = max((c.probability for c in claims), default=0.0)
        if not claims or (confidence < gate.threshold and self.config.answer.abstain):
            return _abstention(language, claims[:2], index, confidence)
        return _compose(language, _chosen(claims, gate.threshold, self.reader.settings), index, confidence)

    def settled(self, question: str, readings: list[Reading]) -> bool:
        """Whether the readings of the first chunks already decide the answer (`ReaderSettings.cascade`):
        their best claim is at least ``stop_probability`` likely and gives no figure (which other
        articles may give differently). Fitted so that reading on would change almost no answer."""
        cascade = self.reader.settings.cascade
        claims = self._claims(question, readings)[2]
        if cascade is None or not claims:
            return False
        return claims[0].probability >= cascade.stop_probability and claims[0].value is None

    def _claims(self, question: str, readings: list[Reading]) -> tuple[str, Gate, list[Claim]]:
        """The question's language, its gate, and the readings' claims, best first (``claim_weights``)."""
        language = "ar" if is_arabic(question) else "en"
        gate = self.reader.gate(language)
        weights = self.reader.settings.claim_weights
        return language, gate, sorted(claims_of(readings, gate), key=lambda c: -c.score(weights))

    def extract(self, question: str, hits: list[Hit], index, history: Sequence | None = None) -> Answer:
        """`answer` over the reader's readings of ``hits`` (all of them), for tools that choose the hits."""
        return self.answer(question, self.reader.read(self.retrieval_query(question, history), hits), index)

    def write(self, question: str, extractive: Answer, hits: list[Hit], index) -> Answer:
        """The LLM's answer from ``hits``, only its verified sentences, or ``extractive`` when too little of
        it holds (or the reader abstained: the LLM is only asked when there is evidence)."""
        from rag.llm import generate

        if extractive.abstained:
            return extractive
        return generate(self.llm, question, extractive, hits, index, self.config, self.embedder) or extractive


def previous_question(history: Sequence | None) -> str | None:
    if not history:
        return None
    previous = history[-1]
    return previous[0] if isinstance(previous, (tuple, list)) else str(previous)


def is_follow_up(question: str) -> bool:
    """Short ("وبلينكن؟"), opening with و/ف and a question word, or leaning on a pronoun."""
    return len(terms(question)) <= 3 or bool(_FOLLOW_UP.search(normalize(question).strip()))


# --- choosing what to state ------------------------------------------------------------------------

def claims_of(readings: list[Reading], gate) -> list[Claim]:
    """Each reading's best span as a claim, in the readings' order (a chunk with no span makes none)."""
    return [claim for reading in readings if (claim := _claim(reading, gate.probability(reading.answer_logit)))]


def _claim(reading: Reading, probability: float) -> Claim | None:
    """The reading's best span with its quote: the sentences of the chunk that hold it."""
    if not reading.spans:
        return None
    span = reading.spans[0]
    sentences = [s for s in reading.hit.chunk.sentences if s.start < span.end and span.start < s.end]
    if not sentences:  # a chunk cut inside one very long sentence
        sentences = [Sentence(span.article_id, span.start, span.end, span.text)]
    start, end = _trimmed(sentences, span)
    numbers = read_numbers(span.text)
    return Claim(span, reading.answer_logit, probability, start, end, numbers[0] if numbers else None,
                 reading.hit.rank, reading.hit.score)


def _chosen(claims: list[Claim], threshold: float, settings: ReaderSettings) -> list[Claim]:
    """The best claim; for a figure, the differing figures of other articles that score about as well;
    otherwise a second quote when another sentence is nearly as likely to hold the answer."""
    best = claims[0]
    rivals = [c for c in claims[1:] if c.probability >= threshold and c.span.score >= best.span.score - settings.rival_margin
              and c.logit >= best.logit - settings.rival_logit_margin]
    if best.probability < threshold:  # the gate is off (benchmarks): nothing else scores well either
        rivals = []
    if best.value is not None:
        chosen, articles, values = [best], {best.span.article_id}, {best.value.value}
        for claim in rivals:
            if claim.value is not None and claim.span.article_id not in articles and claim.value.value not in values:
                chosen.append(claim)
                articles.add(claim.span.article_id)
                values.add(claim.value.value)
            if len(chosen) == MAX_FIGURE_ARTICLES:
                break
        if len(chosen) > 1:
            return chosen
    seconds = [c for c in rivals if c.span.score >= best.span.score - settings.second_quote_margin
               and (c.quote_start, c.quote_end) != (best.quote_start, best.quote_end)]
    return [best] + seconds[:1]


def _trimmed(sentences: list[Sentence], span: Span) -> tuple[int, int]:
    """The sentences holding the span; beyond `MAX_QUOTE_WORDS`, only the clauses around it (still exact)."""
    start, end = sentences[0].start, sentences[-1].end
    text = sentences[0].text if len(sentences) == 1 else None
    if text is None or len(text.split()) <= MAX_QUOTE_WORDS:
        return start, end
    bounds = [0] + [m.end() for m in re.finditer(r"[،,;:؛]\s*", text)] + [len(text)]
    clauses = [(a, b) for a, b in zip(bounds, bounds[1:]) if a < b]
    first = next(i for i, (a, b) in enumerate(clauses) if span.start - start < b)
    last = next((i for i, (a, b) in enumerate(clauses) if span.end - start <= b), len(clauses) - 1)
    count = lambda a, b: len(text[clauses[a][0]:clauses[b][1]].split())  # noqa: E731
    while True:
        grown = False
        if first > 0 and count(first - 1, last) <= MAX_QUOTE_WORDS:
            first, grown = first - 1, True
        if last < len(clauses) - 1 and count(first, last + 1) <= MAX_QUOTE_WORDS:
            last, grown = last + 1, True
        if not grown:
            break
    quote = text[clauses[first][0]:clauses[last][1]].rstrip(" ،,;:؛")
    return start + clauses[first][0], start + clauses[first][0] + len(quote)


# --- writing the answer ------------------------------------------------------------------------------

def _citation(n: int, claim: Claim, index, related: bool = False) -> Citation:
    return Citation.of(n, index.article(claim.span.article_id), claim.quote_start, claim.quote_end,
                       claim.probability, related)


def _short(claim: Claim, language: str) -> str:
    """The span; for an English question, with its figure in digits ("أكثر من 11 ألف (more than 11,000)")."""
    if language == "ar" or claim.value is None:
        return claim.span.text
    number = claim.value
    figure = f"{number.value:,.0f}" if number.value == int(number.value) else f"{number.value:,}"
    return f"{claim.span.text} ({number.bound + ' ' if number.bound else ''}{figure})"


def _compose(language: str, claims: list[Claim], index, confidence: float) -> Answer:
    """Short answer(s) first, each with the marker of its quote, then the quotes."""
    texts = _TEXTS[language]
    citations = [_citation(n, claim, index) for n, claim in enumerate(claims, start=1)]
    conflict = len({c.value.value for c in claims if c.value is not None}) > 1
    if conflict:
        lines = [texts["differ"]] + [f"- {_short(c, language)} [{cite.n}]" for c, cite in zip(claims, citations)]
    else:
        lines = [f"{_short(claims[0], language)} [1]"]
    lines += [f"«{c.quote}» [{c.n}]" for c in citations]
    spans = tuple(c.span for c in claims) if conflict else (claims[0].span,)
    return Answer(text="\n".join(lines), abstained=False, citations=citations,
                  short_answer=claims[0].span.text, spans=spans, language=language,
                  confidence=round(confidence, 4), conflict=conflict)


def _abstention(language: str, closest: list[Claim], index, confidence: float) -> Answer:
    texts = _TEXTS[language]
    related = [_citation(n, claim, index, related=True) for n, claim in enumerate(closest, start=1)]
    text = texts["abstain"] + (" " + texts["related"] if related else "")
    return Answer(text=text, abstained=True, citations=related, language=language, confidence=round(confidence, 4))
