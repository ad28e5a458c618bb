"""The evaluation suite: each metric on a case it must pass and one it must fail, then one real
``sanad eval`` run (real model, real index of seeds/) on a six-question file, the absent half on
XQuAD's first article, and a six-question ArQuAD dev run.
"""
from __future__ import annotations

import json

import pytest

from eval import metrics as m
from eval.run import QuestionResult, balanced_sample, check_thresholds, read_questions, summarize
from rag.errors import CorpusError
from rag.types import Citation

BLINKEN = ("وقال وزير الخارجية الأمريكي أنتوني بلينكن نقلا عن معلومات مخابرات أمريكية إن من بين 10 آلاف جندي كوري "
           "شمالي قالت واشنطن إنهم دخلوا الأراضي الروسية، هناك ما يصل إلى 8 آلاف يتمركزون “في منطقة كورسك” على الحدود مع أوكرانيا.")
SEOUL = ("وكانت الولايات المتحدة وكوريا الجنوبية قد أكدت وجود أكثر من 11 ألف جندي كوري شمالي في مدينة كورسك الروسية، "
         "حيث يشارك الجيش الأوكراني في عمليات عسكرية ضد القوات الروسية.")


def cite(n: int, quote: str, related: bool = False, article_id: str = "a.txt", start: int = 0) -> Citation:
    return Citation(n, article_id, "title", quote, start, start + len(quote), 1.0, article_id, related=related)


# --- answer keys ----------------------------------------------------------------------

@pytest.mark.parametrize("key, text", [
    ("8000", "يتمركز ما يصل إلى 8 آلاف جندي"),
    ("8000", "up to 8,000 troops"),
    ("8000", "ثمانية آلاف جندي"),
    ("1500", "أرسلت ١٥٠٠ جندي"),
    ("أوكرانيا", "الحدود مع اوكرانيا"),  # hamza folded
    ("كورسك", "كُورْسْك"),  # diacritics dropped
    ("Blinken", "BLINKEN said"),
])
def test_key_matches_after_normalization(key, text):
    assert m.key_matches(key, text)


@pytest.mark.parametrize("key, text", [
    ("12", "12000 جندي"),  # a numeric key must not touch other digits
    ("1", "كورسك [1]"),  # a citation marker is not a figure
    ("11000", "8 آلاف جندي"),
    ("", "anything"),
])
def test_key_does_not_match(key, text):
    assert not m.key_matches(key, text)


# --- retrieval ----------------------------------------------------------------------------

def test_article_rank_counts_distinct_articles():
    assert m.article_rank(["x", "x", "y", "gold"], {"gold"}) == 3
    assert m.article_rank(["x", "y"], {"gold"}) is None


def test_sentence_rank_needs_the_whole_support_sentence():
    assert m.sentence_rank(["نص آخر", "مقدمة. " + SEOUL], [SEOUL]) == 2
    assert m.sentence_rank([SEOUL[:50]], [SEOUL]) is None


def test_recall_and_mrr():
    ranks = [1, 3, None, 6]
    assert m.recall_at(ranks, 1) == 0.25
    assert m.recall_at(ranks, 5) == 0.5
    assert m.mrr(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 6) / 4, abs=1e-4)
    assert m.recall_at([], 5) is None  # not measured, not zero


# --- statements and citations ---------------------------------------------------------------

def test_quotes_are_never_cut_and_trailing_markers_join_their_sentence():
    text = "ما يصل إلى 8 آلاف جندي. [1]\n«جملة أولى. جملة ثانية؟» [1]"
    found = m.statements(text)
    assert [s.markers for s in found] == [(1,), (1,)]
    assert found[1].text == "«جملة أولى. جملة ثانية؟»"


def test_a_sentence_with_two_marker_groups_is_two_clauses():
    found = m.statements("8 آلاف بحسب بلينكن [1]، و11 ألفا بحسب سيول [2].")
    assert [s.markers for s in found] == [(1,), (2,)]


def test_english_framing_is_exempt_but_not_english_figures():
    assert m.is_exempt("The articles give different figures:")
    assert not m.is_exempt("Up to 8,000 troops")
    assert not m.is_exempt("جنود في كورسك")


def test_arabic_framing_words_are_exempt_like_english_framing():
    text = f"تختلف المصادر في هذا:\n- ما يصل إلى 8 آلاف [1]\n«{BLINKEN}» [1]"
    assert m.is_exempt("تختلف المصادر في هذا:")
    assert m.citation_scores(text, [cite(1, BLINKEN)]) == (1.0, 1.0)
    assert m.groundedness(text, [cite(1, BLINKEN)]) == 1.0


