"""The answer: a short direct answer when one can be read off the evidence, the supporting
sentences as exact quotes with ``[n]`` markers, both sides when sources disagree, or a plain
"the articles do not say" when the abstention gate finds the evidence too weak.

Default mode is extractive and LLM-free: every word of an answer is either a fixed framing
phrase or text copied from an article, so it cannot say what the articles do not. The
optional LLM mode (`rag.llm`) is verified against its citations and falls back to this.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Sequence

from rag.arabic import (STOPWORDS, Number, format_number, latin_name_pattern, normalize, read_numbers, stem, terms,
                        words)
from rag.config import SanadConfig
from rag.evidence import DATE_PATTERN, FEATURES, Candidate, Question, analyse, gate_features, idf, load_model, rank
from rag.types import Answer, Citation, Hit, Sentence

MAX_QUOTE_WORDS = 55  # longer sentences are trimmed to the clauses around the answer (XQuAD fit half, ar: 40 -> 55
# words moves "answer contains the gold span" from 0.799 to 0.818; the median answer from 30 to 31 words)
MAX_SOURCES = 3  # figures from at most this many articles
RIVAL_MARGIN = 2.5  # a rival figure counts when its score is within this of the best (probability ratio >= e^-2.5)
# A second supporting sentence is quoted when its probability is at least this share of the best one's.
# Chosen on XQuAD's fit half as the most "answer contains the gold span" with a median answer of at most
# ~35 words. Arabic: 0.818 at 0.25 (31 words), 0.835 at 0.1 (34), 0.844 at 0.05 (37). English questions
# get flatter probabilities (no shared words), so a second quote comes more often: 0.734 at 0.25 but
# 44 words, 0.689 at 0.5 with 36 (seed questions: 52 to 37 words, accuracy unchanged).
SECOND_QUOTE_RATIO = {"ar": 0.1, "en": 0.5}
STREAM_WORDS = 3  # words per streamed increment

_UNITS_EN = {"جند": "troops", "جنود": "troops", "عسكر": "soldiers", "صاروخ": "missiles", "صواريخ": "missiles",
             "كوري": "North Koreans", "مواطن": "citizens", "شخص": "people", "طيار": "pilots", "نقط": "points"}
_DAYS_EN = dict(zip("الاثنين الثلاثاء الاربعاء الخميس الجمعه السبت الاحد".split(),
                    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()))
_MONTHS_EN = dict(zip("يناير فبراير مارس ابريل مايو يونيو يوليو اغسطس سبتمبر اكتوبر نوفمبر ديسمبر".split(),
                      "January February March April May June July August September October November December".split()))
_MONTHS_EN.update(dict(zip("شباط اذار نيسان ايار حزيران تموز ايلول".split(),
                           "February March April May June July September".split())))
_TEXTS = {
    "ar": {"abstain": "لا تتضمن المقالات إجابة عن هذا السؤال.",
           "related": "أقرب المقاطع إلى السؤال معروضة أدناه للاطلاع، لا كإجابة.",
           "differ": "تختلف المصادر في هذا:", "quotes": ""},
    "en": {"abstain": "The articles do not contain the answer to this question.",
           "related": "The closest passages are listed below for reference, not as an answer.",
           "differ": "The articles give different figures:", "quotes": "According to the articles:"},
}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Claim:
    """A supporting sentence, the quoted part of it, and the short answer read from it."""

    candidate: Candidate
    start: int  # the quoted span (article offsets), maybe trimmed to the relevant clauses
    end: int
    short: str | None  # in the question's language
    value: tuple[float, str | None] | None = None  # (number, bound) for figure comparison


class Answerer:
    """Turns retrieved chunks into an `Answer`; the learned weights come from ``answer_model.json``."""

    def __init__(self, config: SanadConfig, llm=None):
        self.config = config
        self.llm = llm

    @property
    def model(self):
        return load_model()

    @property
    def abstain_threshold(self) -> dict[str, float]:
        """Per question language, the gate probability below which the answer is "the articles do not say"."""
        return self.model.gate_thresholds

    def retrieval_query(self, question: str, history: Sequence | None) -> str:
        """A follow-up ("وحسب زيلينسكي؟") is searched together with the previous question."""
        previous = _previous_question(history)
        return f"{previous} {question}" if analyse(question, previous).follow_up else question

    def stream(self, question: str, hits: list[Hit], query_vector, index,
               history: Sequence | None = None, use_llm: bool = False) -> Iterator[str | Answer]:
        answer = self.extract(question, hits, query_vector, index, history)
        if use_llm and self.llm is not None and not answer.abstained:
            from rag.llm import generate

            answer = generate(self.llm, question, answer, hits, index, self.config) or answer
        words = answer.text.split(" ")
        for at in range(0, len(words), STREAM_WORDS):
            yield " ".join(words[at:at + STREAM_WORDS]) + (" " if at + STREAM_WORDS < len(words) else "")
        yield answer

    def extract(self, question: str, hits: list[Hit], query_vector, index,
                history: Sequence | None = None) -> Answer:
        """The extractive answer (no LLM): quotes, a short answer, conflicts, or an abstention."""
        parsed = analyse(question, _previous_question(history))
        ranked = rank(parsed, query_vector, hits, index, self.model)
        confidence = self.model.gate_probability(gate_features(ranked, parsed.answer_type), parsed.language)
        weak = confidence < self.model.gate_thresholds[parsed.language] or _focus_missing(ranked)
        if not ranked or (weak and self.config.answer.abstain):
            return _abstention(parsed, ranked[:2], index, confidence)
        claims = _claims(parsed, ranked, index)
        return _compose(parsed, claims, index, confidence)


def _focus_missing(ranked: list[Candidate]) -> bool:
    """The thing asked about ("كم دبابة": tanks) appears in none of the retrieved sentences."""
    focus = FEATURES.index("focus")
    return all(candidate.features[focus] == 0.0 for candidate in ranked)


def _previous_question(history: Sequence | None) -> str | None:
    if not history:
        return None
    previous = history[-1]
    return previous[0] if isinstance(previous, (tuple, list)) else str(previous)


# --- choosing the evidence -------------------------------------------------------------------

def _claims(question: Question, ranked: list[Candidate], index) -> list[Claim]:
    """The best sentence, plus rival sentences from other articles when the question asks for a figure."""
    best = _claim(question, ranked[0], _anchor_terms(question, ranked[0], ranked[0], index))
    claims = [best]
    second_ratio = SECOND_QUOTE_RATIO[question.language]
    if len(ranked) > 1 and not best.value and ranked[1].probability >= second_ratio * ranked[0].probability:
        claims.append(_claim(question, ranked[1], _anchor_terms(question, ranked[1], ranked[0], index)))
    elif question.answer_type == "number" and best.value:
        seen_articles = {best.candidate.sentence.article_id}
        for candidate in ranked[1:]:
            if candidate.score < ranked[0].score - RIVAL_MARGIN or len(claims) == MAX_SOURCES:
                break
            if candidate.sentence.article_id in seen_articles:
                continue
            claim = _claim(question, candidate, _anchor_terms(question, candidate, ranked[0], index))
            if claim.value and _same_topic(question, best.candidate, candidate):
                claims.append(claim)
                seen_articles.add(candidate.sentence.article_id)
    return claims


def _same_topic(question: Question, best: Candidate, other: Candidate) -> bool:
    """A rival figure must match the question about as well as the best one does."""
    own = FEATURES.index("own_cover")
    return other.features[own] >= 0.75 * best.features[own]


def _anchor_terms(question: Question, candidate: Candidate, best: Candidate, index) -> set[str]:
    """The words a figure should sit next to: the question's rarest term found in the sentence.

    An English question shares no words with an Arabic sentence; a rival sentence is then anchored
    on the rarest word it shares with the best sentence ("كورسك" picks 8 آلاف over 10 آلاف).
    """
    present = set(terms(candidate.sentence.text))
    if question.language == "ar":
        wanted = set(question.terms)
    else:
        wanted = _names_in(question, candidate.sentence.text) if candidate is best else set(terms(best.sentence.text))
    shared = wanted & present
    if not shared:
        return set()
    weights = idf(index, tuple(shared))
    return {max(shared, key=lambda term: (weights[term], term))}


_ATTRIBUTION = re.compile(r"\b(?i:according to|per)\s+((?:[A-Z][\w'.-]*\s*)+)|\b(?:did|does|do)\s+(.+?)\s+"
                          r"(?:say|claim|confirm|report|estimate|announce|believe|think)\b")


def _names_in(question: Question, text: str) -> set[str]:
    """Stems of the sentence's Arabic words that spell a name from the English question ("Kursk" ->
    "كورسك"). The source a question attributes to ("according to Blinken") is not where the figure is."""
    source = {word for match in _ATTRIBUTION.finditer(question.text) for word in (match[1] or match[2]).split()}
    patterns = [p for name in re.findall(r"\b[A-Z][a-z]+", question.text)
                if name not in source and (p := latin_name_pattern(name)) is not None]
    return {stem(word) for word in words(text) if any(p.fullmatch(word) for p in patterns)}


def _claim(question: Question, candidate: Candidate, anchors: set[str]) -> Claim:
    sentence = candidate.sentence
    short, value, anchor = None, None, None
    if question.answer_type == "number":
        number = _number_near_terms(question, sentence, anchors)
        if number:
            value = (number.value, number.bound)
            short = _render_number(number, sentence, question)
            anchor = number.start
    elif question.answer_type == "date":
        span = _date_span(sentence.text)
        if span:
            short = _render_date(sentence.text[span[0]:span[1]], question.language)
            anchor = span[0]
    start, end = _focus(sentence, anchor, question)
    return Claim(candidate, start, end, short, value)


def _word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, stem) of each word in the original text."""
    return [(m.start(), m.end(), stem(normalize(m.group()))) for m in _WORD.finditer(text)]


