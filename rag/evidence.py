"""Evidence: what a question asks for, and how well each retrieved sentence answers it.

Every sentence of the retrieved chunks gets a small feature vector (dense similarity
from the sentence embeddings stored at index time, lexical coverage and proximity of
the question's stemmed terms, whether the expected answer type is present, ...).
A logistic model whose weights were *learned* (``python -m eval.fit_answer``, saved in
``rag/answer_model.json``) turns it into the probability that the sentence holds the
answer; a second one, the abstention gate, decides whether the best evidence is enough.
"""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.arabic import STOPWORDS, is_arabic, normalize, read_numbers, stem, terms, words
from rag.types import Hit, Sentence

MODEL_FILE = Path(__file__).with_name("answer_model.json")

# --- the question ---------------------------------------------------------------------

# Expected answer type from the question words (normalized forms; colloquial ones included).
_TYPE_CUES = [
    ("number", r"^(?:و|ف)?(?:كم|بكم|قديش|اديش|كام)\b|\bعدد\b|\bhow (?:many|much)\b|\bwhat (?:number|percentage)\b"),
    ("date", r"^(?:و|ف)?(?:متي|امتي|ايمتي)\b|\b(?:اي|اية) (?:يوم|شهر|عام|سنه|تاريخ)\b|\bwhen\b|\bwhat (?:day|date|month|year)\b"
             r"|\bwhich (?:day|date|month|year)\b"),
    ("place", r"^(?:و|ف)?(?:اين|وين|فين)\b|\b(?:اي|اية) (?:مدينه|منطقه|قريه|دوله|بلد|مكان|ساحه)\b|\bwhere\b"
              r"|\bwhich (?:city|village|region|country|place|town)\b"),
    ("entity", r"^(?:و|ف)?(?:من|مين|منو)\b|\b(?:اي|اية) (?:وكاله|جهه|صحيفه|شبكه|منظمه|محطه|منصه|دوله|وزير)\b"
               r"|\bwho(?:m|se)?\b|\bwhich (?:agency|newspaper|network|organi[sz]ation|station|platform|country|minister)\b"),
]
_FOLLOW_UP = re.compile(r"^(?:و|ف)(?:حسب|ماذا|ما|من|مين|اين|متي|كم|هل|بالنسبه|عن|مع|في|لماذا)\b|^(?:and|what about|how about|"
                        r"according to)\b|\b(?:he|she|they|him|her|them|his|their|its|it)\b")


@dataclass(frozen=True)
class Question:
    text: str
    language: str  # "ar" or "en"
    answer_type: str  # "number", "date", "place", "entity" or "clause"
    terms: tuple[str, ...]  # stemmed content terms, the previous turn's included for a follow-up
    own_terms: tuple[str, ...]  # this turn's terms only
    numbers: frozenset[float]
    follow_up: bool
    # What a "how many" question counts, as groups, each one thing the evidence must name. Arabic: the
    # noun's skeleton, "كم دبابة" -> ({دبب},). English, through a lexicon: Arabic word forms,
    # "how many soldiers were wounded" -> ({جنود, قوات, ...}, {جرحي, مصابين, ...}).
    focus: tuple[frozenset[str], ...] = ()


def analyse(question: str, previous: str | None = None) -> Question:
    """Read the question (and, for a follow-up, the previous one) once."""
    norm = normalize(question).strip()
    own = tuple(dict.fromkeys(terms(question)))
    follow_up = previous is not None and (len(own) <= 3 or bool(_FOLLOW_UP.search(norm)))
    answer_type = _answer_type(norm)
    if follow_up:
        if answer_type == "clause" and not re.search(r"\b(?:ماذا|لماذا|كيف|what|why|how)\b", norm):
            answer_type = _answer_type(normalize(previous))
        combined = tuple(dict.fromkeys(own + tuple(terms(previous))))
    else:
        combined = own
    return Question(question, "ar" if is_arabic(question) else "en", answer_type, combined, own,
                    frozenset(n.value for n in read_numbers(question)), follow_up, _focus(norm))