def test_a_proclitic_in_the_quote_still_matches_the_bare_word():
    quote = "زودت موسكو بأكثر من “ألف صاروخ”."
    assert m.groundedness("أكثر من ألف صاروخ [1]", [cite(1, quote)]) == 1.0
    assert m.groundedness("أقل من ألف صاروخ [1]", [cite(1, quote)]) < 1


def test_supported_answer_scores_one():
    text = f"ما يصل إلى 8 آلاف جندي في منطقة كورسك [1].\n«{BLINKEN}» [1]"
    assert m.citation_scores(text, [cite(1, BLINKEN)]) == (1.0, 1.0)


def test_citation_whose_quote_lacks_the_number_fails_precision_and_recall():
    text = "ما يصل إلى 8 آلاف جندي في كورسك [1]."
    recall, precision = m.citation_scores(text, [cite(1, SEOUL)])
    assert recall == 0.0 and precision < 1


def test_an_unneeded_second_citation_lowers_precision_only():
    text = "ما يصل إلى 8 آلاف جندي في منطقة كورسك [1][2]."
    assert m.citation_scores(text, [cite(1, BLINKEN), cite(2, SEOUL)]) == (1.0, 0.5)


def test_two_citations_each_needed_for_one_sentence():
    text = "في كورسك 8 آلاف أو 11 ألف جندي [1][2]."
    assert m.citation_scores(text, [cite(1, BLINKEN), cite(2, SEOUL)]) == (1.0, 1.0)


def test_uncited_content_sentence_lowers_recall():
    text = f"يتمركز 8 آلاف جندي كوري شمالي في كورسك.\n«{BLINKEN}» [1]"
    recall, precision = m.citation_scores(text, [cite(1, BLINKEN)])
    assert recall == 0.5 and precision == 1.0


def test_related_or_missing_citations_never_support():
    text = "ما يصل إلى 8 آلاف جندي في منطقة كورسك [1] [3]."
    assert m.citation_scores(text, [cite(1, BLINKEN, related=True)]) == (0.0, 0.0)


def test_content_words_must_be_half_in_the_quote():
    assert m.supports("جنود كوريون في كورسك", [SEOUL])
    assert not m.supports("صواريخ ودبابات وطائرات مسيرة في كورسك", [SEOUL])


def test_groundedness():
    assert m.groundedness(f"«{BLINKEN}» [1]", [cite(1, BLINKEN)]) == 1.0
    assert m.groundedness("12 ألف جندي في كورسك [1]", [cite(1, BLINKEN)]) < 1  # 12000 is not in the quote
    assert m.groundedness(f"«{BLINKEN}» [1]", [cite(1, BLINKEN, related=True)]) < 1  # related is not support
    assert m.groundedness("The articles do not say.", []) is None


def test_exact_quotes_slice_back_from_the_article():
    article = "عنوان\n" + SEOUL
    texts = {"a.txt": article}
    good = cite(1, SEOUL, start=article.index(SEOUL))
    shifted = cite(2, SEOUL, start=article.index(SEOUL) + 1)
    unknown = cite(3, SEOUL, article_id="missing.txt")
    assert m.exact_quotes([good, shifted, unknown], texts.__getitem__) == 1


# --- short answers and abstention -----------------------------------------------------------

def test_short_answer_em_and_f1():
    assert m.exact_match("موسكو.", ["موسكو"]) == 1.0
    assert m.exact_match("في موسكو", ["موسكو"]) == 0.0
    assert m.token_f1("في موسكو", ["موسكو", "روسيا"]) == pytest.approx(2 / 3)
    assert m.token_f1("8 آلاف", ["8000"]) == 1.0
    assert m.token_f1("سيول", ["موسكو"]) == 0.0


