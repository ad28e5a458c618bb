"""rag/arabic.py: normalization for matching, sentence spans, terms, numbers."""
from __future__ import annotations

import pytest

from rag.arabic import (
    STOPWORDS, canonical_numbers, format_number, is_arabic, normalize, read_numbers, split_sentences, terms, words,
)


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


# --- normalize ---------------------------------------------------------------------

@pytest.mark.parametrize("hamza", ["أ", "إ", "آ"])
def test_normalize_folds_hamza_carriers_to_bare_alef(hamza):
    assert normalize(f"{hamza}حمد") == "احمد"


def test_normalize_taa_marbuta_becomes_haa():
    assert normalize("مدينة") == "مدينه"


def test_normalize_alef_maqsura_becomes_yaa():
    assert normalize("على") == "علي"


def test_normalize_removes_diacritics():
    assert normalize("مُحَمَّدٌ خَبَرَيْن") == "محمد خبرين"


def test_normalize_removes_tatweel():
    assert normalize("كـــورسك") == "كورسك"


def test_normalize_arabic_indic_digits():
    assert normalize("٠١٢٣٤٥٦٧٨٩") == "0123456789"


def test_normalize_persian_digits():
    assert normalize("۰۱۲۳۴۵۶۷۸۹") == "0123456789"


def test_normalize_lower_cases_latin():
    assert normalize("NATO حلف") == "nato حلف"


def test_normalize_keeps_what_should_not_change():
    text = "كوريا تحذر روسيا 2024، وتطالب بالانسحاب."
    assert normalize(text) == text


def test_normalize_makes_spelling_variants_equal():
    assert normalize("إلى القوّات الكوريّة") == normalize("الى القوات الكوريه")


# --- is_arabic ---------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("كم عدد الجنود؟", True),
    ("How many troops?", False),
    ("ما هو NATO؟", True),
    ("NATO and Russia في", False),
    ("2024 ?", False),
    ("", False),
])
def test_is_arabic(text, expected):
    assert is_arabic(text) is expected


# --- split_sentences ---------------------------------------------------------------

@pytest.mark.parametrize("mark", [".", "؟", "!", "؛", "?"])
def test_split_on_sentence_marks(mark):
    text = f"الجملة الأولى{mark} الجملة الثانية"
    assert sentences(text) == [f"الجملة الأولى{mark}", "الجملة الثانية"]


def test_split_on_line_breaks_without_punctuation():
    assert sentences("عنوان الخبر\nنص الخبر\n\n\nسطر أخير") == ["عنوان الخبر", "نص الخبر", "سطر أخير"]


def test_arabic_comma_does_not_split():
    text = "قالت الوزارة، في بيان اليوم، إن القوات انسحبت."
    assert sentences(text) == [text]


def test_decimal_point_does_not_split():
    text = "بلغ العدد 1.2 مليون شخص. ثم ارتفع."
    assert sentences(text) == ["بلغ العدد 1.2 مليون شخص.", "ثم ارتفع."]


def test_full_stop_after_a_number_still_splits():
    assert sentences("وقع ذلك في عام 2024. وقال المسؤول") == ["وقع ذلك في عام 2024.", "وقال المسؤول"]


def test_closing_quote_stays_with_its_sentence():
    assert sentences("قال «انتهى الأمر.» ثم غادر") == ["قال «انتهى الأمر.»", "ثم غادر"]


def test_repeated_marks_end_one_sentence():
    assert sentences("ماذا؟! لا أصدق... حقا") == ["ماذا؟!", "لا أصدق...", "حقا"]


def test_text_without_punctuation_is_one_sentence():
    text = "نص طويل بلا أي علامة ترقيم يمتد ويمتد دون توقف"
    assert split_sentences(text) == [(0, len(text))]


def test_spans_are_trimmed_of_white_space():
    text = "  \t الأولى.   الثانية؟ \n  "
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == ["الأولى.", "الثانية؟"]
    assert all(text[a:b] == text[a:b].strip() for a, b in spans)


@pytest.mark.parametrize("text", ["", "   \n\t ", "...", "— ؟ !", "\n\n"])
def test_no_sentences_in_text_without_words(text):
    assert split_sentences(text) == []


def test_split_within_start_and_end():
    text = "خارج. داخل أول. داخل ثان. خارج"
    start, end = text.index("داخل"), text.rindex(". خارج") + 1
    spans = split_sentences(text, start, end)
    assert [text[a:b] for a, b in spans] == ["داخل أول.", "داخل ثان."]
    assert all(start <= a < b <= end for a, b in spans)