def _number_near_terms(question: Question, sentence: Sentence, wanted: set[str]) -> Number | None:
    """The figure closest to the anchor words: "من بين 10 آلاف ... 8 آلاف في كورسك" -> 8 آلاف."""
    numbers = [n for n in read_numbers(sentence.text) if n.value not in question.numbers]
    if not numbers:
        return None
    anchors = [start for start, _, word_stem in _word_spans(sentence.text) if word_stem in wanted]
    if not anchors:
        return numbers[0]
    return min(numbers, key=lambda n: min(abs(n.start - a) for a in anchors))


def _render_number(number: Number, sentence: Sentence, question: Question) -> str:
    """"أكثر من 11 ألف جندي" (Arabic question) or "more than 11,000 troops" (English)."""
    unit = _unit_after(sentence.text, number.end, question)
    if question.language == "ar":  # the article's own words, so every word of the answer is in the quote
        start = number.start if number.bound_start is None else number.bound_start
        parts = [sentence.text[start:number.end].lstrip("\"'“”«»("), unit or ""]
    else:
        unit_en = next((english for prefix, english in _UNITS_EN.items() if unit and normalize(unit).startswith(prefix)), "")
        figure = f"{number.value:,.0f}" if number.value == int(number.value) else format_number(number.value)
        parts = [number.bound or "", figure, unit_en]
    text = " ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] if question.language == "en" else text


