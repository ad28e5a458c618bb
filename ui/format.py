"""Pure functions that turn `Answer`s, articles and the corpus into HTML for the chat page.

No Gradio here and no I/O: every function takes plain values and returns a string, so the
formatting is tested on its own. Every piece of text that comes from an article, a file name,
a question or an answer goes through `html.escape` before it is placed in markup; the only
markup is the one written in this module.

A citation marker ``[n]`` in an answer becomes ``<button class="sanad-cite" data-cite="t:n">``
where ``t`` is the turn (0-based) and ``n`` the citation number. The page's script sends that
key to the server, which renders the cited article with `format_source`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from typing import Sequence

from rag.types import Answer, Article, Citation, Span

MARKER = re.compile(r"\[(\d{1,3})\]")
KEY = re.compile(r"^(\d{1,6}):(\d{1,4})$")
CONTEXT_CHARS = 1200  # article text shown on each side of a quote in the source panel
TITLE_CHARS = 110  # longer titles are cut in lists (the full title stays in the tooltip)
QUOTE_CHARS = 260  # longer quotes are cut in the sources list (the panel shows them whole)
CORPUS_ROWS = 300  # articles listed in the corpus panel; the counts cover all of them
SKIPPED_ROWS = 50  # skipped files listed under the upload box; the count covers all of them

LABELS = {
    "ar": {
        "sources": "المصادر",
        "related": "مقاطع ذات صلة",
        "abstained": "لا تجيب المقالات عن هذا السؤال",
        "conflict": "الأرقام متباينة بين المصادر؛ راجع كل مرجع قبل النشر.",
        "confidence": "درجة الثقة",
        "score": "الدرجة",
        "source": "المصدر",
        "related_one": "مقطع ذو صلة",
        "llm": "مولَّد بنموذج لغوي",
    },
    "en": {
        "sources": "Sources",
        "related": "Related passages",
        "abstained": "The articles do not answer this",
        "conflict": "The sources give different figures; check each one before you publish.",
        "confidence": "confidence",
        "score": "score",
        "source": "Source",
        "related_one": "Related passage",
        "llm": "written by a language model",
    },
}


@dataclass(frozen=True)
class Turn:
    """One question of the conversation and what came back: an `Answer` or an error message."""

    question: str
    answer: Answer | None = None
    error: str | None = None


# --- small pieces -------------------------------------------------------------------------

def citation_key(turn: int, n: int) -> str:
    """The key a marker carries to the server: ``"turn:n"``."""
    return f"{turn}:{n}"


def parse_citation_key(key) -> tuple[int, int] | None:
    """``(turn, n)`` from a key sent by the page, or None when it is not one (it is user input)."""
    if not isinstance(key, str):
        return None
    match = KEY.match(key.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def direction(language: str | None) -> str:
    return "ltr" if language == "en" else "rtl"


def text_direction(text: str, default: str = "rtl") -> str:
    """The direction of ``text``'s first strong character (as ``dir="auto"`` decides), for layout."""
    for char in text:
        if "\u0590" <= char <= "\u08ff" or "\ufb1d" <= char <= "\ufefc":
            return "rtl"
        if char.isalpha():
            return "ltr"
    return default


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut + "…"


def _labels(answer: Answer | None) -> dict[str, str]:
    return LABELS["en" if answer is not None and answer.language == "en" else "ar"]


def _marker(turn: int | None, citation: Citation | None, n: int, label: str | None = None) -> str:
    """A clickable ``[n]`` (a button) when the citation is known and the answer is final, else plain text."""
    text = escape(label if label is not None else f"[{n}]")
    if turn is None or citation is None:
        return f'<span class="sanad-cite is-pending" dir="ltr">{text}</span>'
    title = escape(f"{citation.source} — {shorten(citation.title, 80)}", quote=True)
    return (f'<button type="button" class="sanad-cite" dir="ltr" data-cite="{citation_key(turn, n)}" '
            f'title="{title}" aria-label="{escape(f"[{n}] {citation.source}", quote=True)}">{text}</button>')


def format_text(text: str, citations: Sequence[Citation] = (), turn: int | None = None,
                spans: Sequence[Span] = ()) -> str:
    """Escaped answer text with each ``[n]`` made a marker (clickable when ``turn`` is given), and the
    short answer's span marked inside the quote that holds it.

    Each line reads in its own direction (``dir="auto"``), so an Arabic quote inside an English
    answer keeps its words and «guillemets» in order, and an English line in Arabic text too.
    """
    by_number = {c.n: c for c in citations}
    lines = []
    for line in text.split("\n"):
        parts, last = [], 0
        for match in MARKER.finditer(line):
            parts.append(_marked(line[last:match.start()], by_number.get(int(match.group(1))), spans))
            n = int(match.group(1))
            parts.append(_marker(turn, by_number.get(n), n) if n in by_number or turn is None else escape(match.group(0)))
            last = match.end()
        parts.append(escape(line[last:]))
        body = "".join(parts)
        lines.append(f'<div class="sanad-line" dir="auto">{body}</div>' if line.strip() else '<div class="sanad-line is-blank"></div>')
    return "".join(lines)


