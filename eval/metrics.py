"""Deterministic answer metrics: pure functions of strings, numbers and `Citation`s (no model, no LLM judge).

Everything is matched after the product's own normalization (`rag.arabic.canonical_numbers`:
letters folded, diacritics out, every number rewritten as plain digits), so "8,000", "8 آلاف" and
"ثمانية آلاف" are the same figure here as they are to the answer layer.

Citation rules (ALCE, Gao et al. 2023, with a lexical check instead of an NLI model):

* The answer text is cut into *statements*: sentences (a «...» quote is never cut inside), and a
  sentence with several marker groups is cut after each group but the last ("8000 [1]، و11000 [2].").
* A quote *supports* a statement when every number of the statement is among the quote's numbers
  and at least half of its Arabic content words (`terms`) occur in the quote. Only Arabic words are
  compared because the articles are Arabic: an English sentence is checked by its numbers alone.
* A statement with no number and no Arabic content word (English framing such as "The articles
  give different figures:") is exempt: there is nothing in it a quote could confirm or contradict.
  The few Arabic framing words of the answer layer ("تختلف المصادر في هذا:") do not count as
  content words (`FRAMING_WORDS`), and a quote word with a one-letter proclitic also matches the
  bare word ("بأكثر" supports "أكثر").
* Citation recall: share of the other statements whose markers, taken together, support them.
  Citation precision: share of markers that are needed: the statement is supported by all its
  markers and this one either supports it alone or the others do not without it. A marker that
  names no citation, or a `related` one (offered beside an abstention, not as support), never supports.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rag.arabic import canonical_numbers, is_arabic, read_numbers, split_sentences, stem, terms, words
from rag.types import Citation

MARKER_GROUP = re.compile(r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])+")
MARKER_NUMBER = re.compile(r"\d+")
QUOTE = re.compile(r"«[^«»]*»")
_SENTENCE_PUNCTUATION = re.compile(r"[.!?؟؛…\n]")
SUPPORT_SHARE = 0.5  # share of a statement's Arabic content words its quotes must contain
PROCLITICS = "وبفلك"  # one-letter prefixes a quote may glue to a word the answer writes bare
# Words that frame an answer rather than state a fact ("تختلف المصادر في هذا:", "تتفق المصادر:"):
# not checked against quotes, the way English framing is not.
FRAMING_WORDS = frozenset(terms("تختلف تتفق المصادر المصدر المقالات المقالة الإجابة السؤال"))


# --- answer keys -----------------------------------------------------------------------

def strip_markers(text: str) -> str:
    """The text without ``[n]`` markers, so a marker's digit is never read as a figure."""
    return MARKER_GROUP.sub("", text)


def canonical(text: str) -> str:
    """Normalized text with plain-digit numbers, case-folded, white space collapsed."""
    return " ".join(canonical_numbers(text).casefold().split())


def key_matches(key: str, text: str) -> bool:
    """Does an answer key occur in ``text``? A numeric key must not touch other digits (12 is not in 12000)."""
    key, text = canonical(key), canonical(strip_markers(text))
    if not key:
        return False
    if re.fullmatch(r"[\d.]+", key):
        return re.search(rf"(?<![\d.]){re.escape(key)}(?!\d|\.\d)", text) is not None
    return key in text


def any_key_matches(keys: Sequence[str], text: str) -> bool:
    return any(key_matches(key, text) for key in keys)


# --- retrieval ---------------------------------------------------------------------------

def first_rank(matches: Sequence[bool]) -> int | None:
    """1-based position of the first True, None when there is none (a miss)."""
    return next((rank for rank, hit in enumerate(matches, start=1) if hit), None)


def article_rank(article_ids: Sequence[str], gold: set[str]) -> int | None:
    """Rank of the first gold article among the distinct articles of the ranked chunks."""
    return first_rank([article in gold for article in dict.fromkeys(article_ids)])


def sentence_rank(chunk_texts: Sequence[str], support: Sequence[str]) -> int | None:
    """Rank of the first retrieved chunk that contains a whole support sentence."""
    return first_rank([any(sentence in text for sentence in support) for text in chunk_texts])