def _unit_after(text: str, end: int, question: Question) -> str | None:
    """The noun counted by a number, when it is one the question asks about or a known unit."""
    match = re.match(r"\s+([^\W\d_]+)", text[end:])
    if not match:
        return None
    word = match.group(1)
    norm = normalize(word)
    if norm in STOPWORDS:
        return None
    if stem(norm) in question.terms or any(norm.startswith(prefix) for prefix in _UNITS_EN):
        return word
    return None


def _date_span(text: str) -> tuple[int, int] | None:
    """The first day, month or year phrase, with a day number before a month ("3 أكتوبر")."""
    spans = [(s, e) for s, e, _ in _word_spans(text) if DATE_PATTERN.fullmatch(normalize(text[s:e]).removeprefix("و"))]
    if not spans:
        return None
    start, end = spans[0]
    before = re.search(r"(\d{1,2})\s+$", text[:start])
    if before:
        start = before.start(1)
    after = re.match(r"\s+(\d{4})\b", text[end:])
    if after:
        end += after.end()
    return start, end


def _render_date(text: str, language: str) -> str:
    if language == "ar":
        return text
    rendered = []
    for token in text.split():
        norm = normalize(token).removeprefix("و")
        rendered.append(_DAYS_EN.get(norm) or _MONTHS_EN.get(norm) or token)
    return " ".join(rendered)


