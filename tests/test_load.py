"""20 concurrent users of a real `sanad chat` server (a subprocess on a free port), through
gradio_client: 5 questions each, Arabic and English, while one of them uploads an article, asks
about it and removes it. Zero errors, every citation on the page slices back to its article, the
upload is cited once it is in and no longer once it is removed. ``python -m eval.load`` is the
same run as a command, for the latency figures in the README."""
from __future__ import annotations

import pytest

from eval.load import check_answer, run


@pytest.fixture(scope="module")
def load_run(config, embedder) -> dict:  # the embedder fixture makes sure the model is built
    pytest.importorskip("gradio_client")
    return run(users=(20,), per_user=5, config=config)


@pytest.mark.slow
def test_twenty_users_at_once_get_exact_citations_and_no_errors(load_run):
    twenty = load_run["runs"]["20"]
    assert load_run["problems"] == [] and twenty["problems"] == []
    assert twenty["questions"] == 20 * 5 + 2 and load_run["server_tracebacks"] == 0
    assert twenty["answers_with_citations"] >= twenty["questions"] // 2


def test_the_page_check_catches_a_quote_that_does_not_match_its_offsets():
    page = ('<div class="sanad-turn" data-turn="0"><div class="sanad-text">نص</div><div class="sanad-sources"><ol>'
            '<li class="sanad-source" dir="rtl" data-article="a.txt" data-start="0" data-end="4">'
            '<blockquote class="sanad-quote" dir="auto">خبر ثان</blockquote></li></ol></div></div>')
    problems, cited = check_answer(page, {"a.txt": "خبر أول"})
    assert cited == ["a.txt"] and len(problems) == 1 and "the page shows" in problems[0]
    assert check_answer(page.replace("خبر ثان", "خبر"), {"a.txt": "خبر أول"})[0] == []