def _marked(piece: str, citation: Citation | None, spans: Sequence[Span]) -> str:
    """``piece`` escaped; when it is the «quote» of ``citation``, the spans inside it in <mark>."""
    if citation is None or f"«{citation.quote}»" not in piece:
        return escape(piece)
    offset = piece.index(f"«{citation.quote}»") + 1 - citation.start  # article offset -> position in piece
    inside = sorted((s.start + offset, s.end + offset) for s in spans
                    if s.article_id == citation.article_id and citation.start <= s.start and s.end <= citation.end)
    html, cursor = [], 0
    for start, end in inside:
        if start >= cursor:
            html += [escape(piece[cursor:start]), f'<mark class="sanad-answer">{escape(piece[start:end])}</mark>']
            cursor = end
    return "".join(html) + escape(piece[cursor:])


def _meta(citation: Citation, show_scores: bool, labels: dict) -> str:
    items = [f'<span class="sanad-file" dir="ltr">{escape(citation.source)}</span>']
    if citation.date:
        items.append(f'<span class="sanad-date" dir="auto">{escape(citation.date)}</span>')
    if show_scores:
        items.append(f'<span class="sanad-score">{labels["score"]} <bdi dir="ltr">{citation.score:.3f}</bdi></span>')
    return '<span class="sanad-sep" aria-hidden="true"> · </span>'.join(items)


def _quote(citation: Citation, answer_text: str) -> str:
    """The quote under a source entry, unless the answer already shows it word for word."""
    if not citation.quote or (not citation.related and " ".join(citation.quote.split()) in " ".join(answer_text.split())):
        return ""
    return f'<blockquote class="sanad-quote" dir="auto">{escape(shorten(citation.quote, QUOTE_CHARS))}</blockquote>'


def format_sources(answer: Answer, turn: int | None, show_scores: bool = False) -> str:
    """The list under an answer: one entry per citation with its marker, title, file and quote."""
    if not answer.citations:
        return ""
    labels = _labels(answer)
    supporting = [c for c in answer.citations if not c.related]
    related = [c for c in answer.citations if c.related]
    blocks = []
    for heading, citations, css in ((labels["sources"], supporting, "sanad-sources"),
                                    (labels["related"], related, "sanad-sources sanad-related")):
        if not citations:
            continue
        items = "".join(
            f'<li class="sanad-source{" is-related" if c.related else ""}" dir="{text_direction(c.title or c.quote)}" '
            f'data-article="{escape(c.article_id, quote=True)}" data-start="{c.start}" data-end="{c.end}">'
            f'{_marker(turn, c, c.n)}'
            f'<div class="sanad-source-body">'
            f'<div class="sanad-source-title" dir="auto" title="{escape(c.title, quote=True)}">{escape(shorten(c.title, TITLE_CHARS))}</div>'
            f'<div class="sanad-source-meta">{_meta(c, show_scores, labels)}</div>'
            f'{_quote(c, answer.text)}'
            f'</div></li>'
            for c in citations)
        blocks.append(f'<div class="{css}"><div class="sanad-sources-heading">{heading}</div><ol>{items}</ol></div>')
    return "".join(blocks)


def format_answer(answer: Answer, turn: int | None = None, show_scores: bool = False) -> str:
    """One answer as HTML: notices (abstention, conflict), the text with markers, the sources."""
    labels = _labels(answer)
    classes = ["sanad-msg", "sanad-bot"]
    notices = []
    if answer.abstained:
        classes.append("sanad-abstained")
        notices.append(f'<div class="sanad-notice sanad-notice-abstained" role="status">'
                       f'<span class="sanad-icon" aria-hidden="true">⌀</span>{labels["abstained"]}</div>')
    if answer.conflict:
        classes.append("sanad-conflict")
        notices.append(f'<div class="sanad-notice sanad-notice-conflict" role="note">'
                       f'<span class="sanad-icon" aria-hidden="true">⚠</span>{labels["conflict"]}</div>')
    text = format_text(answer.text, answer.citations, turn, answer.spans)
    footer = []
    if answer.mode == "llm":
        footer.append(f'<span class="sanad-tag">{labels["llm"]}</span>')
    if show_scores:
        footer.append(f'<span class="sanad-tag">{labels["confidence"]} <bdi dir="ltr">{answer.confidence:.3f}</bdi></span>')
    footer_html = f'<div class="sanad-footer">{"".join(footer)}</div>' if footer else ""
    lang = "en" if answer.language == "en" else "ar"
    return (f'<div class="{" ".join(classes)}" dir="{direction(answer.language)}" lang="{lang}">'
            f'{"".join(notices)}<div class="sanad-text">{text}</div>'
            f'{format_sources(answer, turn, show_scores)}{footer_html}</div>')