# "كم دبابة"، "ما عدد الجرحى": the counted noun, whose absence makes a "how many" question unanswerable.
_FOCUS = (re.compile(r"(?:^|\s)(?:و|ف|ب)?عدد\s+([^\W\d_]+)"),
          re.compile(r"(?:^|\s)(?:و|ف)?(?:كم|قديش|كام)\s+([^\W\d_]+)"))
FOCUS_LETTERS = 3


def skeleton(word: str) -> str:
    """First consonants of a word, long vowels dropped: "الجنود", "جندي", "جنديا" -> "جند"; "دبابات" -> "دبب".

    Broken plurals defeat the stemmer ("جنود" vs "جندي"); the consonant skeleton mostly survives them.
    """
    word = word.removeprefix("ال")
    return (word[:1] + re.sub("[اوي]", "", word[1:]))[:FOCUS_LETTERS]


def _focus(norm: str) -> tuple[frozenset[str], ...]:
    for pattern in _FOCUS:
        for match in pattern.finditer(norm):
            word = match.group(1)
            if word not in STOPWORDS and len(word.removeprefix("ال")) >= 3:
                return (frozenset({skeleton(word)}),)
    counted = _COUNTED_EN.search(norm)
    return _english_focus(counted.group(1)) if counted else ()


# English words a "how many" question counts, and the Arabic words a news article would use for them.
# A hand-made lexicon for the news domain: without it an English question cannot tell that no retrieved
# Arabic sentence mentions tanks. Words that are absent here are simply not checked.
_EN_COUNTED = {
    "soldier troop force army serviceman": "جندي جنود قوات قوة عسكري عسكريين جيش جيوش",
    "tank": "دبابة دبابات",
    "missile rocket": "صاروخ صواريخ قذيفة",
    "shell ammunition": "قذيفة قذائف ذخيرة ذخائر",
    "drone": "مسيرة مسيرات درون",
    "jet plane aircraft warplane helicopter": "طائرة طائرات مروحية",
    "ship vessel warship boat": "سفينة سفن بارجة قارب زورق",
    "weapon gun rifle": "سلاح أسلحة بندقية",
    "satellite": "قمر أقمار",
    "refugee": "لاجئ لاجئين",
    "civilian": "مدني مدنيين",
    "child children": "طفل أطفال",
    "people person resident inhabitant population": "شخص أشخاص سكان نسمة مواطن مواطنين",
    "worker": "عامل عمال",
    "officer general": "ضابط ضباط جنرال لواء",
    "money dollar euro ruble cost price salary": "دولار يورو روبل مال أموال تكلفة سعر راتب",
    "village town city": "قرية قرى بلدة مدينة مدن",
    "country nation": "دولة دول بلد بلدان",
    "vote seat": "صوت أصوات مقعد مقاعد",
    "kilometer mile": "كيلومتر كيلومترات ميل",
}
# What happened to the counted: checked wherever it appears ("how many soldiers were wounded").
_EN_STATES = {
    "wounded injured injury": "جرحى جريح مصاب مصابين إصابة إصابات",
    "killed dead death casualty fatality": "قتلى قتيل مقتل قتل مصرع وفاة وفيات ضحايا",
    "captured prisoner captive detained arrested": "أسرى أسير أسر معتقل معتقلين اعتقال احتجاز",
    "missing": "مفقود مفقودين",
    "displaced": "نازح نازحين تهجير",
}


@functools.lru_cache(maxsize=1)
def _english_lexicon() -> dict[str, tuple[bool, frozenset[str]]]:
    """English stem -> (is a state, its Arabic word forms, normalized); one group per line above.
    Whole forms, not skeletons: "أسرى" must not match "أسرة" (family), nor "احتجاز" "احتلال"."""
    lexicon = {}
    for is_state, table in ((False, _EN_COUNTED), (True, _EN_STATES)):
        for english, arabic in table.items():
            group = frozenset(normalize(word) for word in arabic.split())
            lexicon.update({stem(word): (is_state, group) for word in english.split()})
    return lexicon


