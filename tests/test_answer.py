"""The extractive answer layer on the seed articles (real model, real index): the promises of the
product, each checked on a question it must get right. The eval suite measures the same over 229.
"""
from __future__ import annotations

import pytest

from rag.arabic import latin_name_pattern, normalize
from rag.evidence import analyse
from rag.types import Answer

BLINKEN_ARTICLE, SEOUL_ARTICLE = "002_2e4104477adbd184.txt", "004_d287910d6ae0b8d5.txt"


def supported(answer: Answer) -> set[str]:
    return {c.article_id for c in answer.citations if not c.related}


def assert_quotes_exact(bot, answer: Answer) -> None:
    for citation in answer.citations:
        assert bot.index.article(citation.article_id).text[citation.start:citation.end] == citation.quote


# --- conflicting sources --------------------------------------------------------------------

@pytest.mark.parametrize("question, differ, figures", [
    ("كم عدد الجنود الكوريين الشماليين في كورسك؟", "تختلف المصادر", ("11 ألف", "8 آلاف")),
    ("How many North Korean troops are in Kursk?", "different figures", ("11,000", "8,000")),
])
def test_kursk_gives_both_figures_with_their_sources(seeds_bot, question, differ, figures):
    answer = seeds_bot.ask(question)
    assert not answer.abstained and answer.mode == "extractive"
    assert differ in answer.text
    for figure in figures:
        assert figure in answer.text
    assert {BLINKEN_ARTICLE, SEOUL_ARTICLE} <= supported(answer)
    assert_quotes_exact(seeds_bot, answer)


def test_a_figure_attributed_to_one_source_is_that_sources_figure(seeds_bot):
    """Blinken's sentence holds two figures: 10,000 entered Russia, up to 8,000 are in Kursk."""
    answer = seeds_bot.ask("According to Antony Blinken, how many North Korean troops are stationed in the Kursk region?")
    assert answer.text.startswith("Up to 8,000") and BLINKEN_ARTICLE in supported(answer)


def test_english_answers_render_the_figure_in_english_and_quote_arabic(seeds_bot):
    answer = seeds_bot.ask("How many North Korean troops are in Kursk?")
    assert answer.language == "en" and "More than 11,000 troops" in answer.text
    assert all(any("\u0600" <= ch <= "\u06ff" for ch in c.quote) for c in answer.citations)


# --- abstention --------------------------------------------------------------------------------

@pytest.mark.parametrize("question", [
    "ما هي عاصمة أستراليا؟",
    "من فاز بنهائي كأس العالم لكرة القدم 2022؟",
    "What is the capital of Canada?",
    "كم دبابة أرسلت كوريا الشمالية إلى روسيا؟",
    "How many tanks did North Korea send to Russia?",
    "How many North Korean soldiers have been wounded in Kursk?",
    "ما اسم قائد القوات الكورية الشمالية في كورسك؟",
])
def test_questions_the_articles_do_not_answer_abstain(seeds_bot, question):
    answer = seeds_bot.ask(question)
    assert answer.abstained, answer.text
    plain = "لا تتضمن المقالات" if answer.language == "ar" else "The articles do not contain"
    assert answer.text.startswith(plain)
    assert all(c.related for c in answer.citations)


def test_abstaining_can_be_switched_off_for_benchmarks(seeds_bot, config):
    from dataclasses import replace

    from rag.chatbot import ChatBot

    bot = ChatBot(seeds_bot.corpus, config=replace(config, answer=replace(config.answer, abstain=False)),
                  index_dir=seeds_bot.index_dir)
    assert not bot.ask("How many tanks did North Korea send to Russia?").abstained


# --- follow-ups and short answers ------------------------------------------------------------

def test_a_follow_up_uses_the_previous_turn(seeds_bot):
    first = "كم عدد الجنود الكوريين الشماليين في كورسك بحسب بلينكن؟"
    alone = seeds_bot.ask("وحسب الولايات المتحدة وكوريا الجنوبية؟")
    followed = seeds_bot.ask("وحسب الولايات المتحدة وكوريا الجنوبية؟", history=[(first, seeds_bot.ask(first).text)])
    assert "11 ألف" in followed.text and SEOUL_ARTICLE in supported(followed)
    assert followed.text != alone.text


def test_short_answers_stay_short(seeds_bot):
    answer = seeds_bot.ask("من هو المتحدث باسم الكرملين؟")
    assert not answer.abstained and len(answer.text.split()) <= 60
    assert_quotes_exact(seeds_bot, answer)


# --- reading the question -------------------------------------------------------------------

@pytest.mark.parametrize("name, arabic", [
    ("Blinken", "بلينكن"), ("Kursk", "كورسك"), ("Peskov", "بيسكوف"), ("Zelensky", "زيلينسكي"),
    ("Russia", "روسيا"), ("Pyongyang", "بيونغيانغ"), ("Ukraine", "الأوكرانية"),
])
def test_latin_names_match_their_arabic_spelling(name, arabic):
    assert latin_name_pattern(name).fullmatch(normalize(arabic))


@pytest.mark.parametrize("name, arabic", [("Kursk", "كوريا"), ("Blinken", "بلين"), ("Seoul", "موسكو")])
def test_latin_names_do_not_match_other_words(name, arabic):
    assert not latin_name_pattern(name).fullmatch(normalize(arabic))


def test_short_latin_words_get_no_pattern():
    assert latin_name_pattern("Kim") is None


@pytest.mark.parametrize("question, groups", [
    ("كم دبابة أرسلت كوريا الشمالية؟", 1),
    ("How many tanks did North Korea send?", 1),
    ("How many North Korean soldiers were wounded?", 2),  # the soldiers, and that they were wounded
    ("How many North Koreans were killed in the missile strike?", 1),  # the killed; the missile is context
    ("How many meetings were held?", 0),  # not in the lexicon: not checked
    ("Who is Peskov?", 0),
])
def test_the_counted_thing_is_found_in_arabic_and_english(question, groups):
    assert len(analyse(question).focus) == groups