def recall_at(ranks: Sequence[int | None], k: int) -> float | None:
    return mean([rank is not None and rank <= k for rank in ranks])


def mrr(ranks: Sequence[int | None]) -> float | None:
    return mean([1.0 / rank if rank else 0.0 for rank in ranks])


# --- citations ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    text: str  # markers removed
    markers: tuple[int, ...]  # citation numbers it carries, in order


def statements(text: str) -> list[Statement]:
    """The answer's sentences and clauses with the markers each carries (see the module docstring)."""
    masked = QUOTE.sub(lambda m: _SENTENCE_PUNCTUATION.sub("x", m.group()), text)  # keep quotes whole
    pieces: list[str] = []
    for start, end in split_sentences(masked):
        piece = text[start:end]
        if pieces and not strip_markers(piece).strip(" .،,:;"):  # "... . [1]": the marker joins its sentence
            pieces[-1] += " " + piece
        else:
            pieces.append(piece)
    found = []
    for piece in pieces:
        for clause in _clauses(piece):
            markers = tuple(int(n) for group in MARKER_GROUP.findall(clause) for n in MARKER_NUMBER.findall(group))
            found.append(Statement(strip_markers(clause).strip(), markers))
    return [s for s in found if any(ch.isalnum() for ch in s.text)]


def _clauses(sentence: str) -> list[str]:
    """Cut after every marker group but the last; the text after the last group stays with it."""
    ends = [m.end() for m in MARKER_GROUP.finditer(sentence)][:-1]
    bounds = [0, *ends, len(sentence)]
    return [sentence[a:b] for a, b in zip(bounds, bounds[1:])]


def arabic_terms(text: str) -> set[str]:
    """Arabic content words, without number words (compared as numbers) and framing words."""
    return {term for term in terms(canonical_numbers(strip_markers(text)))
            if is_arabic(term) and term not in FRAMING_WORDS}


def evidence_terms(text: str) -> set[str]:
    """A quote's Arabic content words, each also without a one-letter proclitic ("بأكثر" gives "أكثر" too)."""
    bare = [word[1:] for word in words(canonical_numbers(text)) if len(word) > 3 and word[0] in PROCLITICS]
    return arabic_terms(text) | {stem(word) for word in bare if is_arabic(word)}


def number_values(text: str) -> set[float]:
    return {number.value for number in read_numbers(strip_markers(text))}


def is_exempt(statement: str) -> bool:
    """Pure framing: no number and no Arabic content word to check."""
    return not number_values(statement) and not arabic_terms(statement)


def supports(statement: str, quotes: Sequence[str]) -> bool:
    """All the statement's numbers and half its Arabic content words occur in the quotes."""
    evidence = " ".join(quotes)
    if not number_values(statement) <= number_values(evidence):
        return False
    wanted = arabic_terms(statement)
    return not wanted or len(wanted & evidence_terms(evidence)) >= SUPPORT_SHARE * len(wanted)


def _quotes(markers: Sequence[int], citations: Sequence[Citation]) -> list[str]:
    by_number = {c.n: c.quote for c in citations if not c.related}
    return [by_number[n] for n in markers if n in by_number]


def citation_scores(text: str, citations: Sequence[Citation]) -> tuple[float | None, float | None]:
    """(citation recall, citation precision) of one answer; None where nothing was there to score."""
    checked = [s for s in statements(text) if not is_exempt(s.text)]
    supported, needed, total = 0, 0, 0
    for statement in checked:
        markers = tuple(dict.fromkeys(statement.markers))
        joint = bool(markers) and supports(statement.text, _quotes(markers, citations))
        supported += joint
        for n in markers:
            total += 1
            others = [m for m in markers if m != n]
            needed += joint and (supports(statement.text, _quotes([n], citations))
                                 or not supports(statement.text, _quotes(others, citations)))
    recall = supported / len(checked) if checked else None
    return recall, (needed / total if total else None)


