"""rag/chatbot.py: the ChatBot over a folder, its question checks, and uploads."""
from __future__ import annotations

import inspect
import os

import pytest

import rag
from rag.chatbot import UPLOADS, ChatBot
from rag.errors import CorpusError, QuestionError, SanadError
from rag.store import Index, files_table
from rag.types import Answer, Article

KURSK_AR = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
KURSK_EN = "How many North Korean troops are in Kursk?"
KURSK_ARTICLES = {"002_2e4104477adbd184.txt", "004_d287910d6ae0b8d5.txt"}

LIBRARY = ("مكتبة الزيتون في طرابلس\n"
           "افتتحت بلدية طرابلس مكتبة الزيتون العامة التي تضم 4321 مخطوطة نادرة. "
           "وقال رئيس البلدية إن المكتبة ستفتح أبوابها يوميا للباحثين.\n")
LIBRARY_QUESTION = "كم مخطوطة تضم مكتبة الزيتون في طرابلس؟"


def assert_citations_slice_back(bot: ChatBot, answer: Answer) -> None:
    for citation in answer.citations:
        article = bot.index.article(citation.article_id)
        assert article.text[citation.start:citation.end] == citation.quote
        assert citation.source == article.source


@pytest.fixture(scope="module")
def kursk_answer(seeds_bot) -> Answer:
    return seeds_bot.ask(KURSK_AR)


@pytest.fixture
def own_bot(seeds_bot, seeds_index_copy, config) -> ChatBot:
    """A ChatBot over the seeds with its own copy of the index (nothing to embed)."""
    return ChatBot.from_dir(seeds_bot.corpus, config=config, index_dir=seeds_index_copy)


def test_from_dir_builds_a_chatbot_over_the_folder(seeds_bot, seeds_dir):
    assert isinstance(seeds_bot, ChatBot)
    assert seeds_bot.corpus == seeds_dir
    assert sorted(a.id for a in seeds_bot.articles) == sorted(p.name for p in seeds_dir.glob("*.txt"))
    assert (seeds_bot.last_update.added, seeds_bot.last_update.unchanged) == (5, 0)


def test_kursk_answer_cites_exact_spans(seeds_bot, kursk_answer):
    assert isinstance(kursk_answer, Answer)
    assert not kursk_answer.abstained
    assert kursk_answer.citations
    assert_citations_slice_back(seeds_bot, kursk_answer)
    assert {c.article_id for c in kursk_answer.citations} & KURSK_ARTICLES
    for citation in kursk_answer.citations:
        if not citation.related:
            assert f"[{citation.n}]" in kursk_answer.text


def test_kursk_answer_round_trips_as_a_dict(kursk_answer):
    data = kursk_answer.to_dict()
    assert data["text"] == kursk_answer.text and data["abstained"] is False
    assert [c["quote"] for c in data["citations"]] == [c.quote for c in kursk_answer.citations]


def test_english_question_citations_slice_back(seeds_bot):
    answer = seeds_bot.ask(KURSK_EN)
    assert answer.language == "en"
    assert_citations_slice_back(seeds_bot, answer)  # answered or not, whatever it shows is exact


def test_stream_ends_with_the_answer(seeds_bot, kursk_answer):
    parts = list(seeds_bot.stream(KURSK_AR))
    assert isinstance(parts[-1], Answer)
    assert all(isinstance(part, str) for part in parts[:-1])
    assert parts[-1].citations == kursk_answer.citations


def test_the_reader_reads_the_first_read_k_chunks(seeds_bot, seeds_index_copy, config):
    """``answer.read_k`` below ``retrieve.top_k``: what the answer quotes comes from the chunks read; a
    question's own ``top_k`` sets both."""
    bot = ChatBot.from_dir(seeds_bot.corpus, config=config.replace(answer={"read_k": 1}), index_dir=seeds_index_copy)
    first = bot.retrieve(KURSK_AR)[0].chunk
    answer = bot.ask(KURSK_AR)
    assert answer.citations and all(first.start <= c.start < c.end <= first.end and c.article_id == first.article_id
                                    for c in answer.citations)
    assert bot.ask(KURSK_AR, top_k=5).to_dict() == seeds_bot.ask(KURSK_AR).to_dict()


def test_retrieve_modes(seeds_bot):
    for mode in ("dense", "bm25", "hybrid"):
        hits = seeds_bot.retrieve(KURSK_AR, top_k=3, mode=mode)
        assert len(hits) == 3 and {h.retriever for h in hits} == {mode}
        assert {h.chunk.article_id for h in hits} & KURSK_ARTICLES


# --- question checks ----------------------------------------------------------------------

