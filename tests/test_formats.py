"""rag/formats.py and PDF/DOCX articles: real PDFs printed by headless Chromium, real DOCX from python-docx.

Chromium's PDFs hold Arabic as presentation-form glyphs drawn in visual order; the article text
Sanad keeps must be the logical text with standard letters, so most checks compare the text read
back from a PDF with the text that was printed into it.
"""
from __future__ import annotations

import html
import random
import re
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import docx
import pytest
from docx.shared import Pt

from rag.chatbot import ChatBot
from rag.errors import CorpusError
from rag.formats import joining_errors, logical_text, pdf_text, reading_order, standard_letters, visual_to_logical
from rag.ingest import SUFFIXES, read_corpus, read_file

PRINT_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pdf-header-footer"]
# One line each: numbers, percent, decimals, dates, times, signs, Latin words and names, brackets
# around Arabic and Latin, quotes, Arabic-Indic digits, harakat; and Arabic inside an English line.
CASES = [
    "ارتفعت الأسعار بنسبة 50% خلال العام",
    "بلغت الخسائر 2.5 مليون دولار في 2024/11/22",
    "بدأ الاجتماع الساعة 10:30 صباحا",
    "وصلت الحرارة إلى -5 درجات ليلا",
    "قالت منظمة UNESCO إن المشروع ناجح",
    "أعلنت شركة Apple عن هاتف iPhone 15 الجديد",
    "صرح مسؤول في وكالة (NIS) الكورية",
    "قال «لن نتراجع» في كلمته أمس",
    "قال “عدد ملحوظ” من الجنود",
    "الفترة بين 10 و 20 عاما (تقريبا)",
    "سعر الدولار $5 فقط [حسب المصدر]",
    "العدد ٣٥٠ جنديا في ١٢ قرية",
    "قرأت تقرير New York Times عن الحرب",
    "الهاتف رقم +971 4 123 4567 للتواصل",
    "وذكرت صحيفة وول ستريت جورنال أن مسؤولاً كبيرًا يُعتقد أنه قُتل.",
]
ENGLISH_CASE = "The ministry said أكثر من 11 ألف جندي were in Kursk."
LIBRARY = ["مكتبة الزيتون في طرابلس",
           ("افتتحت بلدية طرابلس مكتبة الزيتون العامة التي تضم 4321 مخطوطة نادرة. "
            "وقال رئيس البلدية إن المكتبة ستفتح أبوابها يوميا للباحثين.")]
LIBRARY_QUESTION = "كم مخطوطة تضم مكتبة الزيتون في طرابلس؟"
PRESENTATION_FORMS = ("\ufb50", "\ufeff")