def _focus(sentence: Sentence, anchor: int | None, question: Question) -> tuple[int, int]:
    """The whole sentence, or for a long one the clauses around the answer (still an exact span)."""
    if len(sentence.text.split()) <= MAX_QUOTE_WORDS:
        return sentence.start, sentence.end
    bounds = [0] + [m.end() for m in re.finditer(r"[،,;:؛]\s*", sentence.text)] + [len(sentence.text)]
    clauses = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i] < bounds[i + 1]]
    wanted = set(question.terms)
    if anchor is None:
        def density(clause):
            return sum(1 for s, _, w in _word_spans(sentence.text[clause[0]:clause[1]]) if w in wanted)
        center = max(range(len(clauses)), key=lambda i: density(clauses[i]))
    else:
        center = next((i for i, (s, e) in enumerate(clauses) if s <= anchor < e), 0)  # anchor: offset in the sentence
    low = high = center
    count = lambda a, b: len(sentence.text[clauses[a][0]:clauses[b][1]].split())  # noqa: E731
    while True:
        grown = False
        if low > 0 and count(low - 1, high) <= MAX_QUOTE_WORDS:
            low, grown = low - 1, True
        if high < len(clauses) - 1 and count(low, high + 1) <= MAX_QUOTE_WORDS:
            high, grown = high + 1, True
        if not grown:
            break
    start, end = clauses[low][0], clauses[high][1]
    quote = sentence.text[start:end].rstrip(" ،,;:؛")
    return sentence.start + start, sentence.start + start + len(quote)


# --- writing the answer ------------------------------------------------------------------------

def _citation(n: int, claim_or_candidate, index, related: bool = False) -> Citation:
    if isinstance(claim_or_candidate, Claim):
        candidate, start, end = claim_or_candidate.candidate, claim_or_candidate.start, claim_or_candidate.end
    else:
        candidate = claim_or_candidate
        start, end = candidate.sentence.start, candidate.sentence.end
    article = index.article(candidate.sentence.article_id)
    return Citation(n=n, source=article.source, title=article.title, quote=article.text[start:end], start=start,
                    end=end, score=round(candidate.probability, 4), article_id=article.id, date=article.date,
                    related=related)


def _compose(question: Question, claims: list[Claim], index, confidence: float) -> Answer:
    """Short answer(s) first, then the quotes; figures from several articles grouped by value."""
    texts = _TEXTS[question.language]
    citations = [_citation(n, claim, index) for n, claim in enumerate(claims, start=1)]
    groups: dict = {}
    for claim, citation in zip(claims, citations):
        if claim.value:
            groups.setdefault(claim.value, []).append((claim, citation))
    conflict = len(groups) > 1
    lines = []
    if conflict:
        lines.append(texts["differ"])
        lines += [f"- {group[0][0].short} " + " ".join(f"[{c.n}]" for _, c in group) for group in groups.values()]
    elif claims[0].short:
        same = [c for claim, c in zip(claims, citations) if claims[0].value and claim.value == claims[0].value]
        markers = " ".join(f"[{c.n}]" for c in same or citations[:1])  # a date is read from the first quote only
        lines.append(f"{claims[0].short} {markers}")
    elif texts["quotes"]:
        lines.append(texts["quotes"])
    lines += [f"«{c.quote}» [{c.n}]" for c in citations]
    return Answer(text="\n".join(lines), abstained=False, citations=citations,
                  short_answer=None if conflict else claims[0].short, language=question.language,
                  confidence=round(confidence, 4), conflict=conflict)


def _abstention(question: Question, closest: list[Candidate], index, confidence: float) -> Answer:
    texts = _TEXTS[question.language]
    related = [_citation(n, c, index, related=True) for n, c in enumerate(closest, start=1)]
    text = texts["abstain"] + (" " + texts["related"] if related else "")
    return Answer(text=text, abstained=True, citations=related, language=question.language,
                  confidence=round(confidence, 4))