def format_question(question: str) -> str:
    return f'<div class="sanad-msg sanad-user"><div class="sanad-bubble" dir="auto">{escape(question)}</div></div>'


def format_partial(text: str) -> str:
    """An answer still streaming in: plain markers, and a typing indicator while it is empty."""
    if not text:
        return ('<div class="sanad-msg sanad-bot is-streaming" dir="rtl" lang="ar">'
                '<div class="sanad-typing" role="status">أبحث في المقالات<span class="sanad-dots">'
                '<i></i><i></i><i></i></span></div></div>')
    body = format_text(text)
    body = body[:-len("</div>")] + '<span class="sanad-caret"></span></div>'  # the caret ends the last line
    return f'<div class="sanad-msg sanad-bot is-streaming" dir="auto"><div class="sanad-text">{body}</div></div>'


def format_error(message: str) -> str:
    return (f'<div class="sanad-msg sanad-bot sanad-error" dir="auto" role="alert">'
            f'<div class="sanad-notice sanad-notice-error"><span class="sanad-icon" aria-hidden="true">!</span>'
            f'<span dir="auto">{escape(message)}</span></div></div>')


def format_transcript(turns: Sequence[Turn], show_scores: bool = False, pending: str | None = None,
                      partial: str = "") -> str:
    """The whole conversation; ``pending`` is a question whose answer (``partial``) is streaming."""
    if not turns and pending is None:
        return ('<div class="sanad-thread is-empty" dir="rtl"><div class="sanad-welcome">'
                '<div class="sanad-welcome-mark" aria-hidden="true">❝</div>'
                '<p>اسأل عن الأخبار في المقالات، وسأجيبك من نصوصها مع ذكر المصدر لكل معلومة.</p>'
                '<p class="sanad-welcome-hint">انقر رقم المرجع <span class="sanad-cite is-sample" dir="ltr">[1]</span>'
                ' في الإجابة لترى الجملة المقتبسة في مقالها.</p>'
                '<p class="sanad-welcome-en" dir="ltr" lang="en">Ask in Arabic or English; every answer cites its source.</p>'
                '</div></div>')
    parts = []
    for number, turn in enumerate(turns):
        parts.append(f'<div class="sanad-turn" data-turn="{number}">{format_question(turn.question)}')
        if turn.answer is not None:
            parts.append(format_answer(turn.answer, number, show_scores))
        elif turn.error:
            parts.append(format_error(turn.error))
        parts.append("</div>")
    if pending is not None:
        parts.append(f'<div class="sanad-turn is-pending">{format_question(pending)}{format_partial(partial)}</div>')
    return f'<div class="sanad-thread" dir="rtl">{"".join(parts)}</div>'


# --- the source panel ---------------------------------------------------------------------

def _safe_url(url: str | None) -> str | None:
    return url if url and re.match(r"^https?://", url, re.IGNORECASE) else None


def locate(citation: Citation, article: Article | None) -> tuple[int, int] | None:
    """Where the quote is in ``article``: its own offsets, or the first exact match if the text moved."""
    if article is None:
        return None
    if article.text[citation.start:citation.end] == citation.quote:
        return citation.start, citation.end
    start = article.text.find(citation.quote) if citation.quote else -1
    return (start, start + len(citation.quote)) if start >= 0 else None


def _context(text: str, start: int, end: int, chars: int = CONTEXT_CHARS) -> str:
    """The article around [start, end) with the quote in <mark>, cut at paragraph or word boundaries."""
    left = max(0, start - chars)
    if left > 0:  # start at the first paragraph (or word) that begins inside the window
        cut = text.find("\n", left, start)
        cut = cut if cut >= 0 else text.find(" ", left, start)
        left = cut + 1 if cut >= 0 else left
    right = min(len(text), end + chars)
    if right < len(text):  # stop at the last paragraph (or word) that ends inside the window
        cut = text.rfind("\n", end, right)
        cut = cut if cut > end else text.rfind(" ", end, right)
        right = cut if cut > end else right
    before = ("… " if left > 0 else "") + text[left:start].lstrip()
    after = text[end:right].rstrip() + (" …" if right < len(text) else "")
    return f'{escape(before)}<mark id="sanad-mark">{escape(text[start:end])}</mark>{escape(after)}'


