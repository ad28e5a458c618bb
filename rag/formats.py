"""Text out of PDF and DOCX articles, in the logical order a reader reads it.

A PDF holds glyphs placed on a page, not text. Read in drawing order, an Arabic line comes out
in *visual* order (left to right as displayed, so reversed, with numbers and Latin words kept
left to right and brackets mirrored), and often as Arabic presentation forms (U+FB50-U+FDFF,
U+FE70-U+FEFC: one code point per contextual glyph shape, which no search or tokenizer
matches). `pdf_text` takes each line's glyphs from pdfminer.six, turns them back into reading
order (`visual_to_logical`, the inverse of the Unicode bidi reordering for a line), picks that
order or the drawn one by which is consistent with the shapes the glyphs were drawn with
(`joining_errors`), and maps presentation forms to standard letters (`standard_letters`).
What cannot be recovered (no text layer, glyphs without Unicode, shapes that fit neither
order) raises `CorpusError` naming the file: Sanad would rather skip a file than index nonsense.

DOCX is logical text already; `docx_text` keeps its paragraphs and table rows in document order.
"""
from __future__ import annotations

import functools
import logging
import re
import unicodedata
from pathlib import Path

from rag.errors import CorpusError

PDF_SUFFIXES = (".pdf",)
DOCX_SUFFIXES = (".docx",)

MAX_UNREADABLE = 0.05  # share of glyphs without a Unicode mapping above which a PDF is refused
MAX_JOINING_ERRORS = 0.2  # share of Arabic glyph shapes that fit neither reading order, above which too
_MIN_JOINING_CHECKS = 20  # fewer checked shapes than this say nothing either way

_MIRROR = dict(zip("()[]{}<>«»‹›", ")(][}{><»«›‹"))  # Bidi_Mirroring_Glyph pairs found in news text
_UNMAPPED = re.compile(r"\(cid:\d+\)|[\ufffd\ue000-\uf8ff]")  # pdfminer's mark for a glyph with no Unicode
_SPACE_BEFORE_MARK = re.compile(r"\s+(?=[\u064b-\u065f\u0670])")  # a harakah's glyph box looks like a word gap


# --- reading order -------------------------------------------------------------------------


def _kind(char: str) -> str:
    """R (right-to-left letter), L (left-to-right letter), N (digit), C (number separator) or O (other)."""
    bidi = unicodedata.bidirectional(char)
    if bidi in ("R", "AL"):
        return "R"
    if bidi == "L":
        return "L"
    if bidi in ("EN", "AN"):
        return "N"
    return "C" if bidi == "CS" else "O"


def visual_to_logical(line: str) -> str:
    """One line of text in display order (left to right) -> reading order.

    Inverts the Unicode bidi algorithm's reordering for a line whose base direction is that of
    most of its letters: runs displayed left to right (Latin words, digits, and the separators
    and spaces between them) stay as they are, everything else is reversed and mirrored. A
    digit run counts as part of a Latin run when the nearest letter to its left is Latin
    ("iPhone 15"), as the bidi rule W7 makes it. Lines without right-to-left letters come back
    unchanged.
    """
    kinds = [_kind(char) for char in line]
    if "R" not in kinds:
        return line
    base = "R" if kinds.count("R") > kinds.count("L") else "L"
    directions: list[str] = [""] * len(line)
    last_letter = base
    for i, kind in enumerate(kinds):  # letters are themselves; digits take the nearest letter on their left
        if kind in ("R", "L"):
            directions[i] = last_letter = kind
        elif kind == "N":
            directions[i] = "L" if last_letter == "L" else "n"  # n: a right-to-left context's number
    i = 0
    while i < len(line):  # neutrals: the direction of both neighbours if they agree, else the base
        if directions[i]:
            i += 1
            continue
        j = i
        while j < len(line) and not directions[j]:
            j += 1
        left = directions[i - 1] if i else base
        right = directions[j] if j < len(line) else base
        if j - i == 1 and kinds[i] == "C" and left == right == "n":
            side = "n"  # 2.5, 10:30, 2024/11/22 read as one number
        else:  # a right-to-left context's number counts as a right-to-left letter here (bidi rule N1)
            left, right = ("R" if d == "n" else d for d in (left, right))
            side = left if left == right else base
        directions[i:j] = [side] * (j - i)
        i = j
    units: list[tuple[str, str]] = []  # (direction, text) with left-to-right runs kept whole
    for char, direction in zip(line, directions):
        if direction in ("L", "n") and units and units[-1][0] == direction:
            units[-1] = (direction, units[-1][1] + char)
        else:
            units.append((direction, _MIRROR.get(char, char) if direction == "R" else char))
    if base == "R":
        return "".join(text for _, text in reversed(units))
    out, stretch = [], []  # left-to-right base: reverse each stretch of right-to-left units in place
    for direction, text in units + [("L", "")]:
        if direction == "L":
            out += [*reversed(stretch), text]
            stretch = []
        else:
            stretch.append(text)
    return "".join(out)