def _english_focus(asked: str) -> tuple[frozenset[str], ...]:
    """The first counted thing after "how many" ("how many were killed": the killed), and every state named after it."""
    lexicon, groups, counted = _english_lexicon(), [], False
    for word_stem in map(stem, re.findall(r"[a-z]+", asked)):
        if word_stem not in lexicon:
            continue
        is_state, group = lexicon[word_stem]
        if (is_state or not counted) and group not in groups:
            groups.append(group)
        counted = True
    return tuple(groups)


_COUNTED_EN = re.compile(r"\b(?:how (?:many|much)|number of)\b(.*)")


def _answer_type(norm: str) -> str:
    for name, pattern in _TYPE_CUES:
        if re.search(pattern, norm):
            return name
    return "clause"


# --- features of a sentence -------------------------------------------------------------

_DAYS = "الاثنين|الثلاثاء|الاربعاء|الخميس|الجمعه|السبت|الاحد|monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_MONTHS = ("يناير|فبراير|مارس|ابريل|مايو|يونيو|يوليو|اغسطس|سبتمبر|اكتوبر|نوفمبر|ديسمبر|كانون|شباط|اذار|نيسان|ايار|"
           "حزيران|تموز|اب|ايلول|تشرين|january|february|march|april|may|june|july|august|september|october|"
           "november|december")
DATE_PATTERN = re.compile(rf"\b(?:{_DAYS}|{_MONTHS}|امس|الاسبوع الماضي|العام الماضي|هذا الشهر|(?:1[5-9]|20)\d\d)\b")
_ENTITY_CUES = re.compile(r"\b(?:ال)?(?:رئيس|وزير|وزيره|متحدث|مستشار|امين|سكرتير|نائب|زعيم|سفير|مسؤول|وكاله|صحيفه|شبكه|"
                          r"جهاز|هيئه|مصدر|مدونون|مدونين|محطه|مركز|حلف|قال|قالت|اعلن|اكد|اكدت|ذكر|ذكرت|افاد|افادت|اشار|"
                          r"وصف|نفي|نفت)\b")
_LATIN_NAME = re.compile(r"\b[A-Z][a-z]+")
_PLACE_CUES = re.compile(r"\b(?:في|الي|من|قرب|بالقرب من) (?:ال)?(?:منطقه|مدينه|قريه|العاصمه|اقليم|ساحه|حدود|شرق|غرب|"
                         r"شمال|جنوب|اقصي)|\b(?:موسكو|كييف|سيول|بيونغ يانغ|كورسك|دونيتسك|روسيا|اوكرانيا|الصين)\b")

FEATURES = ("dense", "dense_gap", "previous_dense", "chunk_rank", "cover", "own_cover", "prefix_cover", "bigrams",
            "previous_cover", "proximity", "missing_idf", "type_number", "type_date", "type_place", "type_entity",
            "length", "headline", "arabic_cover", "focus")
PREFIX = 4  # letters of a stem compared by `prefix_cover`: Arabic stemming misses many shared roots


@dataclass(frozen=True)
class Candidate:
    """A sentence of a retrieved chunk with its features and learned score."""

    sentence: Sentence
    row: int  # row in the index's sentence table
    features: tuple[float, ...]
    score: float = 0.0  # the linear model's score
    probability: float = 0.0  # softmax of the scores over this question's candidates


@functools.lru_cache(maxsize=65536)
def _sentence_terms(text: str) -> tuple[str, ...]:
    return tuple(terms(text))


