"""rag/ingest.py: folders of .txt/.md/.html/.jsonl/.json articles, exact texts, clear errors."""
from __future__ import annotations

import codecs
import json
import pickle
from pathlib import Path

import pytest

from rag.errors import CorpusError, SanadError
from rag.ingest import read_corpus, read_file, scan_corpus


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def only_article(folder: Path):
    articles = read_corpus(folder)
    assert len(articles) == 1, articles
    return articles[0]


# --- text and markdown -------------------------------------------------------------

def test_txt_title_is_the_first_non_empty_line_and_text_is_exact(tmp_path):
    text = "\n  \n  عنوان الخبر  \nالفقرة الأولى.\nالفقرة الثانية.\n"
    write(tmp_path / "a.txt", text)
    article = only_article(tmp_path)
    assert article.title == "عنوان الخبر"
    assert article.text == text
    assert (article.id, article.source) == ("a.txt", "a.txt")


def test_txt_keeps_crlf_line_ends(tmp_path):
    text = "العنوان\r\nالسطر الأول.\r\nالسطر الثاني.\r\n"
    write(tmp_path / "a.txt", text)
    article = only_article(tmp_path)
    assert article.text == text
    assert article.title == "العنوان"


def test_utf8_byte_order_mark_is_not_part_of_the_text(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbf" + "عنوان\nنص.".encode())
    article = only_article(tmp_path)
    assert article.text == "عنوان\nنص."
    assert article.title == "عنوان"


def test_md_title_loses_leading_hashes(tmp_path):
    text = "\n## عنوان المقال\nنص المقال.\n"
    write(tmp_path / "a.md", text)
    article = only_article(tmp_path)
    assert article.title == "عنوان المقال"
    assert article.text == text


def test_seeds_are_read_exactly(seeds_dir, seeds_articles):
    assert [a.id for a in seeds_articles] == sorted(p.name for p in seeds_dir.glob("*.txt"))
    for article in seeds_articles:
        assert article.text == (seeds_dir / article.id).read_bytes().decode("utf-8")
        assert article.title and article.title == article.text.strip().splitlines()[0].strip()


# --- html ---------------------------------------------------------------------------

HTML = """<!doctype html><html><head><title> عنوان الصفحة </title>
<style>p { color: red }</style><script>var secret = "سر مخفي";</script></head>
<body><h1>العنوان الكبير</h1><p>الفقرة   الأولى &amp; المزيد.</p>
<script>alert("نص برمجي")</script><noscript>فعّل جافاسكربت</noscript>
<div>سطر آخر<br>بعد الفاصل</div></body></html>"""


def test_html_keeps_visible_text_only(tmp_path):
    write(tmp_path / "page.html", HTML)
    article = only_article(tmp_path)
    assert article.title == "عنوان الصفحة"
    assert article.text == "العنوان الكبير\nالفقرة الأولى & المزيد.\nسطر آخر\nبعد الفاصل"
    for hidden in ("سر مخفي", "نص برمجي", "color", "جافاسكربت", "عنوان الصفحة"):
        assert hidden not in article.text


def test_html_without_title_uses_its_first_line(tmp_path):
    write(tmp_path / "page.htm", "<p>أول سطر</p><p>ثاني سطر.</p>")
    assert only_article(tmp_path).title == "أول سطر"


# --- records -------------------------------------------------------------------------

def test_jsonl_records_with_fields_and_ids(tmp_path):
    records = [{"title": "العنوان 1", "text": "نص أول.", "date": "2024-11-02", "url": "https://example.org/1",
                "source": "بي بي سي"},
               {"text": "السطر الأول\nنص ثان."}]
    write(tmp_path / "news" / "feed.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n")
    first, second = read_corpus(tmp_path)
    assert (first.id, first.source) == ("news/feed.jsonl#1", "feed.jsonl#1")
    assert (first.title, first.text, first.date, first.url, first.outlet) == (
        "العنوان 1", "نص أول.", "2024-11-02", "https://example.org/1", "بي بي سي")
    assert (second.id, second.title, second.text) == ("news/feed.jsonl#2", "السطر الأول", "السطر الأول\nنص ثان.")
    assert second.date is second.url is second.outlet is None


def test_json_list_skips_empty_texts_but_keeps_numbering(tmp_path):
    write(tmp_path / "all.json", json.dumps([{"text": "أ."}, {"text": "   "}, {"text": "ب.", "date": 2024}]))
    articles = read_corpus(tmp_path)
    assert [(a.id, a.text, a.date) for a in articles] == [("all.json#1", "أ.", None), ("all.json#3", "ب.", "2024")]


def test_json_single_object(tmp_path):
    write(tmp_path / "one.json", json.dumps({"title": "ت", "text": "نص."}))
    assert [(a.id, a.title) for a in read_corpus(tmp_path)] == [("one.json#1", "ت")]


@pytest.mark.parametrize("record", [{"title": "بلا نص"}, {"text": 5}, ["text"]])
def test_record_without_text_names_the_file(tmp_path, record):
    write(tmp_path / "bad.jsonl", json.dumps({"text": "جيد."}) + "\n" + json.dumps(record, ensure_ascii=False))
    with pytest.raises(CorpusError, match=r"bad\.jsonl: record 2 needs a \"text\" string"):
        read_corpus(tmp_path)


def test_invalid_json_names_the_file_and_line(tmp_path):
    write(tmp_path / "broken.jsonl", '{"text": "أ"}\n{"text": \n')
    with pytest.raises(CorpusError, match=r"broken\.jsonl: invalid JSON at line 1"):
        read_corpus(tmp_path)


# --- folders -------------------------------------------------------------------------

def test_recursive_sorted_and_hidden_files_skipped(tmp_path):
    write(tmp_path / "b.txt", "ب.")
    write(tmp_path / "a" / "z.md", "ز.")
    write(tmp_path / "a" / "deeper" / "y.txt", "ي.")
    write(tmp_path / ".hidden.txt", "مخفي.")
    write(tmp_path / ".git" / "notes.txt", "مخفي.")
    write(tmp_path / "a" / ".draft.txt", "مخفي.")
    write(tmp_path / "picture.png", "ليس مقالا")
    articles = read_corpus(tmp_path)
    assert [a.id for a in articles] == ["a/deeper/y.txt", "a/z.md", "b.txt"]
    assert [a.source for a in articles] == ["y.txt", "z.md", "b.txt"]


def test_empty_files_are_skipped(tmp_path):
    write(tmp_path / "empty.txt", "  \n\t\n")
    write(tmp_path / "full.txt", "نص.")
    assert [a.id for a in read_corpus(tmp_path)] == ["full.txt"]


def test_a_single_file_is_a_corpus(tmp_path):
    path = write(tmp_path / "one.txt", "عنوان\nنص.")
    assert [(a.id, a.text) for a in read_corpus(path)] == [("one.txt", "عنوان\nنص.")]


def test_missing_folder(tmp_path):
    with pytest.raises(CorpusError, match="corpus folder not found: .*nope"):
        read_corpus(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(CorpusError, match=r"no articles in .*expected files ending in \.txt"):
        read_corpus(tmp_path)


def test_folder_of_unsupported_files_only(tmp_path):
    write(tmp_path / "notes.odt", "نص")
    with pytest.raises(CorpusError, match="no articles"):
        read_corpus(tmp_path)


def test_folder_of_empty_files_only(tmp_path):
    write(tmp_path / "a.txt", "")
    write(tmp_path / "b.md", "\n \n")
    with pytest.raises(CorpusError, match="every file .* is empty"):
        read_corpus(tmp_path)


def test_binary_file_names_the_file(tmp_path):
    write(tmp_path / "good.txt", "نص.")
    (tmp_path / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(CorpusError, match=r"photo\.txt: looks like a binary file") as error:
        read_corpus(tmp_path)
    assert isinstance(error.value, SanadError)
    assert (error.value.file, error.value.reason) == ("photo.txt", "looks like a binary file, not text")


def test_a_corpus_error_keeps_its_file_and_reason_when_pickled():
    """Ray sends a worker's errors back pickled; the fields come with the message."""
    error = pickle.loads(pickle.dumps(CorpusError(file="a.txt", reason="no text")))
    assert (str(error), error.file, error.reason) == ("a.txt: no text", "a.txt", "no text")
    folder = pickle.loads(pickle.dumps(CorpusError("corpus folder not found: x")))
    assert (str(folder), folder.file, folder.reason) == ("corpus folder not found: x", None, "corpus folder not found: x")


def test_a_file_in_no_known_encoding_names_the_file(tmp_path):
    write(tmp_path / "good.txt", "نص.")
    (tmp_path / "noise.txt").write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(CorpusError, match=r"noise\.txt: not text in UTF-8 \(bad byte 0\), UTF-16, Windows-1256"):
        read_corpus(tmp_path)


# --- encodings ------------------------------------------------------------------------

NEWS = "خبر قديم\nافتتحت بلدية طرابلس مكتبة جديدة في وسط المدينة، وقال رئيس البلدية إن المكتبة تضم آلاف الكتب."


@pytest.mark.parametrize("data, encoding", [
    (NEWS.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF8 + NEWS.encode("utf-8"), "utf-8-sig"),
    (codecs.BOM_UTF16_LE + NEWS.encode("utf-16-le"), "utf-16-le"),
    (codecs.BOM_UTF16_BE + NEWS.encode("utf-16-be"), "utf-16-be"),
    (codecs.BOM_UTF32_LE + NEWS.encode("utf-32-le"), "utf-32-le"),
    (NEWS.encode("cp1256"), "cp1256"),
    (NEWS.encode("iso8859_6"), "iso8859_6"),
])
def test_each_encoding_is_detected_recorded_and_decoded_exactly(tmp_path, data, encoding):
    (tmp_path / "old.txt").write_bytes(data)
    (article,) = read_corpus(tmp_path)
    assert (article.text, article.title, article.encoding) == (NEWS, "خبر قديم", encoding)
    assert article.text[article.text.index("مكتبة"):][:5] == "مكتبة"  # offsets index the decoded text


def test_a_short_windows_1256_line_is_read(tmp_path):
    (tmp_path / "windows.txt").write_bytes("كوريا الشمالية".encode("cp1256"))
    (article,) = read_corpus(tmp_path)
    assert (article.text, article.encoding) == ("كوريا الشمالية", "cp1256")


def test_records_carry_their_file_encoding(tmp_path):
    (tmp_path / "news.jsonl").write_bytes(codecs.BOM_UTF16_LE + '{"text": "نص أول"}\n{"text": "نص ثان"}\n'.encode("utf-16-le"))
    assert [(a.text, a.encoding) for a in read_corpus(tmp_path)] == [("نص أول", "utf-16-le"), ("نص ثان", "utf-16-le")]


def test_a_broken_utf16_file_names_the_file(tmp_path):
    (tmp_path / "half.txt").write_bytes(codecs.BOM_UTF16_LE + "نص".encode("utf-16-le") + b"\x00")
    with pytest.raises(CorpusError, match=r"half\.txt: starts with a UTF-16-LE byte order mark but is not valid"):
        read_corpus(tmp_path)


# --- folders with bad files -------------------------------------------------------------

def test_a_messy_folder_indexes_the_readable_and_lists_the_rest(tmp_path):
    write(tmp_path / "a.txt", "خبر جيد\nنص صالح.")
    (tmp_path / "b.txt").write_bytes(codecs.BOM_UTF16_LE + "خبر\nنص بترميز UTF-16.".encode("utf-16-le"))
    (tmp_path / "c.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    write(tmp_path / "d.jsonl", '{"text": "x"\n')
    write(tmp_path / "e.md", "  \n")
    write(tmp_path / "f.pdf", "%PDF")
    write(tmp_path / "h.pptx", "slides")
    write(tmp_path / "sub" / "g.txt", "خبر في مجلد فرعي.")
    corpus = scan_corpus(tmp_path)
    assert [a.id for a in corpus.articles] == ["a.txt", "b.txt", "sub/g.txt"]
    assert corpus.skipped == (("c.txt", "looks like a binary file, not text"),
                              ("d.jsonl", "invalid JSON at line 1: Expecting ',' delimiter"),
                              ("e.md", "no text"), ("f.pdf", "not a readable PDF (PDFSyntaxError: No /Root object! - "
                                                     "Is this really a PDF?)"),
                              ("h.pptx", "unsupported file type .pptx"))
    with pytest.raises(CorpusError, match=r"c\.txt: looks like a binary file"):
        scan_corpus(tmp_path, strict=True)
    with pytest.raises(CorpusError, match=r"c\.txt: looks like a binary file"):
        read_corpus(tmp_path)  # all or nothing


def test_a_folder_with_only_bad_files_says_what_each_one_is(tmp_path):
    (tmp_path / "c.txt").write_bytes(b"\x00\x01")
    write(tmp_path / "d.json", "[1, 2]")
    with pytest.raises(CorpusError, match=r"no readable articles in .*c\.txt: looks like a binary .*d\.json: record 1"):
        scan_corpus(tmp_path)


def test_unsupported_file_given_directly(tmp_path):
    path = write(tmp_path / "slides.pptx", "نص")
    with pytest.raises(CorpusError, match=r"slides\.pptx: unsupported file type \.pptx"):
        list(read_file(path, tmp_path))
