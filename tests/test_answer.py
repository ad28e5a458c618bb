"""The answer layer on the seed articles (real model, real reader, real index): the promises of the
product, each checked on a question it must get right. The eval suite measures the same over the
whole gold set.
"""
from __future__ import annotations

import pytest

from rag.arabic import read_numbers
from rag.types import Answer

BLINKEN_ARTICLE, SEOUL_ARTICLE = "002_2e4104477adbd184.txt", "004_d287910d6ae0b8d5.txt"


def supported(answer: Answer) -> set[str]:
    return {c.article_id for c in answer.citations if not c.related}


def assert_exact(bot, answer: Answer) -> None:
    """Quotes and short-answer spans slice back out of their articles; every span sits in a quote."""
    for citation in answer.citations:
        assert bot.index.article(citation.article_id).text[citation.start:citation.end] == citation.quote
    for span in answer.spans:
        assert bot.index.article(span.article_id).text[span.start:span.end] == span.text
        assert any(c.article_id == span.article_id and c.start <= span.start and span.end <= c.end
                   for c in answer.citations)


# --- conflicting sources --------------------------------------------------------------------

@pytest.mark.parametrize("question, differ", [
    pytest.param("كم عدد الجنود الكوريين الشماليين في كورسك؟", "تختلف المصادر", marks=pytest.mark.xfail(
        strict=True, reason="known miss of the shipped reader: it sets Seoul's total of 12,000 to be sent beside "
                            "the 11,000 and scores Blinken's chunk 0.74 logits below the best, outside the calibrated margin")),
    ("How many North Korean troops are in Kursk?", "different figures"),
])
def test_kursk_gives_both_figures_with_their_sources(seeds_bot, question, differ):
    answer = seeds_bot.ask(question)
    assert not answer.abstained and answer.mode == "extractive" and answer.conflict
    assert differ in answer.text
    assert {BLINKEN_ARTICLE, SEOUL_ARTICLE} <= supported(answer)
    figures = {number.value for span in answer.spans for number in read_numbers(span.text)}
    assert {11000, 8000} <= figures  # "أكثر من 11 ألف" (Seoul and Washington), "8 آلاف" or "ثمانية آلاف" (Blinken)
    assert_exact(seeds_bot, answer)


@pytest.mark.parametrize("question", [
    "According to Antony Blinken, how many North Korean troops are stationed in the Kursk region?",
    "كم جندياً كورياً شمالياً يتمركزون في منطقة كورسك بحسب بلينكن؟",
])
def test_a_figure_attributed_to_one_source_is_that_sources_figure(seeds_bot, question):
    """Blinken's sentence holds two figures: 10,000 entered Russia, up to 8,000 are in Kursk."""
    answer = seeds_bot.ask(question)
    assert not answer.abstained and BLINKEN_ARTICLE in supported(answer)
    assert any("8 آلاف" in span.text for span in answer.spans)
    assert not any(span.text.startswith("10 آلاف") for span in answer.spans)
    assert_exact(seeds_bot, answer)


def test_english_answers_give_the_figure_in_digits_and_quote_arabic(seeds_bot):
    answer = seeds_bot.ask("How many North Korean troops are in Kursk?")
    assert answer.language == "en" and "11,000" in answer.text
    assert all(any("\u0600" <= ch <= "\u06ff" for ch in c.quote) for c in answer.citations)


# --- abstention --------------------------------------------------------------------------------

@pytest.mark.parametrize("question", [
    "ما هي عاصمة أستراليا؟",
    "What is the capital of Canada?",
    "Who is Japan's prime minister?",
    "How many Iranian soldiers are in Kursk?",
    "كم عدد الجنود الصينيين في كورسك؟",
    "What is the population of North Korea?",
])
def test_questions_the_articles_do_not_answer_abstain(seeds_bot, question):
    answer = seeds_bot.ask(question)
    assert answer.abstained, answer.text
    plain = "لا تتضمن المقالات" if answer.language == "ar" else "The articles do not contain"
    assert answer.text.startswith(plain)
    assert all(c.related for c in answer.citations) and not answer.spans


def test_abstaining_can_be_switched_off_for_benchmarks(seeds_bot, config):
    from rag.chatbot import ChatBot

    bot = ChatBot(seeds_bot.corpus, config=config.replace(answer={"abstain": False}), index_dir=seeds_bot.index_dir)
    answer = bot.ask("How many Iranian soldiers are in Kursk?")
    assert not answer.abstained and answer.spans
    assert answer.confidence < bot.answerer.abstain_threshold["en"]


# --- short answers, follow-ups, streaming ------------------------------------------------------

@pytest.mark.parametrize("question, expected", [
    ("من هو المتحدث باسم الكرملين؟", "بيسكوف"),
    pytest.param("Who is the Kremlin spokesman?", "بيسكوف", marks=pytest.mark.xfail(
        strict=True, reason="known miss of the shipped reader: for this English question it reads Lavrov as the "
                            "spokesman (English who-questions: seeds short-answer F1 0.56)")),
])
def test_the_short_answer_is_the_span(seeds_bot, question, expected):
    answer = seeds_bot.ask(question)
    assert not answer.abstained and expected in answer.short_answer
    assert answer.spans[0].text == answer.short_answer and len(answer.text.split()) <= 80
    assert_exact(seeds_bot, answer)


@pytest.mark.xfail(strict=True, reason="known miss of the shipped reader: with 'according to Blinken' in the "
                                       "first question it answers 10,000 (entered Russia) for both turns")
def test_a_follow_up_uses_the_previous_turn(seeds_bot):
    first = "كم عدد الجنود الكوريين الشماليين في كورسك بحسب بلينكن؟"
    followed = seeds_bot.ask("وحسب الولايات المتحدة وكوريا الجنوبية؟", history=[(first, seeds_bot.ask(first).text)])
    assert not followed.abstained and "11 ألف" in followed.text and SEOUL_ARTICLE in supported(followed)


def test_stream_yields_the_finished_text_then_the_answer(seeds_bot):
    pieces = list(seeds_bot.stream("من هو المتحدث باسم الكرملين؟"))
    assert len(pieces) == 2 and isinstance(pieces[1], Answer) and pieces[0] == pieces[1].text


def test_adaptive_reading_stops_after_the_first_chunk_only_when_sure(seeds_bot):
    from dataclasses import replace

    from rag.reader import Cascade

    settings = seeds_bot.reader.settings
    question, figure = "من هو المتحدث باسم الكرملين؟", "How many North Korean troops are in Kursk?"
    hits, figure_hits = seeds_bot.retrieve(question), seeds_bot.retrieve(figure)
    try:
        seeds_bot.reader.settings = replace(settings, cascade=Cascade(first=1, stop_probability=0.0))
        first = seeds_bot.read(question, question, hits)
        assert len(first) == 1 and first[0].hit == hits[0]
        assert len(seeds_bot.read(figure, figure, figure_hits)) == len(figure_hits)  # a figure: other articles may differ
        seeds_bot.reader.settings = replace(settings, cascade=Cascade(first=1, stop_probability=1.01))
        assert [r.hit for r in seeds_bot.read(question, question, hits)] == hits
    finally:
        seeds_bot.reader.settings = settings