def candidates(question: Question, query_vector: np.ndarray, hits: list[Hit], index) -> list[Candidate]:
    """Every distinct sentence of the hits, with features (order: by the hits' rank)."""
    rows, chunk_rank = [], {}
    for hit in hits:
        for row in index.sentence_rows(hit.chunk.id):
            if row not in chunk_rank:
                rows.append(row)
                chunk_rank[row] = hit.rank
    if not rows:
        return []
    query = query_vector.astype(np.float32)
    previous_rows = [row - 1 if row > 0 and index.sentence_table[row - 1, 0] == index.sentence_table[row, 0] else row
                     for row in rows]
    dense = np.asarray(index.sentence_vectors[rows], np.float32) @ query
    previous_dense = np.asarray(index.sentence_vectors[previous_rows], np.float32) @ query
    best_dense = float(dense.max())
    weights = idf(index, question.terms)
    result = []
    for row, previous_row, similarity, before in zip(rows, previous_rows, dense.tolist(), previous_dense.tolist()):
        sentence = index.sentence(row)
        previous = index.sentence(previous_row).text if previous_row != row else ""
        features = _features(question, sentence, previous, similarity, before, best_dense, chunk_rank[row], weights)
        result.append(Candidate(sentence, row, features))
    return result


def _features(question: Question, sentence: Sentence, previous: str, dense: float, previous_dense: float,
              best_dense: float, rank: int, idf: dict[str, float]) -> tuple[float, ...]:
    sentence_terms = _sentence_terms(sentence.text)
    present = set(sentence_terms)
    prefixes = {t[:PREFIX] for t in present}
    cover = _cover(idf, present)
    own = {t: idf.get(t, 0.0) for t in question.own_terms}
    missing = max((weight for term, weight in idf.items() if term not in present), default=0.0)
    norm = normalize(sentence.text)
    new_numbers = [n for n in read_numbers(sentence.text) if n.value not in question.numbers]
    pairs = list(zip(question.terms, question.terms[1:]))
    sentence_pairs = set(zip(sentence_terms, sentence_terms[1:]))
    kind = question.answer_type
    return (
        dense,
        dense - best_dense,
        previous_dense,
        1.0 / (1.0 + rank),
        cover,
        _cover(own, present),
        _cover({t[:PREFIX]: w for t, w in idf.items()}, prefixes),
        sum(pair in sentence_pairs for pair in pairs) / len(pairs) if pairs else 0.0,
        _cover(idf, set(_sentence_terms(previous))) if previous else 0.0,
        _proximity(sentence_terms, set(idf)),
        missing / (max(idf.values(), default=1.0) or 1.0),
        float(kind == "number" and bool(new_numbers)),
        float(kind == "date" and bool(DATE_PATTERN.search(norm))),
        float(kind == "place" and bool(_PLACE_CUES.search(norm))),
        float(kind == "entity" and bool(_ENTITY_CUES.search(norm) or _LATIN_NAME.search(sentence.text))),
        math.log1p(len(sentence_terms)) / 4.0,
        float(sentence.start == 0),
        cover if question.language == "ar" else 0.0,
        _has_focus(question, words(sentence.text)),
    )


def _has_focus(question: Question, sentence_words: list[str]) -> float:
    """1 when the sentence names every counted thing, 0 when it misses one, 0.5 when nothing is counted."""
    if not question.focus:
        return 0.5
    if question.language == "ar":
        present = {s for word in sentence_words for s in (skeleton(word), skeleton(word[1:]))}
    else:
        bare = {word.removeprefix(prefix) for word in sentence_words for prefix in _PROCLITICS}
        present = bare | {word.removesuffix(suffix) for word in bare for suffix in _ENCLITICS}
    return float(all(group & present for group in question.focus))


_PROCLITICS = ("", "و", "ف", "ب", "ل", "ال", "وال", "فال", "بال", "لل", "ولل")
_ENCLITICS = ("ها", "هم", "ه", "ا")  # "قواتها", "جنوده", "صاروخا"


def _cover(weights: dict[str, float], present: set[str]) -> float:
    """IDF-weighted share of the question's terms found in ``present``."""
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in present) / total if total else 0.0