def test_spans_of_every_seed_are_ordered_trimmed_and_cover_every_word(seeds_articles):
    for article in seeds_articles:
        text, spans = article.text, split_sentences(article.text)
        assert len(spans) > 5
        previous_end = 0
        for start, end in spans:
            assert previous_end <= start < end
            assert text[start:end] == text[start:end].strip()
            assert not any(ch.isalnum() for ch in text[previous_end:start]), text[previous_end:start]
            previous_end = end
        assert not any(ch.isalnum() for ch in text[previous_end:])


# --- words and terms ---------------------------------------------------------------

def test_words_are_normalized_and_keep_numbers_whole():
    assert words("الجنودُ ١٢ و1.2 و3,000") == ["الجنود", "12", "و1.2", "و3,000"]


def test_definite_article_stems_to_the_same_term():
    assert terms("الجنود") == terms("جنود") == terms("للجنود") == terms("بالجنود")


def test_terms_meet_across_hamza_and_diacritics():
    assert terms("أوكرانيا") == terms("اوكرانيا") == terms("أُوكرانيا")


def test_stopwords_are_removed():
    assert terms("في كورسك") == terms("كورسك")
    assert terms("هل كان من الذي على") == []
    assert terms("what is the number of troops") == ["number", "troop"]


def test_stopwords_are_stored_normalized():
    assert "الي" in STOPWORDS and "إلى" not in STOPWORDS


def test_terms_stem_english():
    assert terms("soldiers fighting") == ["soldier", "fight"]


# --- numbers -----------------------------------------------------------------------

def only_number(text: str):
    numbers = read_numbers(text)
    assert len(numbers) == 1, numbers
    return numbers[0]


@pytest.mark.parametrize("text, value", [
    ("8 آلاف", 8000),
    ("ثمانية آلاف", 8000),
    ("1.2 مليون", 1_200_000),
    ("١٥٠٠", 1500),
    ("۱۵۰۰", 1500),
    ("8,000", 8000),
    ("12 ألف", 12000),
    ("٨ آلاف", 8000),
    ("2.5 مليار", 2_500_000_000),
    ("ثلاثة", 3),
])
def test_read_numbers_value_and_span(text, value):
    number = only_number(text)
    assert number.value == value
    assert (number.start, number.end) == (0, len(text))
    assert number.bound is None


def test_more_than_11_thousand():
    text = "أكثر من 11 ألف جندي"
    number = only_number(text)
    assert (number.value, number.bound) == (11000, "more than")
    assert text[number.start:number.end] == "11 ألف"


def test_up_to_8_thousand():
    text = "ما يصل إلى 8 آلاف"
    number = only_number(text)
    assert (number.value, number.bound) == (8000, "up to")
    assert text[number.start:number.end] == "8 آلاف"


def test_about_bound():
    assert only_number("نحو ١٠ آلاف جندي").bound == "about"


def test_offsets_index_the_original_text_with_diacritics_before():
    text = "قَالَ المَسْؤُولُ إنَّ 1500 جندي وصلوا"
    number = only_number(text)
    assert text[number.start:number.end] == "1500"


def test_two_numbers_in_one_sentence():
    text = "أرسلت 1500 جندي ثم 3 آلاف آخرين"
    assert [(n.value, text[n.start:n.end]) for n in read_numbers(text)] == [(1500, "1500"), (3000, "3 آلاف")]


def test_a_year_is_read_as_a_plain_number():
    assert only_number("في عام 2024.").value == 2024


def test_vague_plural_alone_is_not_a_number():
    assert read_numbers("قتل الآلاف") == []


def test_number_words_with_diacritics():
    assert [n.value for n in read_numbers("وصل ثمانيةُ آلافٍ جندي")] == [8000]


@pytest.mark.parametrize("text, expected", [
    ("8 آلاف", "8000"),
    ("ثمانية آلاف", "8000"),
    ("أكثر من 11 ألف", "اكثر من 11000"),
    ("1.2 مليون", "1200000"),
    ("١٥٠٠", "1500"),
    ("ما يصل إلى 8 آلاف جندي", "ما يصل الي 8000 جندي"),
    ("8,000", "8000"),
    ("نص بلا أرقام", "نص بلا ارقام"),
])
def test_canonical_numbers(text, expected):
    assert canonical_numbers(text) == expected


def test_canonical_numbers_make_spellings_equal():
    assert canonical_numbers("ثمانية آلاف جندي") == canonical_numbers("8 آلاف جندي") == canonical_numbers("٨٠٠٠ جندي")


@pytest.mark.parametrize("value, expected", [(8000.0, "8000"), (1.5, "1.5"), (1_200_000.0, "1200000"), (0.25, "0.25")])
def test_format_number(value, expected):
    assert format_number(value) == expected