@functools.cache
def _joining(char: str) -> str | None:
    """How an Arabic presentation form joins: I(nitial), M(edial), F(inal), S (isolated); None if not one."""
    if not ("\ufb50" <= char <= "\ufdff" or "\ufe70" <= char <= "\ufefc"):
        return None
    name = unicodedata.name(char, "")
    if "LETTER" not in name and "LIGATURE" not in name:
        return None
    for suffix, form in (("INITIAL FORM", "I"), ("MEDIAL FORM", "M"), ("FINAL FORM", "F"), ("ISOLATED FORM", "S")):
        if name.endswith(suffix):
            return form
    return None


def joining_errors(text: str) -> tuple[int, int]:
    """(errors, checks): how many presentation-form glyph shapes contradict their neighbours in ``text``.

    In reading order a glyph drawn joined to the left (initial, medial) is followed by one joined
    to the right (medial, final), and only then; reversed text breaks this at nearly every word.
    Harakat between letters are skipped; next to a standard (unshaped) Arabic letter nothing is judged.
    """
    chars = [char for char in text if unicodedata.bidirectional(char) != "NSM"]
    forms = [_joining(char) for char in chars]
    unknown = [form is None and "\u0600" <= char <= "\u06ff" for char, form in zip(chars, forms)]
    errors = checks = 0
    for i, form in enumerate(forms):
        if form is None:
            continue
        if i + 1 == len(forms) or not unknown[i + 1]:  # the glyph after it joins back exactly when this one joins on
            checks += 1
            errors += (form in ("I", "M")) != (i + 1 < len(forms) and forms[i + 1] in ("M", "F"))
        if i == 0 or (forms[i - 1] is None and not unknown[i - 1]):  # after a space, a digit or the line's edge
            checks += 1
            errors += form in ("M", "F")
    return errors, checks


def reading_order(line: str) -> tuple[str, int, int]:
    """The line in reading order, with its (errors, checks) from `joining_errors`.

    The visual-to-logical inverse is the default; the line as drawn wins when its glyph shapes
    fit better (a PDF whose producer wrote Arabic in logical order, or forced left to right).
    """
    logical = visual_to_logical(line)
    if logical == line:
        return (line, *joining_errors(line))
    logical_errors, checks = joining_errors(logical)
    drawn_errors, _ = joining_errors(line)
    return (line, drawn_errors, checks) if drawn_errors < logical_errors else (logical, logical_errors, checks)


def standard_letters(text: str) -> str:
    """Presentation forms (Arabic, Hebrew, Latin ligatures such as "ﬁ") -> the standard letters (NFKC)."""
    out = []
    for char in text:
        if "\ufb00" <= char <= "\ufdff" or "\ufe70" <= char <= "\ufefc":
            out.append(unicodedata.normalize("NFKC", char).lstrip(" "))  # an isolated harakah's NFKC adds a space
        elif char != "\ufeff":
            out.append(char)
    return "".join(out)


