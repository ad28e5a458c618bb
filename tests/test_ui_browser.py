"""The chat page in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Asks the Kursk question in Arabic, waits for the streamed answer, clicks a citation marker and
checks that the side panel shows the quote highlighted in its article; then an English question,
an abstention and an HTML-injection attempt. Screenshots go to tests/artifacts/ (ui.png,
ui_en.png, ui_abstain.png) for a person to look at. Every wait has a timeout.

Set-up: the ``chromium`` fixture (conftest.py) installs Debian's chromium when it is missing; the
``playwright`` package is installed (pip) when it cannot be imported; ``playwright install`` is not
used (it downloads a browser). The test is skipped when neither can be had (no root, no network).
"""
from __future__ import annotations

import importlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ui.app import build_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KURSK_AR = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
KURSK_EN = "How many North Korean troops are in Kursk?"
OFF_TOPIC = "ما هي عاصمة فرنسا؟"
FIRST_ANSWER_MS = 120_000  # the first answer warms the model up on a busy 2-core machine
ANSWER_MS = 90_000
STEP_MS = 30_000


def _run(command: list[str], timeout: int) -> bool:
    try:
        return subprocess.run(command, timeout=timeout, capture_output=True).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def sync_playwright():
    """The Playwright package, installed with pip when it cannot be imported."""
    try:
        return importlib.import_module("playwright.sync_api").sync_playwright
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "--quiet", "playwright"], timeout=600)
        importlib.invalidate_caches()
        try:
            return importlib.import_module("playwright.sync_api").sync_playwright
        except ImportError:
            pytest.skip("the playwright package is not installed and pip could not install it")


@pytest.fixture(scope="module")
def server(seeds_bot):
    demo = build_app(seeds_bot)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser(chromium, sync_playwright):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS, headless=True,
                                             timeout=STEP_MS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ar")
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    page.set_default_navigation_timeout(60_000)
    page.goto(server, wait_until="domcontentloaded")
    page.wait_for_selector("#sanad-question textarea", timeout=60_000)
    page.wait_for_function("document.querySelector('#sanad-transcript .sanad-thread') !== null")
    yield page
    context.close()


def ask(page, question: str, timeout: int = ANSWER_MS):
    """Type a question, send it, wait until its answer is final; the locator of that turn."""
    done = page.locator("#sanad-transcript .sanad-turn:not(.is-pending)").count()
    page.fill("#sanad-question textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('#sanad-transcript .sanad-turn:not(.is-pending)').length > n "
        "&& !document.querySelector('#sanad-transcript .sanad-turn.is-pending')", arg=done, timeout=timeout)
    return page.locator("#sanad-transcript .sanad-turn").nth(done)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.wait_for_timeout(400)  # let the smooth scroll of the panel settle
    page.screenshot(path=str(path), full_page=True, timeout=STEP_MS)
    return path


def test_kursk_question_streams_cites_and_opens_the_quote_in_the_panel(page, seeds_bot):
    turn = ask(page, KURSK_AR, timeout=FIRST_ANSWER_MS)
    assert turn.locator(".sanad-bubble").inner_text() == KURSK_AR
    expected = seeds_bot.ask(KURSK_AR)
    answer = turn.locator(".sanad-bot")
    assert answer.get_attribute("dir") == "rtl"
    markers = answer.locator(".sanad-text button.sanad-cite")
    assert markers.count() >= 1
    texts = markers.all_inner_texts()
    assert all(text.strip() in {f"[{c.n}]" for c in expected.citations} for text in texts), texts
    for citation in expected.citations:
        assert citation.source in answer.inner_text()

    markers.first.click()
    mark = page.locator("#sanad-panel mark")
    mark.wait_for(timeout=STEP_MS)
    number = int(texts[0].strip("[] "))
    citation = next(c for c in expected.citations if c.n == number)
    assert mark.inner_text().split() == citation.quote.split()
    panel = page.locator("#sanad-panel").inner_text()
    assert citation.source in panel and seeds_bot.index.article(citation.article_id).title.split()[0] in panel
    assert "is-active" in (markers.first.get_attribute("class") or "")
    assert page.evaluate("getComputedStyle(document.querySelector('#sanad-panel mark')).backgroundColor") != "rgba(0, 0, 0, 0)"
    path = screenshot(page, "ui.png")
    assert path.stat().st_size > 20_000


