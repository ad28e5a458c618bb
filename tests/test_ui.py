"""ui/: the pure HTML formatting, the handlers over a real ChatBot, and a gradio_client round trip.

The formatter tests build `Answer`/`Citation`/`Article` objects directly: the formatter is the
unit under test. Everything else is real: the seeds ChatBot of conftest (real model, FAISS,
BM25), a real Gradio server launched in this process, the real `gradio_client`. Tests that add
articles get their own ChatBot and index folder.
"""
from __future__ import annotations

import re
import socket

import gradio as gr
import pytest

from rag.chatbot import ChatBot
from rag.types import Answer, Article, Citation, Span
from ui.app import Handlers, build_app, stream_answer
from ui.format import (
    Turn, citation_key, format_answer, format_corpus, format_partial, format_source, format_status,
    format_text, format_transcript, locate, parse_citation_key, text_direction,
)

KURSK_AR = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
KURSK_EN = "How many North Korean troops are in Kursk?"
SCRIPT = "<script>alert(1)</script>"
ARTICLE_TEXT = "عنوان\n\nقالت الوزارة إن 11 ألف جندي وصلوا.\n" + SCRIPT + " وانتهى الخبر."


def article(text: str = ARTICLE_TEXT, **fields) -> Article:
    values = dict(id="a.txt", source="a.txt", title="عنوان", text=text, date="2024-11-05")
    values.update(fields)
    return Article(**values)