def _proximity(sentence_terms: tuple[str, ...], wanted: set[str]) -> float:
    """1 / (1 + gaps) of the shortest window holding every matched question term."""
    positions = [(i, t) for i, t in enumerate(sentence_terms) if t in wanted]
    matched = {t for _, t in positions}
    if len(matched) < 2:
        return float(len(matched))
    best, counts, left = len(sentence_terms), {}, 0
    for right, (position, term) in enumerate(positions):
        counts[term] = counts.get(term, 0) + 1
        while len(counts) == len(matched):
            best = min(best, position - positions[left][0] + 1)
            left_term = positions[left][1]
            counts[left_term] -= 1
            if counts[left_term] == 0:
                del counts[left_term]
            left += 1
    return 1.0 / (1.0 + best - len(matched))


def idf(index, question_terms) -> dict[str, float]:
    """BM25-style IDF of each question term over the index's chunks (unknown terms get the maximum)."""
    bm25 = index.bm25
    vocab = bm25.vocab_dict
    indptr = bm25.scores["indptr"]
    documents = max(1, int(bm25.scores.get("num_docs", len(index))))
    weights = {}
    for term in question_terms:
        token = vocab.get(term)
        frequency = 0 if token is None else int(indptr[token + 1] - indptr[token])
        weights[term] = math.log(1.0 + (documents - frequency + 0.5) / (frequency + 0.5))
    return weights


# --- the learned model ---------------------------------------------------------------------

@dataclass(frozen=True)
class Model:
    """A linear sentence scorer (fitted listwise) and a logistic abstention gate, on standardized features."""

    mean: np.ndarray
    scale: np.ndarray
    sentence_weights: np.ndarray
    gate_weights: dict[str, np.ndarray]  # per question language: bias first, over GATE_FEATURES
    gate_thresholds: dict[str, float]

    def sentence_score(self, features: tuple[float, ...]) -> float:
        return float(((np.asarray(features) - self.mean) / self.scale) @ self.sentence_weights)

    def gate_probability(self, gate_features: tuple[float, ...], language: str) -> float:
        weights = self.gate_weights[language]
        return _sigmoid(weights[0] + np.asarray(gate_features) @ weights[1:])


# The gate is fitted per question language: lexical evidence means nothing for an English question.
GATE_FEATURES = ("best_score", "best_probability", "best_cover", "best_missing_idf", "best_type_present",
                 "best_dense", "best_focus")


def gate_features(ranked: list[Candidate], answer_type: str) -> tuple[float, ...]:
    """What the abstention gate sees: how good the best sentence is in absolute terms."""
    if not ranked:
        return (-10.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    best = ranked[0]
    named = dict(zip(FEATURES, best.features))
    type_present = 1.0 if answer_type == "clause" else named[f"type_{answer_type}"]
    return (best.score, best.probability, named["cover"], named["missing_idf"], type_present, named["dense"],
            named["focus"])


@functools.lru_cache(maxsize=4)
def load_model(path: Path = MODEL_FILE) -> Model:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if tuple(data["features"]) != FEATURES or tuple(data["gate_features"]) != GATE_FEATURES:
        raise ValueError(f"{path} was fitted on other features; refit with `python -m eval.fit_answer`")
    return Model(np.array(data["mean"]), np.array(data["scale"]), np.array(data["sentence_weights"]),
                 {lang: np.array(w) for lang, w in data["gate_weights"].items()},
                 {lang: float(t) for lang, t in data["gate_thresholds"].items()})


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, float(value))))))


def score(found: list[Candidate], model: Model) -> list[Candidate]:
    """Candidates with scores and within-question softmax probabilities, best first."""
    if not found:
        return []
    scores = np.array([model.sentence_score(c.features) for c in found])
    weights = np.exp(scores - scores.max())
    probabilities = weights / weights.sum()
    scored = [Candidate(c.sentence, c.row, c.features, float(s), float(p))
              for c, s, p in zip(found, scores, probabilities)]
    return sorted(scored, key=lambda c: -c.score)


def rank(question: Question, query_vector: np.ndarray, hits: list[Hit], index, model: Model) -> list[Candidate]:
    """Candidates scored by the learned model, best first."""
    return score(candidates(question, query_vector, hits, index), model)