@pytest.mark.parametrize("question, message", [
    ("", "the question is empty"),
    ("   \n\t ", "the question is empty"),
    ("\u064e\u064f\u0650\u0651", "no words"),  # fatha, damma, kasra, shadda
    ("؟ ! ...", "no words"),
    ("ك" * 100_000, "100,000 characters long; the limit is 2,000"),
], ids=["empty", "whitespace", "diacritics-only", "punctuation-only", "100k-characters"])
def test_bad_questions_are_question_errors(seeds_bot, question, message):
    with pytest.raises(QuestionError, match=message) as error:
        seeds_bot.check_question(question)
    assert isinstance(error.value, SanadError)
    with pytest.raises(QuestionError, match=message):
        seeds_bot.ask(question)


def test_a_question_that_is_not_text(seeds_bot):
    with pytest.raises(QuestionError, match="must be text, got NoneType"):
        seeds_bot.ask(None)


def test_question_is_stripped_and_the_limit_is_inclusive(seeds_bot, config):
    assert seeds_bot.check_question(f"  {KURSK_AR}\n") == KURSK_AR
    at_limit = "ك" * config.answer.max_question_chars
    assert seeds_bot.check_question(at_limit) == at_limit
    with pytest.raises(QuestionError):
        seeds_bot.check_question(at_limit + "ك")


def test_a_question_of_tatweel_only_has_no_words(seeds_bot):
    try:
        seeds_bot.check_question("ـــــ")
    except QuestionError:
        return
    raise AssertionError("a question of tatweel only was accepted")


# --- uploads ---------------------------------------------------------------------------------

def test_added_file_is_searchable_at_once(own_bot, tmp_path):
    path = tmp_path / "library.txt"
    path.write_text(LIBRARY, encoding="utf-8")
    before = len(own_bot.index)
    report = own_bot.add_files([path])
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 0, 0, 5)
    assert own_bot.last_update == report
    assert len(own_bot.index) > before
    upload_id = f"{UPLOADS}/library.txt"
    assert own_bot.index.article(upload_id).text == LIBRARY
    assert own_bot.retrieve(LIBRARY_QUESTION, top_k=3)[0].chunk.article_id == upload_id
    answer = own_bot.ask(LIBRARY_QUESTION)
    assert upload_id in {c.article_id for c in answer.citations}
    assert_citations_slice_back(own_bot, answer)


def test_added_file_survives_a_restart(own_bot, tmp_path, config):
    path = tmp_path / "library.txt"
    path.write_text(LIBRARY, encoding="utf-8")
    own_bot.add_files([path])
    restarted = ChatBot.from_dir(own_bot.corpus, config=config, index_dir=own_bot.index_dir)
    assert (restarted.last_update.added, restarted.last_update.unchanged) == (0, 6)
    assert f"{UPLOADS}/library.txt" in restarted.index


def test_an_upload_and_its_removal_leave_the_corpus_folder_unscanned(own_bot, tmp_path, config, monkeypatch):
    def no_scan(*args, **kwargs):
        raise AssertionError("the corpus folder was scanned for an upload")

    monkeypatch.setattr("rag.chatbot.scan_corpus", no_scan)
    monkeypatch.setattr("rag.chatbot.files_table", no_scan)
    path = tmp_path / "library.txt"
    path.write_text(LIBRARY, encoding="utf-8")
    assert own_bot.add_files([path]).added == 1 and own_bot.uploads == [f"{UPLOADS}/library.txt"]
    assert files_table(own_bot.index_dir)[f"{UPLOADS}/library.txt"][2] == [f"{UPLOADS}/library.txt"]
    report = own_bot.remove(f"{UPLOADS}/library.txt")
    assert (report.removed, report.unchanged) == (1, 5) and own_bot.uploads == []
    assert f"{UPLOADS}/library.txt" not in files_table(own_bot.index_dir)
    monkeypatch.undo()
    restarted = ChatBot.from_dir(own_bot.corpus, config=config, index_dir=own_bot.index_dir)
    assert (restarted.last_update.added, restarted.last_update.removed, restarted.last_update.unchanged) == (0, 0, 5)