def cite(n: int, text: str = ARTICLE_TEXT, quote: str = "قالت الوزارة إن 11 ألف جندي وصلوا.", **fields) -> Citation:
    start = text.index(quote)
    values = dict(n=n, source="a.txt", title="عنوان", quote=quote, start=start, end=start + len(quote),
                  score=0.91, article_id="a.txt", date="2024-11-05")
    values.update(fields)
    return Citation(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- formatting: markers ------------------------------------------------------------------

def test_markers_become_buttons_carrying_turn_and_number():
    answer = Answer("11 ألف جندي [1]؛ أكثر [2]", False, [cite(1), cite(2)])
    html = format_answer(answer, turn=3)
    buttons = re.findall(r'<button type="button" class="sanad-cite"[^>]*data-cite="(\d+:\d+)"[^>]*>\[(\d)\]</button>', html)
    assert ("3:1", "1") in buttons and ("3:2", "2") in buttons
    assert 'dir="ltr"' in html  # a marker reads "[1]" inside Arabic text


def test_the_short_answer_is_marked_inside_its_quote():
    citation = cite(1)
    start = ARTICLE_TEXT.index("11 ألف")
    span = Span("a.txt", start, start + len("11 ألف"), "11 ألف", 3.2)
    answer = Answer(text=f"11 ألف [1]\n«{citation.quote}» [1]", abstained=False, citations=[citation],
                    short_answer="11 ألف", spans=(span,))
    html = format_answer(answer, turn=0)
    assert html.count('<mark class="sanad-answer">11 ألف</mark>') == 1
    assert "«قالت الوزارة إن <mark" in html and "</mark> جندي وصلوا.»" in html


def test_a_marker_without_its_citation_stays_plain_text():
    html = format_text("نص [7] آخر", [cite(1)], turn=0)
    assert "<button" not in html and "[7]" in html


def test_markers_of_a_streaming_answer_are_not_clickable_yet():
    html = format_partial("11 ألف جندي [1]")
    assert "<button" not in html and "is-pending" in html and "[1]" in html


def test_sources_list_names_each_cited_file_with_a_clickable_marker():
    answer = Answer("نص [1]", False, [cite(1, source="004_x.txt")])
    html = format_answer(answer, turn=0)
    assert "sanad-sources" in html and "004_x.txt" in html
    assert html.count('data-cite="0:1"') == 2  # in the text and in the sources list


def test_citation_keys_round_trip_and_reject_anything_else():
    assert parse_citation_key(citation_key(12, 3)) == (12, 3)
    for bad in (None, 3, "", "1", "a:b", "1:2:3", "-1:2", "<script>", "1:2 OR 1=1"):
        assert parse_citation_key(bad) is None, bad


# --- formatting: escaping -----------------------------------------------------------------

def test_article_with_a_script_is_shown_escaped_in_the_source_panel():
    citation = cite(1, quote=SCRIPT + " وانتهى الخبر.")
    html = format_source(citation, article())
    assert "<script" not in html
    assert "<mark id=\"sanad-mark\">&lt;script&gt;alert(1)&lt;/script&gt; وانتهى الخبر.</mark>" in html


def test_question_answer_quote_and_title_are_escaped_everywhere():
    evil = '"><img src=x onerror=alert(1)>'
    text = "نص " + evil
    citation = Citation(1, evil + ".txt", evil, evil, 3, 3 + len(evil), 0.5, "a", evil)
    turns = [Turn(evil, Answer(text + " [1]", False, [citation]))]
    html = format_transcript(turns, show_scores=True, pending=evil, partial=evil)
    assert "<img" not in html and "onerror=alert(1)>" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 5
    assert "&quot;&gt;&lt;img" in html  # inside title="..." attributes too
    panel = format_source(citation, article(text=text, title=evil, outlet=evil))
    assert "<img" not in panel


def test_error_and_status_messages_are_escaped():
    turns = [Turn("سؤال", error="bad <b>file</b>.txt")]
    assert "<b>file" not in format_transcript(turns)
    assert "<b>" not in format_status("<b>x</b>", "error")


def test_only_http_links_are_rendered():
    bad = format_source(cite(1), article(url="javascript:alert(1)"))
    assert "href" not in bad and "javascript:" not in bad
    good = format_source(cite(1), article(url="https://example.com/a?b=1&c=2"))
    assert 'href="https://example.com/a?b=1&amp;c=2"' in good and 'rel="noopener noreferrer nofollow"' in good


# --- formatting: answers, abstention, panel -----------------------------------------------

def test_abstention_has_its_own_style_and_offers_the_related_passages():
    related = cite(1, related=True)
    answer = Answer("لا تتضمن المقالات إجابة عن هذا السؤال.", True, [related])
    html = format_answer(answer, turn=0)
    assert "sanad-abstained" in html and "sanad-notice-abstained" in html
    assert "sanad-related" in html and "مقاطع ذات صلة" in html
    assert 'data-cite="0:1"' in html  # related passages open in the panel too
    assert "sanad-abstained" not in format_answer(Answer("نص [1]", False, [cite(1)]), turn=0)


def test_conflicting_sources_are_flagged():
    html = format_answer(Answer("8 آلاف [1]؛ 11 ألفًا [2]", False, [cite(1), cite(2)], conflict=True), turn=0)
    assert "sanad-conflict" in html and "sanad-notice-conflict" in html


def test_each_message_follows_its_language():
    english = format_answer(Answer("About 11,000 [1]", False, [cite(1)], language="en"), turn=0)
    arabic = format_answer(Answer("نحو 11 ألفًا [1]", False, [cite(1)]), turn=0)
    assert english.startswith('<div class="sanad-msg sanad-bot" dir="ltr" lang="en">') and "Sources" in english
    assert arabic.startswith('<div class="sanad-msg sanad-bot" dir="rtl" lang="ar">') and "المصادر" in arabic
    assert 'class="sanad-bubble" dir="auto"' in format_transcript([Turn(KURSK_EN)])
    # an Arabic source listed under an English answer keeps reading right to left
    assert '<li class="sanad-source" dir="rtl" ' in english
    assert text_direction("NATO حلف") == "ltr" and text_direction("«حلف» NATO") == "rtl"


def test_each_line_of_an_answer_reads_in_its_own_direction():
    html = format_text("The articles give different figures:\n«وكانت 11 ألف جندي» [1]", [cite(1)], turn=0)
    lines = re.findall(r'<div class="sanad-line" dir="auto">', html)
    assert len(lines) == 2 and "<br>" not in html


def test_scores_show_only_when_asked():
    answer = Answer("نص [1]", False, [cite(1)], confidence=0.42)
    assert "0.910" not in format_answer(answer, turn=0)
    shown = format_answer(answer, turn=0, show_scores=True)
    assert "0.910" in shown and "0.420" in shown


def test_source_panel_shows_title_date_file_and_the_quote_in_its_context():
    html = format_source(cite(1), article(title="عنوان المقال", outlet="وكالة"))
    for part in ("عنوان المقال", "2024-11-05", "a.txt", "وكالة", "[1]"):
        assert part in html
    assert "<mark id=\"sanad-mark\">قالت الوزارة إن 11 ألف جندي وصلوا.</mark>" in html
    assert "وانتهى الخبر" in html  # context after the quote


def test_source_panel_context_is_cut_on_long_articles():
    text = "بداية. " + "كلمة " * 2000 + "الجملة المقتبسة هنا. " + "كلمة " * 2000 + "نهاية."
    html = format_source(cite(1, text=text, quote="الجملة المقتبسة هنا."), article(text=text))
    assert "<mark id=\"sanad-mark\">الجملة المقتبسة هنا.</mark>" in html
    assert "بداية" not in html and "نهاية" not in html and html.count("…") >= 2


def test_source_panel_finds_a_quote_that_moved_or_shows_it_alone():
    moved = "سطر جديد في البداية.\n" + ARTICLE_TEXT
    citation = cite(1)
    assert locate(citation, article(text=moved)) == (moved.index(citation.quote), moved.index(citation.quote) + len(citation.quote))
    assert locate(citation, article(text="نص آخر تمامًا")) is None
    alone = format_source(citation, None)
    assert f"<mark id=\"sanad-mark\">{citation.quote}</mark>" in alone


def test_corpus_panel_counts_articles_and_chunks_and_marks_uploads():
    html = format_corpus([article(), article(id="uploads/b.txt", source="b.txt", title="<b>")], chunks=7)
    assert "<b>2</b> مقال" in html and "<b>7</b> مقطع" in html and "مرفوع" in html and "&lt;b&gt;" in html


# --- handlers over the real ChatBot -------------------------------------------------------

@pytest.fixture(scope="module")
def handlers(seeds_bot) -> Handlers:
    return Handlers(seeds_bot)


def run_turn(handlers: Handlers, question: str, turns=(), top_k: int = 5, mode: str = "extractive"):
    """What the page does for one question: ask, then stream the answer; returns every update."""
    box, shown, pending = handlers.ask(question, list(turns), False)
    assert box["value"] == "" and box["interactive"] is False
    assert question.strip() in shown or question.strip().replace("<", "&lt;") in shown
    return list(handlers.answer(pending, list(turns), top_k, mode, False))


def test_an_empty_question_is_refused_with_its_message(handlers):
    with pytest.raises(gr.Error, match="empty"):
        handlers.ask("   ", [], False)
    with pytest.raises(gr.Error, match="no words"):
        handlers.ask("؟؟ ..", [], False)


def test_the_answer_streams_then_is_stored_with_clickable_markers(handlers, seeds_bot):
    updates = run_turn(handlers, KURSK_AR)
    html, turns = updates[-1]
    assert len(turns) == 1 and isinstance(turns[0].answer, Answer)
    answer = turns[0].answer
    assert answer.citations and 'data-cite="0:1"' in html
    for citation in answer.citations:
        assert citation.source in html
    assert answer == seeds_bot.ask(KURSK_AR)  # the page shows what the ChatBot answers
    assert all(update[1] == gr.skip() for update in updates[:-1])  # the state is written once, at the end
    assert any("is-streaming" in update[0] for update in updates[:-1])  # increments were shown as they came


def test_a_follow_up_question_uses_the_conversation(handlers):
    first = run_turn(handlers, KURSK_AR)[-1][1]
    html, turns = run_turn(handlers, "ومن أكد ذلك؟", first)[-1]
    assert len(turns) == 2 and turns[1].answer is not None
    assert 'data-turn="1"' in html and KURSK_AR in html


def test_clicking_a_marker_renders_the_cited_article(handlers, seeds_bot):
    turns = run_turn(handlers, KURSK_AR)[-1][1]
    citation = turns[0].answer.citations[0]
    html = handlers.show_source(turns, gr.EventData(None, {"key": citation_key(0, citation.n)}))
    assert f"<mark id=\"sanad-mark\">{citation.quote}</mark>" in html.replace("&quot;", '"')
    article = seeds_bot.index.article(citation.article_id)
    assert article.source in html
    for key in ("9:1", "0:99", "bogus", None):
        assert handlers.show_source(turns, gr.EventData(None, {"key": key})) == gr.skip()


def test_number_of_passages_applies_to_one_request_only(seeds_bot):
    default = seeds_bot.config.retrieve.top_k
    answer = None
    for answer in stream_answer(seeds_bot, KURSK_AR, [], top_k=1):
        pass
    assert isinstance(answer, Answer) and answer.citations
    assert seeds_bot.config.retrieve.top_k == default


def test_an_unavailable_mode_is_shown_as_a_message_not_a_traceback(handlers):
    html, turns = run_turn(handlers, KURSK_AR, mode="llm")[-1]  # the seeds bot has no LLM server
    assert turns[0].answer is None and "LLM" in turns[0].error
    assert "sanad-error" in html and "Traceback" not in html


def test_clear_starts_a_new_conversation(handlers):
    turns, html, panel, box, pending = handlers.clear()
    assert turns == [] and "is-empty" in html and "sanad-panel-empty" in panel and pending is None


# --- uploads (their own ChatBot: they change the index) -----------------------------------

@pytest.fixture(scope="module")
def upload_bot(config, seeds_dir, tmp_path_factory) -> ChatBot:
    return ChatBot(corpus=seeds_dir, config=config, index_dir=tmp_path_factory.mktemp("ui-upload-index"))


def test_bad_files_get_a_clear_message_and_change_nothing(upload_bot, tmp_path):
    handlers = Handlers(upload_bot)
    before = (len(upload_bot.articles), len(upload_bot.index))
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    noise = tmp_path / "old.txt"
    noise.write_bytes(bytes(range(128, 256)) * 4)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    for bad, words in ((binary, "binary"), (noise, "UTF-8"), (pdf, "not a readable PDF")):
        with pytest.warns(UserWarning, match=words):
            status, corpus, counts, files, removable = handlers.upload([str(bad)])
        assert "is-error" in status and words in status and bad.name in status
        assert corpus == gr.skip() and files is None
        assert (len(upload_bot.articles), len(upload_bot.index)) == before


def test_a_bad_file_beside_good_ones_is_listed_as_skipped(upload_bot, tmp_path):
    handlers = Handlers(upload_bot)
    good, bad = tmp_path / "zz_good.txt", tmp_path / "photo.txt"
    good.write_text("خبر جيد\nنص صالح عن السفينة الزرقاء.", encoding="utf-8")
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.warns(UserWarning, match="photo.txt"):
        status, corpus, counts, files, removable = handlers.upload([str(good), str(bad)])
    assert "is-ok" in status and "zz_good.txt" in corpus
    assert re.search(r'<li><span class="sanad-file" dir="ltr">photo\.txt</span>: <span dir="auto">looks like a binary', status)
    assert "uploads/zz_good.txt" in removable["choices"] or ("uploads/zz_good.txt", "uploads/zz_good.txt") in removable["choices"]
    status, corpus, counts, removable = handlers.remove("uploads/zz_good.txt")
    assert "is-ok" in status and "zz_good.txt" not in corpus


def test_removing_an_article_of_the_corpus_folder_is_refused_with_its_message(upload_bot):
    handlers = Handlers(upload_bot)
    with pytest.warns(UserWarning, match="corpus folder"):
        status, corpus, counts, removable = handlers.remove("002_2e4104477adbd184.txt")
    assert "is-error" in status and corpus == gr.skip()
    status, *_ = handlers.remove(None)
    assert "is-error" in status


def test_the_upload_notice_lists_the_corpus_files_that_were_skipped(config, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "news.txt").write_text("خبر\nنص صالح.", encoding="utf-8")
    (corpus / "scan.txt").write_bytes(b"\x00\x01")
    bot = ChatBot(corpus=corpus, config=config, index_dir=tmp_path / "index")
    notice = Handlers(bot).upload_hint()
    assert "scan.txt" in notice and "looks like a binary file" in notice and "10 ميغابايت" in notice


def test_uploaded_articles_are_listed_and_searchable_at_once(upload_bot, tmp_path):
    handlers = Handlers(upload_bot)
    path = tmp_path / "zz_mars_base.md"
    path.write_text("# قاعدة على المريخ\n\nأعلنت وكالة الفضاء أن قاعدة المريخ الجديدة تضم 42 عالمًا يعملون في مختبر الجليد.\n",
                    encoding="utf-8")
    status, corpus, counts, files, removable = handlers.upload([str(path)])
    assert "is-ok" in status and "zz_mars_base.md" in corpus and "مرفوع" in corpus
    assert "قاعدة على المريخ" in corpus
    assert f"<b>{len(upload_bot.articles)}</b> مقال" in counts
    html, turns = run_turn(handlers, "كم عالمًا يعمل في قاعدة المريخ؟")[-1]
    answer = turns[0].answer
    assert any(c.source == "zz_mars_base.md" for c in answer.citations), answer
    assert "zz_mars_base.md" in html


# --- a real server and gradio_client ------------------------------------------------------

@pytest.fixture(scope="module")
def server(seeds_bot):
    demo = build_app(seeds_bot)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_gradio_client_round_trip_asks_the_kursk_question(server, seeds_bot):
    from gradio_client import Client

    client = Client(server, verbose=False, download_files=False)
    box, shown = client.predict(KURSK_AR, api_name="/ask")
    assert (box.get("value") if isinstance(box, dict) else box) == "" and KURSK_AR in shown
    html = client.predict(top_k=5, mode="extractive", show_scores=False, api_name="/answer")
    assert re.search(r'<button type="button" class="sanad-cite"[^>]*data-cite="0:1"[^>]*>\[1\]</button>', html)
    expected = seeds_bot.ask(KURSK_AR)
    for citation in expected.citations:
        assert citation.source in html
    assert "<script" not in html


def test_the_server_refuses_a_file_over_the_upload_limit(seeds_bot, tmp_path):
    from gradio_client import Client, handle_file

    demo = build_app(seeds_bot)
    demo.upload_limit = 1_000
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        big = tmp_path / "big.txt"
        big.write_text("خبر طويل\n" + "نص " * 1_000, encoding="utf-8")
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        with pytest.raises(Exception, match="(?i)too large|exceeds|maximum"):
            client.predict([handle_file(str(big))], api_name="/upload")
        assert "big.txt" not in {a.source for a in seeds_bot.articles}
    finally:
        demo.close()


def test_gradio_client_gets_the_message_of_a_bad_question(server):
    from gradio_client import Client

    client = Client(server, verbose=False, download_files=False)
    with pytest.raises(Exception, match="empty"):
        client.predict("  ", api_name="/ask")