def format_source(citation: Citation, article: Article | None, language: str = "ar") -> str:
    """The side panel for one citation: title, date, file, and the quote highlighted in its article."""
    labels = LABELS["en" if language == "en" else "ar"]
    title = article.title if article is not None and article.title else citation.title
    date = (article.date if article is not None else None) or citation.date
    meta = [f'<span class="sanad-file" dir="ltr">{escape(citation.source)}</span>']
    if date:
        meta.append(f'<span class="sanad-date" dir="auto">{escape(date)}</span>')
    if article is not None and article.outlet:
        meta.append(f'<span class="sanad-outlet" dir="auto">{escape(article.outlet)}</span>')
    url = _safe_url(article.url if article is not None else None)
    if url:
        meta.append(f'<a class="sanad-link" href="{escape(url, quote=True)}" target="_blank" '
                    f'rel="noopener noreferrer nofollow" dir="ltr">{escape(shorten(url, 60))}</a>')
    span = locate(citation, article)
    if span is not None:
        body = _context(article.text, *span)
    else:  # the article is gone or changed since the answer: show what was quoted
        body = f'<mark id="sanad-mark">{escape(citation.quote)}</mark>'
    kind = labels["related_one"] if citation.related else labels["source"]
    return (f'<article class="sanad-panel-card" dir="rtl" lang="ar">'
            f'<header class="sanad-panel-head">'
            f'<div class="sanad-panel-kicker"><span class="sanad-cite is-static" dir="ltr">[{citation.n}]</span>'
            f'<span>{kind}</span></div>'
            f'<h3 class="sanad-panel-title" dir="auto">{escape(title)}</h3>'
            f'<div class="sanad-panel-meta">{"<span class=sanad-sep aria-hidden=true> · </span>".join(meta)}</div>'
            f'</header>'
            f'<div class="sanad-article" dir="auto">{body}</div>'
            f'</article>')


def format_source_placeholder() -> str:
    return ('<div class="sanad-panel-empty" dir="rtl" lang="ar">'
            '<div class="sanad-panel-empty-title">نص المصدر</div>'
            '<p>انقر رقم المرجع <span class="sanad-cite is-sample" dir="ltr">[1]</span> في أي إجابة ليظهر هنا '
            'المقال الذي اقتُبست منه، والجملة المقتبسة مظلَّلة في سياقها، مع العنوان والتاريخ واسم الملف.</p>'
            '</div>')


# --- the corpus panel ---------------------------------------------------------------------

def format_corpus(articles: Sequence[Article], chunks: int, total: int | None = None,
                  uploads_prefix: str = "uploads/") -> str:
    """Counts and a list of the searchable articles (titles, files, dates; uploads marked), at most
    `CORPUS_ROWS` of them in the order given; ``total``: how many there are in all (default: as many as given)."""
    total = len(articles) if total is None else total
    rows = []
    for article in articles[:CORPUS_ROWS]:
        uploaded = article.id.startswith(uploads_prefix)
        date = f'<span class="sanad-date" dir="auto">{escape(article.date)}</span>' if article.date else ""
        tag = '<span class="sanad-tag">مرفوع</span>' if uploaded else ""
        rows.append(f'<li><div class="sanad-corpus-title" dir="auto" title="{escape(article.title, quote=True)}">'
                    f'{escape(shorten(article.title or article.source, 90))}</div>'
                    f'<div class="sanad-corpus-meta"><span class="sanad-file" dir="ltr">{escape(article.source)}</span>'
                    f'{date}{tag}</div></li>')
    more = total - min(len(articles), CORPUS_ROWS)
    more_html = f'<div class="sanad-corpus-more">و{more:,} مقالًا آخر</div>' if more > 0 else ""
    return (f'<div class="sanad-corpus" dir="rtl" lang="ar">'
            f'<div class="sanad-corpus-counts"><span><b>{total:,}</b> مقال</span>'
            f'<span><b>{chunks:,}</b> مقطع مفهرس</span></div>'
            f'<ol class="sanad-corpus-list">{"".join(rows)}</ol>{more_html}</div>')


def format_status(message: str, kind: str = "info", skipped: Sequence[tuple[str, str]] = ()) -> str:
    """A status under the upload box (kind "info", "ok" or "error"), then one line per skipped file."""
    kind = kind if kind in ("info", "ok", "error") else "info"
    rows = "".join(f'<li><span class="sanad-file" dir="ltr">{escape(file)}</span>: <span dir="auto">{escape(reason)}</span></li>'
                   for file, reason in skipped[:SKIPPED_ROWS])
    more = f"<li>و{len(skipped) - SKIPPED_ROWS:,} ملفًا آخر</li>" if len(skipped) > SKIPPED_ROWS else ""
    listed = (f'<div class="sanad-skipped-heading">لم يُفهرس (ملفات لم تُقرأ): {len(skipped):,}</div>'
              f'<ul class="sanad-skipped">{rows}{more}</ul>') if skipped else ""
    return f'<div class="sanad-status is-{kind}" dir="auto" role="status">{escape(message)}{listed}</div>'