def test_refresh_finds_what_changed_from_the_files_table_alone(seeds_corpus_copy, seeds_index_copy, config, monkeypatch):
    bot = ChatBot.from_dir(seeds_corpus_copy, config=config, index_dir=seeds_index_copy)
    assert (bot.last_update.added, bot.last_update.unchanged) == (0, 5)

    def listed(*args):
        raise AssertionError("every indexed id was listed")

    monkeypatch.setattr(Index, "article_hashes", listed)
    gone = sorted(seeds_corpus_copy.glob("*.txt"))[0]
    gone.unlink()
    (seeds_corpus_copy / "library.txt").write_text(LIBRARY, encoding="utf-8")
    report = bot.refresh()
    assert (report.added, report.removed, report.unchanged) == (1, 1, 4)
    assert gone.name not in bot.index and "library.txt" in bot.index
    monkeypatch.undo()
    document = Article("doc-1", "doc-1", "وثيقة", LIBRARY.replace("4321", "1234"))
    with_document = ChatBot(seeds_corpus_copy, config=config, index_dir=seeds_index_copy, articles=[document])
    assert "doc-1" in with_document.index and with_document.last_update.added == 1
    without = ChatBot(seeds_corpus_copy, config=config, index_dir=seeds_index_copy)  # not given again: removed
    assert "doc-1" not in without.index and without.last_update.removed == 1


def bad_upload_leaves_index_unchanged(bot: ChatBot, path, match: str) -> None:
    version, chunks = os.readlink(bot.index_dir / "current"), len(bot.index)
    index = bot.index
    with pytest.raises(CorpusError, match=match):
        bot.add_files([path])
    assert os.readlink(bot.index_dir / "current") == version
    assert bot.index is index and len(bot.index) == chunks
    assert not (bot.index_dir / UPLOADS / path.name).exists()


def test_binary_upload_changes_nothing(own_bot, tmp_path):
    path = tmp_path / "scan.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    bad_upload_leaves_index_unchanged(own_bot, path, r"scan\.txt: looks like a binary file")


def test_an_upload_in_no_known_encoding_changes_nothing(own_bot, tmp_path):
    path = tmp_path / "noise.txt"
    path.write_bytes(bytes(range(128, 256)) * 4)
    bad_upload_leaves_index_unchanged(own_bot, path, r"noise\.txt: not text in UTF-8")