def logical_text(text: str) -> str:
    """Text whose Arabic may be presentation forms in display order, line by line -> logical standard text.

    For text that came out of a PDF by another extractor (a llama-index reader, say). Text
    without presentation forms is returned as it is: nothing tells its order apart then.
    """
    if not any("\ufb50" <= char <= "\ufdff" or "\ufe70" <= char <= "\ufefc" for char in text):
        return text
    return "\n".join(_SPACE_BEFORE_MARK.sub("", standard_letters(reading_order(line)[0]))
                     for line in text.split("\n"))


# --- PDF -------------------------------------------------------------------------------------


def pdf_text(path: Path) -> str:
    """The text of a PDF: paragraphs (pdfminer's text boxes) one per line, pages in order."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTTextBox, LTTextLine
    from pdfminer.pdfdocument import PDFPasswordIncorrect

    paragraphs: list[str] = []
    errors = checks = unreadable = glyphs = 0
    pdfminer_log = logging.getLogger("pdfminer")
    level = pdfminer_log.level
    pdfminer_log.setLevel(logging.ERROR)  # it warns about every odd font dictionary
    try:
        for page in extract_pages(path, laparams=LAParams(all_texts=True, boxes_flow=None)):
            for box in _text_boxes(page, LTTextBox):
                lines = []
                for line in box:
                    if not isinstance(line, LTTextLine):
                        continue
                    drawn = line.get_text().strip("\n")
                    unreadable += len(_UNMAPPED.findall(drawn))
                    drawn = _UNMAPPED.sub("", drawn)
                    glyphs += sum(not char.isspace() for char in drawn)
                    ordered, line_errors, line_checks = reading_order(drawn)
                    errors, checks = errors + line_errors, checks + line_checks
                    lines.append(" ".join(_SPACE_BEFORE_MARK.sub("", standard_letters(ordered)).split()))
                paragraph = " ".join(line for line in lines if line)
                if paragraph:
                    paragraphs.append(paragraph)
    except PDFPasswordIncorrect as exc:
        raise CorpusError(file=path.name, reason="the PDF is password-protected") from exc
    except Exception as exc:  # pdfminer raises many kinds (PSEOF, PDFSyntaxError, KeyError...) on a broken file
        raise CorpusError(file=path.name, reason=f"not a readable PDF ({type(exc).__name__}: {exc})") from exc
    finally:
        pdfminer_log.setLevel(level)
    if unreadable and unreadable > MAX_UNREADABLE * (glyphs + unreadable):
        share = unreadable / (glyphs + unreadable)
        raise CorpusError(file=path.name, reason=f"its text cannot be recovered: {share:.0%} of its glyphs have no "
                                                 "Unicode mapping in the PDF's fonts")
    if not paragraphs:
        raise CorpusError(file=path.name, reason="the PDF has no text layer (a scanned image?); Sanad does not run OCR")
    if checks >= _MIN_JOINING_CHECKS and errors > MAX_JOINING_ERRORS * checks:
        raise CorpusError(file=path.name, reason=f"its Arabic letters come out in an order that cannot be recovered "
                                                 f"({errors} of {checks} letter shapes fit neither reading order)")
    return "\n".join(paragraphs)


def _text_boxes(item, box_type):
    """Text boxes anywhere in a layout tree (figures and form XObjects hold text too)."""
    if isinstance(item, box_type):
        yield item
        return
    try:
        children = list(item)
    except TypeError:
        return
    for child in children:
        yield from _text_boxes(child, box_type)


# --- DOCX ------------------------------------------------------------------------------------


def docx_text(path: Path) -> str:
    """The body of a Word document: paragraphs and table rows (cells tab-separated), in order."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx lets zipfile's, lxml's and its package reader's errors through
        raise CorpusError(file=path.name,
                          reason=f"not a readable Word (.docx) file ({type(exc).__name__}: {exc})") from exc
    lines = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = {cell._tc: cell for cell in row.cells}.values()  # a merged cell repeats in row.cells
                lines.append("\t".join(" ".join(cell.text.split()) for cell in cells))
        else:
            lines.append(block.text)
    return "\n".join(line.rstrip() for line in lines if line.strip())