def test_abstention_scores():
    answerable = [True, True, True, False, False]
    abstained = [False, False, True, True, False]
    correct = [True, False, False, False, False]
    scores = m.abstention_scores(answerable, abstained, correct)
    assert scores["abstention_precision"] == 0.5
    assert scores["abstention_recall"] == 0.5
    assert scores["abstention_accuracy"] == 0.6
    assert scores["false_abstention_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert scores["wrong_confident_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert scores["confident_unanswerable_rate"] == 0.5
    assert m.abstention_scores([True], [False], [True])["abstention_recall"] is None


def result(**changes) -> QuestionResult:
    base = dict(id="ar-001", lang="ar", group="seeds", answerable=True, tags=(), abstained=False, key_matched=True,
                short_answer=None, short_em=None, short_f1=None, confidence=0.5, latency_ms=10.0, article_rank=1,
                sentence_rank=2, citation_recall=1.0, citation_precision=1.0, groundedness=1.0, quotes_exact=1,
                quotes=1, cites_gold_article=True, cites_all_gold_articles=True, text="")
    return QuestionResult(**{**base, **changes})


def test_an_abstention_is_never_an_accurate_answer():
    summary = summarize([result(), result(abstained=True, citation_recall=None, groundedness=None)])
    assert summary["answer_accuracy"] == 0.5
    assert summary["sentence_recall@1"] == 0.0 and summary["article_recall@1"] == 1.0


# --- thresholds and input -------------------------------------------------------------------------

def test_check_thresholds():
    metrics = {"answer_accuracy": 0.6, "abstention_recall": None, "ar": {"answer_accuracy": 0.9},
               "wrong_confident_rate": 0.3}
    assert check_thresholds(metrics, {"answer_accuracy": 0.5, "abstention_recall": 0.0, "ar": {"answer_accuracy": 0.9},
                                      "max": {"wrong_confident_rate": 0.3}}) == []
    failures = check_thresholds(metrics, {"answer_accuracy": 0.7, "abstention_recall": 0.1, "typo_metric": 0.0,
                                          "max": {"wrong_confident_rate": 0.2}})
    assert [f.split()[0] for f in failures] == ["answer_accuracy", "abstention_recall:", "typo_metric:",
                                                "wrong_confident_rate"]


def test_xquad_limit_takes_both_halves():
    from types import SimpleNamespace

    questions = [SimpleNamespace(half="report")] * 10 + [SimpleNamespace(half="fit")] * 3
    sample = balanced_sample(questions, 8)
    assert len(sample) == 8 and sum(q.half == "fit" for q in sample) == 3
    assert balanced_sample(questions, None) == questions


def test_a_bad_question_line_names_its_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "x", "question": "?", "answerable": false}\n{"id": "y"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"qa.jsonl:2"):
        read_questions(path)


# --- one real run -----------------------------------------------------------------------------------

QUESTIONS = [
    {"id": "ar-001", "lang": "ar", "question": "كم عدد الجنود الكوريين الشماليين الذين أكدت الولايات المتحدة وكوريا الجنوبية وجودهم في كورسك؟",
     "answerable": True, "answers": ["11000", "11 ألف"], "articles": ["004_d287910d6ae0b8d5.txt"], "support": [SEOUL],
     "follows": None, "tags": ["number", "conflict"]},
    {"id": "ar-002", "lang": "ar", "question": "كم جندياً كورياً شمالياً يتمركزون في منطقة كورسك بحسب وزير الخارجية الأمريكي أنتوني بلينكن؟",
     "answerable": True, "answers": ["8000", "8 آلاف"], "articles": ["002_2e4104477adbd184.txt"], "support": [BLINKEN],
     "follows": None, "tags": ["number"]},
    {"id": "en-001", "lang": "en", "question": "According to Antony Blinken, how many North Korean troops are stationed in the Kursk region?",
     "answerable": True, "answers": ["8000"], "articles": ["002_2e4104477adbd184.txt"], "support": [BLINKEN],
     "follows": None, "tags": ["number", "english"]},
    {"id": "en-002", "lang": "en", "question": "And when will they be used against Ukrainian forces, according to him?",
     "answerable": True, "answers": ["coming days", "الأيام المقبلة"], "articles": ["002_2e4104477adbd184.txt"],
     "support": ["لكننا نتوقع أن يحدث ذلك في الأيام المقبلة"], "follows": "en-001", "tags": ["date", "follow-up", "english"]},
    {"id": "un-001", "lang": "ar", "question": "ما هي عاصمة أستراليا؟", "answerable": False, "answers": [], "articles": [],
     "support": [], "follows": None, "tags": ["off-topic"]},
    {"id": "un-002", "lang": "en", "question": "How many tanks did North Korea send to Russia?", "answerable": False,
     "answers": [], "articles": [], "support": [], "follows": None, "tags": ["absent", "english"]},
]


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """``sanad eval`` on six questions over seeds/, with a thresholds file that only holds the invariant."""
    from rag.cli import main

    folder = tmp_path_factory.mktemp("eval")
    questions = folder / "qa.jsonl"
    questions.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    thresholds = folder / "thresholds.toml"
    thresholds.write_text("[seeds]\nexact_quote_rate = 1.0\n", encoding="utf-8")
    out = folder / "out"
    code = main(["eval", "--questions", str(questions), "--out", str(out), "--thresholds", str(thresholds)])
    return code, out, questions