def test_a_windows_1256_upload_is_decoded_and_its_encoding_recorded(own_bot, tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes(LIBRARY.encode("cp1256"))
    own_bot.add_files([path])
    article = own_bot.index.article(f"{UPLOADS}/windows.txt")
    assert (article.text, article.encoding) == (LIBRARY, "cp1256")
    assert_citations_slice_back(own_bot, own_bot.ask(LIBRARY_QUESTION))


def test_empty_upload_changes_nothing(own_bot, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text(" \n ", encoding="utf-8")
    bad_upload_leaves_index_unchanged(own_bot, path, r"empty\.txt: the file has no text")


def test_unsupported_upload_changes_nothing(own_bot, tmp_path):
    path = tmp_path / "slides.pptx"
    path.write_bytes(b"PK\x03\x04")
    bad_upload_leaves_index_unchanged(own_bot, path, r"slides\.pptx: unsupported file type")


def test_broken_pdf_upload_changes_nothing(own_bot, tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.7")
    bad_upload_leaves_index_unchanged(own_bot, path, r"report\.pdf: not a readable PDF")


def test_a_bad_file_is_skipped_and_the_good_ones_are_added(own_bot, tmp_path):
    good, bad = tmp_path / "library.txt", tmp_path / "scan.txt"
    good.write_text(LIBRARY, encoding="utf-8")
    bad.write_bytes(b"\x00\x01\x02")
    report = own_bot.add_files([good, bad])
    assert report.added == 1 and report.skipped == (("scan.txt", "looks like a binary file, not text"),)
    assert f"{UPLOADS}/library.txt" in own_bot.index
    assert not (own_bot.index_dir / UPLOADS / "scan.txt").exists()


def test_strict_upload_stops_at_the_bad_file(own_bot, tmp_path):
    good, bad = tmp_path / "library.txt", tmp_path / "scan.txt"
    good.write_text(LIBRARY, encoding="utf-8")
    bad.write_bytes(b"\x00\x01\x02")
    version = os.readlink(own_bot.index_dir / "current")
    with pytest.raises(CorpusError, match=r"scan\.txt"):
        own_bot.add_files([good, bad], strict=True)
    assert not (own_bot.index_dir / UPLOADS / "library.txt").exists()
    assert os.readlink(own_bot.index_dir / "current") == version


def test_an_upload_over_the_size_limit_is_refused(seeds_bot, seeds_index_copy, config, tmp_path):
    small = config.replace(upload={"max_file_bytes": 100})
    bot = ChatBot.from_dir(seeds_bot.corpus, config=small, index_dir=seeds_index_copy)
    path = tmp_path / "library.txt"
    path.write_text(LIBRARY, encoding="utf-8")
    bad_upload_leaves_index_unchanged(bot, path, r"library\.txt: [\d,]+ bytes is over the upload limit of 100 bytes")


def test_a_second_upload_with_the_same_name_never_replaces_the_first(own_bot, tmp_path):
    first = tmp_path / "a" / "library.txt"
    first.parent.mkdir()
    first.write_text(LIBRARY, encoding="utf-8")
    own_bot.add_files([first])
    other = tmp_path / "b" / "library.txt"
    other.parent.mkdir()
    other.write_text("خبر آخر\nنص مختلف تماما.", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"library\.txt: already uploaded; another file has this name"):
        own_bot.add_files([other])
    with pytest.raises(CorpusError, match=r"library\.txt: already uploaded \(the same file\)"):
        own_bot.add_files([first])
    assert own_bot.index.article(f"{UPLOADS}/library.txt").text == LIBRARY


def test_an_uploaded_article_can_be_removed_and_the_rest_is_kept(own_bot, tmp_path):
    path = tmp_path / "library.txt"
    path.write_text(LIBRARY, encoding="utf-8")
    own_bot.add_files([path])
    assert own_bot.uploads == [f"{UPLOADS}/library.txt"]
    chunks = len(own_bot.index)
    report = own_bot.remove(f"{UPLOADS}/library.txt")
    assert (report.added, report.removed, report.unchanged) == (0, 1, 5)
    assert own_bot.uploads == [] and f"{UPLOADS}/library.txt" not in own_bot.index
    assert len(own_bot.index) < chunks
    restarted = ChatBot.from_dir(own_bot.corpus, config=own_bot.config, index_dir=own_bot.index_dir)
    assert restarted.last_update.unchanged == 5 and restarted.uploads == []
    own_bot.add_files([path])  # the name is free again
    assert own_bot.uploads == [f"{UPLOADS}/library.txt"]


def test_removing_a_record_removes_its_whole_upload(own_bot, tmp_path):
    path = tmp_path / "wire.jsonl"
    path.write_text('{"text": "خبر أول عن المكتبة."}\n{"text": "خبر ثان عن المكتبة."}\n', encoding="utf-8")
    own_bot.add_files([path])
    assert own_bot.remove(f"{UPLOADS}/wire.jsonl#2").removed == 2


@pytest.mark.parametrize("article_id, message", [
    ("002_2e4104477adbd184.txt", "belongs to the corpus folder"),
    ("uploads/nothing.txt", "is not an uploaded article; uploaded: none"),
    ("uploads/../002_2e4104477adbd184.txt", "is not an uploaded article"),
    (None, "is not an uploaded article"),
])
def test_removing_what_is_not_an_upload_names_it_and_changes_nothing(own_bot, article_id, message):
    version = os.readlink(own_bot.index_dir / "current")
    with pytest.raises(CorpusError, match=message):
        own_bot.remove(article_id)
    assert os.readlink(own_bot.index_dir / "current") == version


def test_a_folder_with_bad_files_is_indexed_without_them(config, embedder, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "library.txt").write_text(LIBRARY, encoding="utf-8")
    (corpus / "scan.txt").write_bytes(b"\x89PNG\x00")
    (corpus / "old.txt").write_bytes(LIBRARY.replace("4321", "1234").encode("utf-16"))
    bot = ChatBot.from_dir(corpus, config=config, index_dir=tmp_path / "index")
    assert sorted(a.id for a in bot.articles) == ["library.txt", "old.txt"]
    assert bot.last_update.skipped == (("scan.txt", "looks like a binary file, not text"),)
    assert bot.index.article("old.txt").encoding == "utf-16-le"
    with pytest.raises(CorpusError, match=r"scan\.txt: looks like a binary file"):
        ChatBot.from_dir(corpus, config=config, index_dir=tmp_path / "index", strict=True)
    assert len(ChatBot.from_dir(corpus, config=config, index_dir=tmp_path / "index").articles) == 2  # kept


def test_no_files_is_a_corpus_error(own_bot):
    with pytest.raises(CorpusError, match="no files given"):
        own_bot.add_files([])


def test_a_hidden_upload_does_not_break_the_index(own_bot, tmp_path, config):
    path = tmp_path / ".notes.txt"
    path.write_text(LIBRARY, encoding="utf-8")
    try:
        own_bot.add_files([path])
    except CorpusError:
        pass  # refusing it is fine
    ChatBot.from_dir(own_bot.corpus, config=config, index_dir=own_bot.index_dir)  # must still start


# --- the package-level shortcut ------------------------------------------------------------

def test_rag_ask_is_the_one_call_api():
    assert rag.ask is rag.chatbot.ask
    assert list(inspect.signature(rag.ask).parameters) == ["question", "history"]
    assert inspect.signature(rag.ask).return_annotation in (Answer, "Answer")
