"""Arabic text handling: normalization for matching, sentence spans, word tokens, numbers.

Normalization is only ever used to *match* (BM25, lexical overlap, answer keys);
what the reader sees and what citations quote is always the original text, so the
functions that split text return offsets into the original string.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

# --- normalization -----------------------------------------------------------------

_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed]")
_TATWEEL = "\u0640"
_LETTERS = str.maketrans({
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ٲ": "ا", "ٳ": "ا",
    "ؤ": "و", "ئ": "ي", "ى": "ي", "ی": "ي", "ة": "ه", "ک": "ك",
    **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic digits
    **{chr(0x06F0 + d): str(d) for d in range(10)},  # Persian digits
    "٫": ".", "٬": ",", "،": "،",
})


def normalize(text: str) -> str:
    """Fold the spellings an Arabic reader treats as the same word (for matching only).

    Hamza carriers -> bare letters, taa marbuta -> haa, alef maqsura -> yaa,
    diacritics and tatweel removed, Arabic-Indic/Persian digits -> 0-9, lower case.
    """
    return strip_diacritics(text).translate(_LETTERS).lower()


def strip_diacritics(text: str) -> str:
    """The text without diacritics and tatweel, letters kept as written (what the reader reads of a question:
    few training questions carry full diacritics, and a question is never quoted)."""
    return _DIACRITICS.sub("", text).replace(_TATWEEL, "")


def is_arabic(text: str) -> bool:
    """True when Arabic letters outnumber Latin ones (the question's language decides the framing)."""
    arabic = sum(1 for ch in text if "\u0600" <= ch <= "\u06ff" or "\u0750" <= ch <= "\u077f")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return arabic >= latin and arabic > 0


# --- sentences -----------------------------------------------------------------------

# A sentence ends at . ! ? ؟ ؛ … (plus closing quotes/brackets right after) or at a line
# break. The Arabic comma "،" does not end a sentence; a full stop between digits (1.2) neither.
_SENTENCE_END = re.compile(r"(?:(?<!\d)\.|\.(?!\d)|[!?؟؛…])+[\"'”’»)\]]*|\n+")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of ``text[start:end]``, trimmed of surrounding white space."""
    end = len(text) if end is None else end
    spans, cursor = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        _add_trimmed(text, cursor, match.end(), spans)
        cursor = match.end()
    _add_trimmed(text, cursor, end, spans)
    return spans


def _add_trimmed(text: str, start: int, end: int, spans: list) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end and any(ch.isalnum() for ch in text[start:end]):
        spans.append((start, end))


# --- words ---------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:[.,][0-9]+)*", re.UNICODE)

# Function words that carry no topic (normalized forms). Question words are kept out of
# BM25 but the answer layer reads them from the raw question.
STOPWORDS = frozenset(normalize(w) for w in """
في من على الى إلى عن مع ان أن إن كان كانت قد لقد لا لم لن ما ماذا متى اين أين كيف كم هل هو هي هم
هذا هذه ذلك تلك التي الذي الذين و او أو ثم بل لكن حتى منذ بين عند بعد قبل كل بعض غير اي أي
يوم اليوم حسب وفق وفقا وفقاً خلال ايضا أيضا قال قالت وقال وقالت به بها له لها فيه فيها عليه عليها
الى الي إليه منه منها عنه عنها وهو وهي انه أنه إنه انها أنها إنها لدى لدي كما وكان وكانت فقد وقد
قديش كام مين فين ليش شو وين اديش ايش
the a an of in on at to for from by with is are was were be been it its this that these those
and or but not no what which who whom whose when where why how many much did does do has have had
according say said says about into than then there their they he she his her as also
""".split())


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: Snowball's Arabic and English stemmers, in C

    return {"ar": Stemmer.Stemmer("arabic"), "en": Stemmer.Stemmer("english")}


def words(text: str) -> list[str]:
    """Normalized word forms (no stemming), in order."""
    return _WORD.findall(normalize(text))


def stem(word: str) -> str:
    """Snowball stem of a normalized word (Arabic or English by its script)."""
    stemmers = _stemmer()
    if word.isascii():
        return stemmers["en"].stemWord(word) if word.isalpha() else word
    return stemmers["ar"].stemWord(word)


def terms(text: str) -> list[str]:
    """Stemmed content words: the vocabulary of BM25 and of the lexical answer features."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and not _is_bare_prefix(w)]


def _is_bare_prefix(word: str) -> bool:
    return len(word) < 2 and not word.isdigit()


# --- numbers -------------------------------------------------------------------------

_UNITS = {normalize(w): v for w, v in {
    "واحد": 1, "واحدة": 1, "اثنان": 2, "اثنين": 2, "اثنتان": 2, "ثلاثة": 3, "ثلاث": 3, "أربعة": 4, "أربع": 4,
    "خمسة": 5, "خمس": 5, "ستة": 6, "ست": 6, "سبعة": 7, "سبع": 7, "ثمانية": 8, "ثماني": 8, "ثمان": 8,
    "تسعة": 9, "تسع": 9, "عشرة": 10, "عشر": 10, "عشرين": 20, "عشرون": 20, "ثلاثين": 30, "ثلاثون": 30,
    "أربعين": 40, "خمسين": 50, "مئة": 100, "مائة": 100, "مئات": 100,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "twelve": 12, "twenty": 20, "hundred": 100,
}.items()}
_SCALES = {normalize(w): v for w, v in {
    "ألف": 1_000, "آلاف": 1_000, "الف": 1_000, "ألفا": 1_000, "ألفاً": 1_000, "الاف": 1_000,
    "مليون": 1_000_000, "ملايين": 1_000_000, "مليار": 1_000_000_000, "مليارات": 1_000_000_000,
    "thousand": 1_000, "thousands": 1_000, "million": 1_000_000, "millions": 1_000_000, "billion": 1_000_000_000,
}.items()}
_BOUNDS = {normalize(w): v for w, v in {
    "أكثر من": "more than", "اكثر من": "more than", "ما يزيد على": "more than", "ما يزيد عن": "more than",
    "أقل من": "less than", "نحو": "about", "حوالي": "about", "حوالى": "about", "قرابة": "about",
    "ما يصل إلى": "up to", "ما يصل الى": "up to", "حتى": "up to",
    "more than": "more than", "over": "more than", "up to": "up to", "about": "about", "around": "about",
    "nearly": "about", "less than": "less than",
}.items()}

@dataclass(frozen=True)
class Number:
    """A quantity read from text: its value, its span in the *original* text, and a bound word."""

    value: float
    start: int
    end: int
    bound: str | None = None  # "more than", "up to", "about", "less than"
    bound_start: int | None = None  # where the bound phrase starts in the original text


def read_numbers(text: str) -> list[Number]:
    """Numbers in ``text`` with their offsets: ``8 آلاف``, ``ثمانية آلاف``, ``1.2 مليون``, ``١٥٠٠``.

    Normalization keeps digits at the same positions only if no diacritics are removed,
    so we scan a length-preserving copy (digits mapped, nothing deleted).
    """
    flat = text.translate(_DIGITS_ONLY)
    found: list[Number] = []
    for match in re.finditer(rf"\d+(?:[.,]\d{{3}}(?!\d))*(?:\.\d+)?|{_LETTERS_RUN}", flat):
        token = match.group()
        start, end = match.span()
        if found and start < found[-1].end:  # the scale word of the previous number
            continue
        if token[0].isdecimal():  # not isdigit(): "¹" is a digit that float() cannot read
            value = _digits_value(token)
        else:
            key = normalize(token)
            key = key[1:] if key[:1] in ("و", "ب") and key[1:] in _UNITS else key
            if key not in _UNITS and key not in _SCALES:
                continue
            value = float(_UNITS.get(key, 1))
            if key in _SCALES:  # a bare "ألف" = 1000, "آلاف" alone = "thousands": skip the vague plural
                if key in ("الاف", "thousands", "millions", "ملايين"):
                    continue
                value = float(_SCALES[key])
                found.append(Number(value, start, end, *_bound_before(flat, start)))
                continue
        scale_match = re.match(rf"\s+({_LETTERS_RUN})", flat[end:])
        if scale_match and normalize(scale_match.group(1)) in _SCALES:
            value *= _SCALES[normalize(scale_match.group(1))]
            end += scale_match.end()
        if found and found[-1].end == start:  # "ثلاث" right after a digit run: not a second number
            continue
        if not math.isfinite(value):  # a run of 309+ digits is no quantity (and float() makes it inf)
            continue
        found.append(Number(value, start, end, *_bound_before(flat, start)))
    return found


_LETTERS_RUN = r"[^\W\d_](?:[^\W\d_]|[\u064b-\u065f\u0670\u0640])*"  # a word, diacritics and tatweel included
_DIGITS_ONLY = str.maketrans({**{chr(0x0660 + d): str(d) for d in range(10)},
                              **{chr(0x06F0 + d): str(d) for d in range(10)}, "٫": ".", "٬": ","})


def _digits_value(token: str) -> float:
    """The value of a digit run with separators (as `read_numbers` matches them) in any digit system.

    Commas always group thousands (the pattern allows them only before three digits). A lone
    dot is the decimal point ("1.5", "1,234.5"); dots that repeat group thousands, as many
    Arabic texts write them ("7.600.000"), except a last one before other than three digits
    ("1.234.5"); a dot before a comma groups too ("1.234,567").
    """
    head, _, tail = token.rpartition(".")
    dots = token.count(".")
    if dots == 0 or "," in tail or (dots > 1 and len(tail) == 3):
        return float(token.replace(",", "").replace(".", ""))
    return float(f"{head.replace(',', '').replace('.', '')}.{tail}")


def _bound_before(text: str, start: int) -> tuple[str | None, int | None]:
    """("more than", offset of "أكثر من") when a bound phrase precedes the number at ``start``."""
    before = normalize(text[max(0, start - 20):start]).rstrip(" \"'“”«»(")
    for phrase, bound in _BOUNDS.items():
        if before.endswith(phrase):
            words_before = [m.start() for m in re.finditer(r"\S+", text[:start].rstrip(" \"'“”«»("))]
            count = len(phrase.split())
            return bound, words_before[-count] if len(words_before) >= count else None
    return None, None


def canonical_numbers(text: str) -> str:
    """``text`` normalized with every number rewritten as plain digits ("8 آلاف" -> "8000").

    Used to match answer keys and to check that a generated sentence's figures occur in a quote.
    """
    pieces, cursor = [], 0
    for number in read_numbers(text):
        pieces.append(text[cursor:number.start])
        pieces.append(format_number(number.value))
        cursor = number.end
    pieces.append(text[cursor:])
    return normalize("".join(pieces))


def format_number(value: float) -> str:
    """Plain digits: 8000.0 -> "8000", 1.5 -> "1.5"."""
    return str(int(value)) if value == int(value) else f"{value:g}"