def page(paragraphs: list[str], title: str = "مقال", english: tuple[str, ...] = ()) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    body += "".join(f'<p dir="ltr">{html.escape(p)}</p>' for p in english)
    return (f'<!doctype html><html lang="ar" dir="rtl"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title></head><body>{body}</body></html>")


def print_pdf(chromium: Path, html_text: str, workdir: Path, out: Path) -> Path:
    source = workdir / f"{out.stem}.html"
    source.write_text(html_text, encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([str(chromium), *PRINT_ARGS, f"--user-data-dir={profile}", f"--print-to-pdf={out}",
                        source.as_uri()], check=True, capture_output=True, timeout=120)
    assert out.stat().st_size > 0
    return out


def scanned_pdf(out: Path) -> Path:
    """What a scanner makes: a page that is one raster image (dark bars for lines of print), no text."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    for row in range(12):
        draw.rectangle((120 + 40 * (row % 3), 150 + 60 * row, 1120, 180 + 60 * row), fill=30)
    image.save(out, "PDF", resolution=150)
    return out


def scrambled_page(words: list[str]) -> str:
    """Each letter in its joined shape (zero-width joiners), placed right to left, drawn in random order."""
    nonjoining = set("اأإآدذرزوؤةء")
    letters, x = [], 0
    for word in words:
        for i, char in enumerate(word):
            before = "\u200d" if i and word[i - 1] not in nonjoining else ""
            after = "\u200d" if i + 1 < len(word) and char not in nonjoining else ""
            letters.append((x, before + char + after))
            x += 14
        x += 10
    spans = "".join(f'<span style="position:absolute;top:40px;right:{20 + x}px">{text}</span>'
                    for x, text in random.Random(7).sample(letters, len(letters)))
    return f'<!doctype html><html lang="ar" dir="rtl"><head><meta charset="utf-8"></head><body>{spans}</body></html>'


@pytest.fixture(scope="session")
def pdfs(chromium, seeds_articles, tmp_path_factory) -> dict[str, Path]:
    """Real PDFs printed by Chromium: the cases, all seed articles, an article, a scan, broken ones."""
    out, work = tmp_path_factory.mktemp("pdfs"), tmp_path_factory.mktemp("pages")
    seeds_html = "".join(
        f'<section style="break-after:page"><h1>{html.escape(a.title)}</h1>'
        + "".join(f"<p>{html.escape(line)}</p>" for line in a.text.splitlines()[1:] if line.strip()) + "</section>"
        for a in seeds_articles)
    made = {
        "cases": print_pdf(chromium, page(CASES, english=(ENGLISH_CASE,)), work, out / "cases.pdf"),
        "seeds": print_pdf(chromium, page([]).replace("<body>", "<body>" + seeds_html), work, out / "seeds.pdf"),
        "library": print_pdf(chromium, page(LIBRARY, title=LIBRARY[0]), work, out / "library.pdf"),
        "scrambled": print_pdf(chromium, scrambled_page(LIBRARY[1].split()[:12]), work, out / "scrambled.pdf"),
    }
    made["scan"] = scanned_pdf(out / "scan.pdf")
    # fonts with neither a ToUnicode map nor an embedded font program (whose own cmap pdfminer would
    # fall back on): glyph ids with no characters. Same length, so the xref offsets stay valid.
    garbled = out / "garbled.pdf"
    garbled.write_bytes(made["library"].read_bytes().replace(b"/ToUnicode", b"/ToUnicodX")
                        .replace(b"/FontFile2", b"/FontFileX"))
    made["garbled"] = garbled
    return made


def one_file(path: Path, folder: Path) -> Path:
    """``path`` alone in a new folder (a corpus of one file)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    target.write_bytes(path.read_bytes())
    return folder


# --- PDF text -----------------------------------------------------------------------------------


def test_chromium_pdfs_hold_presentation_forms_in_visual_order(pdfs):
    """The problem `pdf_text` solves: the glyphs as drawn are neither standard letters nor reading order."""
    from pdfminer.high_level import extract_text

    drawn = extract_text(pdfs["cases"])
    assert any(PRESENTATION_FORMS[0] <= char <= PRESENTATION_FORMS[1] for char in drawn)
    assert CASES[4] not in unicodedata.normalize("NFKC", drawn)
    assert CASES[4][::-1] not in unicodedata.normalize("NFKC", drawn)  # not plain reversed text either (UNESCO)


def test_pdf_text_is_the_logical_text_with_standard_letters(pdfs):
    text = pdf_text(pdfs["cases"])
    assert text.split("\n") == CASES + [ENGLISH_CASE]
    assert not any(PRESENTATION_FORMS[0] <= char <= PRESENTATION_FORMS[1] for char in text)


def test_seed_articles_printed_to_pdf_read_back_as_their_text(pdfs, seeds_articles):
    expected = [" ".join(line.split()) for a in seeds_articles for line in a.text.splitlines() if line.strip()]
    # a harakah on the lam of a lam-alef is drawn on the ligature's single glyph: the PDF puts it after the alef
    expected = [line.replace("لًا", "لاً") for line in expected]
    assert pdf_text(pdfs["seeds"]).split("\n") == expected


def test_a_line_drawn_in_reading_order_is_kept(pdfs):
    """A producer that writes Arabic glyphs in logical order: the drawn order fits the glyph shapes."""
    from pdfminer.high_level import extract_text

    drawn = next(line for line in extract_text(pdfs["library"]).splitlines() if line.strip())
    logical_glyphs = visual_to_logical(drawn)
    assert reading_order(logical_glyphs)[0] == logical_glyphs
    assert standard_letters(logical_glyphs) in "\n".join(LIBRARY)
    errors, checks = joining_errors(logical_glyphs)
    assert checks > 10 and errors == 0
    assert joining_errors(drawn)[0] > checks / 2


def test_visual_to_logical_leaves_text_without_right_to_left_letters_alone():
    assert visual_to_logical("Kursk (Russia) 2024: 11,000 troops") == "Kursk (Russia) 2024: 11,000 troops"
    assert visual_to_logical("") == ""


def test_logical_text_repairs_presentation_forms_and_keeps_other_text(pdfs):
    from pdfminer.high_level import extract_text

    drawn = [line for line in extract_text(pdfs["cases"]).splitlines() if line.strip()]
    assert logical_text("\n".join(drawn[:3])) == "\n".join(CASES[:3])
    assert logical_text(CASES[0]) is CASES[0]


def test_scanned_pdf_is_refused_naming_the_file(pdfs, tmp_path):
    with pytest.raises(CorpusError, match=r"scan\.pdf: the PDF has no text layer"):
        read_corpus(one_file(pdfs["scan"], tmp_path / "corpus"))


def test_pdf_whose_glyphs_have_no_characters_is_refused(pdfs, tmp_path):
    with pytest.raises(CorpusError, match=r"garbled\.pdf: its text cannot be recovered: \d+% of its glyphs"):
        read_corpus(one_file(pdfs["garbled"], tmp_path / "corpus"))


def test_pdf_whose_letters_fit_no_reading_order_is_refused(pdfs, tmp_path):
    with pytest.raises(CorpusError, match=r"scrambled\.pdf: its Arabic letters come out in an order that cannot"):
        read_corpus(one_file(pdfs["scrambled"], tmp_path / "corpus"))


def test_file_that_is_not_a_pdf_is_refused(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_text("not a PDF at all", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"report\.pdf: not a readable PDF"):
        list(read_file(path, tmp_path))


# --- DOCX ------------------------------------------------------------------------------------------


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading(LIBRARY[0], level=1)
    paragraph = document.add_paragraph()
    paragraph.add_run("افتتحت بلدية طرابلس ").bold = True
    paragraph.add_run(LIBRARY[1][len("افتتحت بلدية طرابلس "):]).font.size = Pt(14)
    document.add_paragraph("")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "المخطوطات", "4321"
    table.cell(1, 0).merge(table.cell(1, 1)).text = "مجموع نادر"
    document.add_paragraph("وقالت البلدية إن الدخول مجاني.")
    document.save(str(path))
    return path


def test_docx_keeps_paragraphs_and_table_rows_in_order(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_docx(corpus / "library.docx")
    [article] = read_corpus(corpus)
    assert article.text == "\n".join([*LIBRARY, "المخطوطات\t4321", "مجموع نادر", "وقالت البلدية إن الدخول مجاني."])
    assert (article.id, article.source, article.title) == ("library.docx", "library.docx", LIBRARY[0])


def test_file_that_is_not_a_docx_is_refused(tmp_path):
    path = tmp_path / "notes.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorpusError, match=r"notes\.docx: not a readable Word \(\.docx\) file"):
        list(read_file(path, tmp_path))


# --- in a corpus and a chatbot -----------------------------------------------------------------


def test_pdf_and_docx_are_supported_suffixes():
    assert {".pdf", ".docx"} <= set(SUFFIXES)


def test_folder_of_pdf_docx_and_text_articles(pdfs, tmp_path):
    corpus = one_file(pdfs["library"], tmp_path / "corpus")
    make_docx(corpus / "library.docx")
    (corpus / "note.txt").write_text("\n".join(LIBRARY), encoding="utf-8")
    articles = {a.id: a for a in read_corpus(corpus)}
    assert set(articles) == {"library.pdf", "library.docx", "note.txt"}
    assert articles["library.pdf"].text == articles["note.txt"].text == "\n".join(LIBRARY)
    assert articles["library.pdf"].title == LIBRARY[0]


def test_added_pdf_is_answered_with_exact_quotes(pdfs, seeds_bot, seeds_index_copy, config):
    bot = ChatBot.from_dir(seeds_bot.corpus, config=config, index_dir=seeds_index_copy)
    report = bot.add_files([pdfs["library"]])
    assert report.added == 1
    article = bot.index.article("uploads/library.pdf")
    assert article.text == "\n".join(LIBRARY)
    assert bot.retrieve(LIBRARY_QUESTION, top_k=3)[0].chunk.article_id == article.id
    answer = bot.ask(LIBRARY_QUESTION)
    assert answer.citations
    for citation in answer.citations:
        assert bot.index.article(citation.article_id).text[citation.start:citation.end] == citation.quote


def test_adding_a_scanned_pdf_changes_nothing(pdfs, seeds_bot, seeds_index_copy, config):
    bot = ChatBot.from_dir(seeds_bot.corpus, config=config, index_dir=seeds_index_copy)
    before = sorted(a.id for a in bot.articles)
    with pytest.raises(CorpusError, match=r"scan\.pdf: the PDF has no text layer"):
        bot.add_files([pdfs["scan"]])
    assert sorted(a.id for a in bot.articles) == before


def test_simple_directory_reader_with_sanad_reader_skips_an_unreadable_pdf_saying_why(pdfs, tmp_path, capsys):
    from llama_index.core import SimpleDirectoryReader

    from rag.llama_index import SanadReader

    corpus = one_file(pdfs["scan"], one_file(pdfs["library"], tmp_path / "corpus"))
    documents = SimpleDirectoryReader(str(corpus), file_extractor=SanadReader.file_extractor()).load_data()
    assert [d.text for d in documents] == ["\n".join(LIBRARY)]
    assert re.search(r"scan\.pdf.*the PDF has no text layer", capsys.readouterr().out)