def test_real_run_writes_the_report(eval_run):
    code, out, _ = eval_run
    assert code == 0
    for name in ("report.json", "report.md", "confidence.png"):
        assert (out / name).stat().st_size > 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    metrics = report["metrics"]
    assert metrics["questions"] == 6 and metrics["unanswerable"] == 2
    assert metrics["exact_quote_rate"] == 1.0
    assert (out / "index-seeds").is_dir()  # the eval index, not the user's
    assert [r["id"] for r in report["results"]] == [q["id"] for q in QUESTIONS]
    assert all(r["latency_ms"] > 0 for r in report["results"])


def test_an_impossible_threshold_fails_the_run(eval_run, capsys, tmp_path):
    from rag.cli import main

    _, out, questions = eval_run
    impossible = tmp_path / "impossible.toml"
    impossible.write_text("[seeds]\nanswer_accuracy = 1.01\n", encoding="utf-8")
    capsys.readouterr()
    code = main(["eval", "--questions", str(questions), "--out", str(out), "--thresholds", str(impossible), "--limit", "2"])
    assert code == 1
    assert "FAIL answer_accuracy" in capsys.readouterr().out


def test_the_absent_half_scores_present_and_left_out_paragraphs(tmp_path):
    """Questions whose paragraph was left out should be abstained on more often than those whose
    paragraph is there are (the real reader and gate, on XQuAD's first article)."""
    from eval import xquad
    from eval.run import absent_half, xquad_asks
    from rag.chatbot import ChatBot

    records, questions = xquad.load()
    questions = [q for q in questions if q.paragraph <= 6][:24]
    asks = xquad_asks(questions)
    bot = ChatBot(corpus=xquad.write_corpus(records[:6:2], tmp_path / "corpus"), index_dir=tmp_path / "index")
    assert [a.text for a in bot.articles] == [records[0]["text"], records[2]["text"], records[4]["text"]]
    table = absent_half(bot, asks, ("fit", "report"), "xquad")
    for lang in ("ar", "en"):
        rates = table[lang]["all"]
        assert all(0.0 <= value <= 1.0 for value in rates.values())
        assert rates["present_answered"] > 1 - rates["absent_abstained"]


# --- ArQuAD dev -------------------------------------------------------------------------------------

def test_arquad_paragraphs_are_articles_whose_ids_the_questions_name():
    from eval import arquad

    records, questions = arquad.load()
    articles = {article.id: article for article in arquad.articles(records)}
    assert len(articles) == len(records) == 393 and len(questions) == 1565
    for q in questions:
        assert articles[q.article_id].text[q.answer_start:q.answer_end] == q.answer


def test_arquad_limit_samples_both_sides_of_the_absent_half():
    from eval import arquad

    _, questions = arquad.load()
    sample = balanced_sample(questions, 9, kind=lambda q: q.paragraph % 2)
    assert len(sample) == 9 and sum(q.paragraph % 2 for q in sample) == 4
    assert [q.id for q in sample] == [q.id for q in questions if q in sample]  # file order


@pytest.mark.slow  # embeds all 393 ArQuAD paragraphs (~40 s on 2 cores)
def test_arquad_real_run_reports_answers_retrieval_and_the_absent_half(tmp_path):
    """``sanad eval --suite arquad --limit 6``: the real model over all 393 paragraphs, held in memory."""
    from rag.cli import main

    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text("[arquad]\nexact_quote_rate = 1.0\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["eval", "--suite", "arquad", "--limit", "6", "--out", str(out), "--thresholds", str(thresholds)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    metrics = report["metrics"]
    assert metrics["questions"] == 6 and report["corpus"] == "393 articles held in memory"
    assert set(metrics["ar"]) == {"fit", "report", "all"}  # the report half is what calibration never read
    assert {"all"} <= set(metrics["retrieval"]["ar"]) <= {"fit", "report", "all"}
    for name in ("answer_accuracy", "short_answer_f1", "gold_paragraph_f1", "false_abstention_rate"):
        assert 0.0 <= metrics["ar"]["all"][name] <= 1.0
    assert 0.0 <= metrics["retrieval"]["ar"]["all"]["hybrid"]["R@1"] <= metrics["retrieval"]["ar"]["all"]["hybrid"]["R@5"] <= 1.0
    assert all(value is not None for value in metrics["absent_half"]["ar"]["all"].values())  # both sides asked
    assert "## Absent half" in (out / "report.md").read_text(encoding="utf-8")
    assert {p.name for p in out.iterdir()} >= {"index-arquad", "index-arquad-half"}
    assert not list(out.glob("*corpus*"))  # no copy of the paragraphs outside the index


def test_a_missing_arquad_folder_is_one_line_naming_it(tmp_path, capsys):
    from rag.cli import main

    missing = tmp_path / "no-arquad"
    assert main(["eval", "--suite", "arquad", "--arquad", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "--arquad DIR" in err and "Traceback" not in err