def groundedness(text: str, citations: Sequence[Citation]) -> float | None:
    """Share of the answer's distinct numbers and Arabic content words that occur in its supporting quotes."""
    evidence = " ".join(c.quote for c in citations if not c.related)
    items = {("n", v) for v in number_values(text)} | {("t", t) for t in arabic_terms(text)}
    if not items:
        return None
    found = {("n", v) for v in number_values(evidence)} | {("t", t) for t in evidence_terms(evidence)}
    return len(items & found) / len(items)


def exact_quotes(citations: Sequence[Citation], article_text) -> int:
    """How many citations slice back exactly: ``article_text(article_id)[start:end] == quote``."""
    exact = 0
    for citation in citations:
        try:
            exact += article_text(citation.article_id)[citation.start:citation.end] == citation.quote
        except (KeyError, IndexError):
            pass
    return exact


# --- short answers (SQuAD-style) ------------------------------------------------------------

ENGLISH_ARTICLES = frozenset({"a", "an", "the"})  # dropped, as SQuAD's own script does


def split_clitics(word: str) -> list[str]:
    """An Arabic word with its proclitics as tokens of their own: "والجيش" -> و، ال، جيش; "للجنود" -> ل، ال، جنود.
    Applied alike to prediction and gold, so a root letter taken for a clitic costs nothing."""
    parts, rest = [], word
    if rest[:1] in ("و", "ف") and len(rest) > 3:
        parts.append(rest[0])
        rest = rest[1:]
    if rest[:1] in ("ب", "ك", "ل") and len(rest) > 3:
        parts.append(rest[0])
        rest = rest[1:]
        if parts[-1] == "ل" and rest.startswith("ل") and len(rest) > 3:  # li + al is written "لل"
            parts.append("ال")
            rest = rest[1:]
    if rest.startswith("ال") and len(rest) > 3:
        parts.append("ال")
        rest = rest[2:]
    return parts + [rest]


def answer_tokens(text: str) -> list[str]:
    """SQuAD-style answer tokens: normalized, punctuation-free words, numbers as digits, English articles
    dropped and Arabic proclitics split off."""
    return [token for word in words(canonical_numbers(text)) if word not in ENGLISH_ARTICLES
            for token in (split_clitics(word) if not word.isascii() else [word])]


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    golds = [golds] if isinstance(golds, str) else golds
    return float(any(answer_tokens(prediction) == answer_tokens(gold) for gold in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 (Rajpurkar et al. 2016), the best over the gold answers."""
    golds = [golds] if isinstance(golds, str) else golds

    def f1(gold: str) -> float:
        predicted, expected = answer_tokens(prediction), answer_tokens(gold)
        common = sum((Counter(predicted) & Counter(expected)).values())
        if not common:
            return 0.0
        precision, recall = common / len(predicted), common / len(expected)
        return 2 * precision * recall / (precision + recall)
    return max((f1(gold) for gold in golds), default=0.0)


# --- aggregates ----------------------------------------------------------------------------

def mean(values) -> float | None:
    """Mean of the values that are not None; None when there are none (not measured, not zero)."""
    values = [float(v) for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def abstention_scores(answerable: Sequence[bool], abstained: Sequence[bool], correct: Sequence[bool]) -> dict:
    """The abstention gate as a classifier of unanswerable questions, and the confident mistakes it lets through.

    ``correct[i]``: an answer key matched (meaningful for answerable questions only).
    """
    rows = list(zip(answerable, abstained, correct))
    unanswerable = [r for r in rows if not r[0]]
    answered = [r for r in rows if r[0]]
    caught = sum(r[1] for r in unanswerable)
    return {
        "abstention_precision": ratio(caught, sum(r[1] for r in rows)),
        "abstention_recall": ratio(caught, len(unanswerable)),
        "abstention_accuracy": ratio(caught + sum(not r[1] for r in answered), len(rows)),
        "false_abstention_rate": ratio(sum(r[1] for r in answered), len(answered)),
        "wrong_confident_rate": ratio(sum(not r[1] and not r[2] for r in answered), len(answered)),
        "confident_unanswerable_rate": ratio(sum(not r[1] for r in unanswerable), len(unanswerable)),
    }