def test_english_question_reads_left_to_right(page, seeds_bot):
    turn = ask(page, KURSK_EN, timeout=FIRST_ANSWER_MS)
    expected = seeds_bot.ask(KURSK_EN)
    assert turn.locator(".sanad-bubble").evaluate("e => getComputedStyle(e).direction") == "ltr"
    answer = turn.locator(".sanad-bot")
    assert answer.get_attribute("dir") == ("ltr" if expected.language == "en" else "rtl")
    buttons = answer.locator("button.sanad-cite")
    if buttons.count():
        buttons.first.click()
        page.locator("#sanad-panel mark").wait_for(timeout=STEP_MS)
    screenshot(page, "ui_en.png")


def test_abstention_is_shown_as_such_with_related_passages(page, seeds_bot):
    turn = ask(page, OFF_TOPIC, timeout=FIRST_ANSWER_MS)
    expected = seeds_bot.ask(OFF_TOPIC)
    answer = turn.locator(".sanad-bot")
    classes = answer.get_attribute("class") or ""
    assert ("sanad-abstained" in classes) == expected.abstained
    if expected.abstained:
        assert turn.locator(".sanad-notice-abstained").count() == 1
        related = [c for c in expected.citations if c.related]
        assert turn.locator(".sanad-related li").count() == len(related)
        if related:
            turn.locator(".sanad-related button.sanad-cite").first.click()
            page.locator("#sanad-panel mark").wait_for(timeout=STEP_MS)
    screenshot(page, "ui_abstain.png")


def test_a_question_with_html_is_shown_as_text_and_runs_nothing(page):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    attack = '<img src=x onerror="alert(1)"> <script>alert(2)</script> كورسك'
    turn = ask(page, attack, timeout=FIRST_ANSWER_MS)
    assert turn.locator(".sanad-bubble").inner_text() == attack
    assert turn.locator("img").count() == 0 and page.locator("#sanad-transcript script").count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []


def test_clear_button_starts_a_new_conversation(page):
    ask(page, KURSK_AR, timeout=FIRST_ANSWER_MS)
    page.locator("#sanad-transcript button.sanad-cite").first.click()
    page.locator("#sanad-panel mark").wait_for(timeout=STEP_MS)
    page.click("#sanad-clear")
    page.wait_for_selector("#sanad-transcript .sanad-thread.is-empty", timeout=STEP_MS)
    page.wait_for_selector("#sanad-panel .sanad-panel-empty", timeout=STEP_MS)


# --- uploading and removing an article (its own ChatBot: this changes the index) ---------------

@pytest.fixture(scope="module")
def upload_server(config, seeds_dir, tmp_path_factory):
    from rag.chatbot import ChatBot

    bot = ChatBot(corpus=seeds_dir, config=config, index_dir=tmp_path_factory.mktemp("browser-upload-index"))
    demo = build_app(bot)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/", bot
    demo.close()


def test_an_uploaded_article_is_listed_and_the_remove_button_takes_it_out(browser, upload_server, tmp_path):
    url, bot = upload_server
    article = tmp_path / "zz_browser_upload.txt"
    article.write_text("خبر مرفوع من المتصفح\nأعلنت البلدية افتتاح حديقة النخيل التي تضم 77 شجرة نادرة.\n",
                       encoding="utf-8")
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ar")
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#sanad-question textarea", timeout=60_000)
    page.get_by_text("المقالات", exact=True).first.click()
    page.locator("#sanad-upload input[type=file]").set_input_files(str(article))
    page.wait_for_selector("#sanad-upload-status .is-ok", timeout=ANSWER_MS)
    assert "zz_browser_upload.txt" in page.locator("#sanad-corpus-list").inner_text()
    assert "uploads/zz_browser_upload.txt" in bot.uploads

    page.locator("#sanad-removable input").click()
    page.get_by_role("option", name="uploads/zz_browser_upload.txt").click()
    page.click("#sanad-remove")
    page.wait_for_function("document.querySelector('#sanad-upload-status').innerText.includes('حُذف')", timeout=ANSWER_MS)
    assert "zz_browser_upload.txt" not in page.locator("#sanad-corpus-list").inner_text()
    assert bot.uploads == [] and "uploads/zz_browser_upload.txt" not in bot.index
    screenshot(page, "ui_remove.png")
    context.close()
