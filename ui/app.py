"""The Gradio chat page over a `ChatBot`: ``sanad chat`` calls `launch`, tests call `build_app`.

Layout (right to left): the conversation and the question box; beside it the source panel, the
settings and the corpus (article list and upload). The conversation is one ``gr.HTML`` written by
`ui.format`; its script turns a click on a marker ``[n]`` into the custom ``cite`` event with the
key ``"turn:n"``, and `Handlers.show_source` renders that citation's article in the side panel.

Handlers are plain methods that call the `ChatBot` and format what it returns, chained as in
Gradio's ``demo/chatbot_multimodal``: ``submit(ask).success(answer).then(unlock)``. The answers
of a session live in a ``gr.State`` (a list of `Turn`), so the page is always rebuilt from it.
A `SanadError` is shown as its message, any other exception as a generic message with the
traceback logged on the server.
"""
from __future__ import annotations

import logging
import sys
from html import escape
from pathlib import Path
from typing import Iterator, Sequence

import gradio as gr

from rag.chatbot import UPLOADS, ChatBot
from rag.config import SanadConfig
from rag.errors import SanadError
from rag.ingest import SUFFIXES
from rag.types import Answer, Article, Citation
from ui.format import (
    CORPUS_ROWS, Turn, format_corpus, format_source, format_source_placeholder, format_status, format_transcript,
    parse_citation_key,
)

log = logging.getLogger("sanad.ui")

ASSETS = Path(__file__).resolve().parent
CSS = (ASSETS / "style.css").read_text(encoding="utf-8")
TRANSCRIPT_JS = (ASSETS / "transcript.js").read_text(encoding="utf-8")
PANEL_JS = (ASSETS / "panel.js").read_text(encoding="utf-8")
# Before the page renders: the document reads right to left in Arabic, and the question box
# follows what is typed in it (an English question runs left to right).
HEAD = """<meta name="color-scheme" content="light">
<script>
document.documentElement.setAttribute("dir", "rtl");
document.documentElement.setAttribute("lang", "ar");
document.addEventListener("focusin", (event) => {
  if (event.target.matches && event.target.matches("#sanad-question textarea")) event.target.setAttribute("dir", "auto");
});
</script>"""
UI_FONTS = ["Noto Sans Arabic", "Noto Naskh Arabic", "Segoe UI", "Tahoma", "sans-serif"]
MONO_FONTS = ["DejaVu Sans Mono", "Consolas", "ui-monospace", "monospace"]

EXAMPLES = [
    "كم عدد الجنود الكوريين الشماليين في كورسك؟",
    "How many North Korean troops are in Kursk?",
    "ماذا قال لافروف عن العلاقات بين روسيا وكوريا الشمالية؟",
    "What did South Korea ask the Russian ambassador?",
]
GENERIC_ERROR = "حدث خطأ غير متوقع؛ سُجّلت تفاصيله في سجل الخادم. حاول مرة أخرى."
MAX_PASSAGES = 20
UPLOAD_HINT = (f"الأنواع المقبولة: {'، '.join(suffix.lstrip('.') for suffix in SUFFIXES)}؛ "
               "الملفات النصية بترميز UTF-8 أو UTF-16 أو Windows-1256 أو ISO-8859-6، حتى {mb:g} ميغابايت للملف.")


def theme() -> gr.themes.Base:
    """Calm colours and local fonts only (nothing is downloaded from a font service)."""
    return gr.themes.Soft(primary_hue="teal", secondary_hue="amber", neutral_hue="stone",
                          font=UI_FONTS, font_mono=MONO_FONTS).set(
        body_background_fill="#f6f4ef",
        body_background_fill_dark="#181b1d",
        block_radius="14px",
        button_large_radius="12px",
    )


class SanadBlocks(gr.Blocks):
    """``gr.Blocks`` whose ``launch()`` brings Sanad's theme, CSS and head unless given others.

    Gradio 6 takes these at launch, not at construction; carrying them here means
    ``build_app(bot).launch(...)`` in a test shows the same page as ``sanad chat``.
    """

    upload_limit: int | None = None  # bytes; set by `build_app` from the ChatBot's upload limit

    def launch(self, *args, **kwargs):
        kwargs.setdefault("theme", theme())
        kwargs.setdefault("css", CSS)
        kwargs.setdefault("head", HEAD)
        kwargs.setdefault("max_file_size", self.upload_limit)  # Gradio refuses bigger files before storing them
        return super().launch(*args, **kwargs)


def user_message(exc: BaseException) -> str:
    """What the reader sees for an error: a `SanadError`'s own message, else a generic one."""
    if isinstance(exc, SanadError):
        return str(exc)
    log.error("unexpected error in the chat UI", exc_info=exc)
    return GENERIC_ERROR


def stream_answer(bot: ChatBot, question: str, history, top_k: int | None = None,
                  mode: str | None = None) -> Iterator[str | Answer]:
    """``bot.stream`` with this request's number of passages and answer mode (None: the bot's own)."""
    return bot.stream(question, history, top_k=int(top_k) if top_k else None, mode=mode or None)


def llm_available(bot: ChatBot) -> bool:
    """Whether the settings may offer the LLM mode: the ChatBot has an LLM server to talk to."""
    return getattr(bot.answerer, "llm", None) is not None


class Handlers:
    """The event handlers of one app: each takes component values and returns what to show."""

    def __init__(self, bot: ChatBot):
        self.bot = bot

    # --- the conversation -------------------------------------------------------------------

    def ask(self, question: str, turns: list[Turn], show_scores: bool):
        """Check the question, show it at once with a typing indicator, lock the box."""
        try:
            question = self.bot.check_question(question)
        except Exception as exc:  # noqa: BLE001 - every error becomes a message
            raise gr.Error(escape(user_message(exc)), title="تعذّر إرسال السؤال", print_exception=False) from None
        return (gr.update(value="", interactive=False),
                format_transcript(turns, show_scores, pending=question), question)

    def answer(self, pending: str | None, turns: list[Turn], top_k: int, mode: str, show_scores: bool):
        """Stream the answer into the conversation; the last update stores it in the state."""
        if not pending:
            yield gr.skip(), gr.skip()
            return
        history = [(turn.question, turn.answer) for turn in turns if turn.answer is not None]
        text, answer = "", None
        try:
            for item in stream_answer(self.bot, pending, history, top_k, mode):
                if isinstance(item, Answer):
                    answer = item
                    break
                text += item
                yield format_transcript(turns, show_scores, pending=pending, partial=text), gr.skip()
            if answer is None:
                raise RuntimeError("the chatbot's stream ended without an Answer")
            turn = Turn(pending, answer=answer)
        except Exception as exc:  # noqa: BLE001 - every error becomes a message
            message = user_message(exc)
            gr.Warning(escape(message))
            turn = Turn(pending, error=message)
        turns = [*turns, turn]
        yield format_transcript(turns, show_scores), turns

    @staticmethod
    def unlock():
        """After an answer (or a failure): the question box takes input again, nothing is pending."""
        return gr.update(interactive=True), None

    @staticmethod
    def pick_example(sample) -> str:
        return sample[0] if isinstance(sample, (list, tuple)) else str(sample)

    @staticmethod
    def redraw(turns: list[Turn], show_scores: bool) -> str:
        return format_transcript(turns, show_scores)

    @staticmethod
    def clear():
        """A new conversation: no turns, an empty panel, an empty question box."""
        return [], format_transcript([]), format_source_placeholder(), gr.update(value="", interactive=True), None

    # --- the source panel --------------------------------------------------------------------

    def show_source(self, turns: list[Turn], event: gr.EventData) -> str:
        """The article of the citation whose marker was clicked, the quote highlighted."""
        data = event._data if isinstance(getattr(event, "_data", None), dict) else {}
        key = parse_citation_key(data.get("key"))
        if key is None:
            return gr.skip()
        turn_number, n = key
        if not 0 <= turn_number < len(turns) or turns[turn_number].answer is None:
            return gr.skip()
        answer = turns[turn_number].answer
        citation = next((c for c in answer.citations if c.n == n), None)
        if citation is None:
            return gr.skip()
        try:
            return format_source(citation, self.article(citation), answer.language)
        except Exception as exc:  # noqa: BLE001
            raise gr.Error(escape(user_message(exc))) from None

    def article(self, citation: Citation) -> Article | None:
        """The cited article in the current index (by id, else by file name), or None if gone."""
        index = self.bot.index
        if citation.article_id:
            try:
                return index.article(citation.article_id)
            except (KeyError, IndexError):
                pass
        return next((a for a in index.articles if a.source == citation.source), None)

    # --- the corpus --------------------------------------------------------------------------

    def corpus(self) -> str:
        index, prefix = self.bot.index, f"{UPLOADS}/"
        shown = index.articles_under(prefix, CORPUS_ROWS)  # uploads first, then the folder's in index order
        for at in range(0, index.article_count, CORPUS_ROWS):
            if len(shown) >= CORPUS_ROWS:
                break
            shown += [a for a in index.articles[at:at + CORPUS_ROWS] if not a.id.startswith(prefix)]
        return format_corpus(shown[:CORPUS_ROWS], len(index), index.article_count, uploads_prefix=prefix)

    def counts(self) -> str:
        index = self.bot.index
        return (f'<span class="sanad-counts" dir="rtl"><b>{index.article_count:,}</b> مقال · '
                f'<b>{len(index):,}</b> مقطع مفهرس</span>')

    def upload_hint(self) -> str:
        """The notice under the upload box: what it accepts, and the corpus files that were skipped."""
        skipped = self.bot.last_update.skipped
        return format_status(UPLOAD_HINT.format(mb=self.bot.config.upload.max_file_bytes / 1e6), "info", skipped)

    def removable(self):
        """The remove menu: the uploaded files, none chosen."""
        return gr.update(choices=self.bot.uploads, value=None)

    def upload(self, files: Sequence[str] | None, progress=gr.Progress()):
        """Index uploaded files; a file that cannot be read is listed as skipped and changes nothing."""
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        paths = [Path(file) for file in files]
        names = "، ".join(path.name for path in paths)

        def report(done: int, total: int, what: str) -> None:
            progress((done, max(total, 1)), desc=f"فهرسة {what}", unit="نص")

        progress(0, desc=f"قراءة {names}")
        try:
            before = self.bot.index.article_count
            result = self.bot.add_files(paths, progress=report)
        except Exception as exc:  # noqa: BLE001 - every error becomes a message
            message = f"لم يُضف شيء: {user_message(exc)}"
            gr.Warning(escape(message))
            return format_status(message, "error"), gr.skip(), gr.skip(), None, gr.skip()
        added = self.bot.index.article_count - before
        indexed = "، ".join(path.name for path in paths if path.name not in {name for name, _ in result.skipped})
        message = (f"أُضيف {indexed} (مقالات جديدة: {result.added}، محدَّثة: {result.changed}). "
                   f"عدد المقالات في الفهرس الآن {self.bot.index.article_count:,}، وكلها قابلة للبحث.")
        if result.skipped:
            gr.Warning(escape("لم يُضف: " + "؛ ".join(f"{name}: {reason}" for name, reason in result.skipped)))
        log.info("uploaded %s: %+d articles (%s)", names, added, result)
        return (format_status(message, "ok", result.skipped), self.corpus(), self.counts(), None, self.removable())

    def remove(self, article_id: str | None):
        """Remove an uploaded article from the index; the corpus folder's own articles stay."""
        if not article_id:
            return format_status("اختر مقالًا مرفوعًا لحذفه.", "error"), gr.skip(), gr.skip(), gr.skip()
        try:
            result = self.bot.remove(article_id)
        except Exception as exc:  # noqa: BLE001 - every error becomes a message
            message = f"لم يُحذف شيء: {user_message(exc)}"
            gr.Warning(escape(message))
            return format_status(message, "error"), gr.skip(), gr.skip(), self.removable()
        message = (f"حُذف {article_id} ({result.removed} مقال). "
                   f"عدد المقالات في الفهرس الآن {self.bot.index.article_count:,}.")
        log.info("removed %s (%s)", article_id, result)
        return format_status(message, "ok"), self.corpus(), self.counts(), self.removable()


def build_app(bot: ChatBot) -> gr.Blocks:
    """The chat page over ``bot`` (built once and shared by every session), with its queue set."""
    handlers = Handlers(bot)
    offer_llm = llm_available(bot)
    default_top_k = bot.config.retrieve.top_k
    max_top_k = max(default_top_k, min(MAX_PASSAGES, bot.config.retrieve.candidates))

    with SanadBlocks(title="سند · Sanad", analytics_enabled=False) as demo:
        turns = gr.State([])
        pending = gr.State(None)

        with gr.Row(elem_id="sanad-header"):
            gr.HTML('<div class="sanad-brand" dir="rtl"><span class="sanad-logo">سند</span>'
                    '<span class="sanad-tagline">أجوبة من المقالات الإخبارية، لكل معلومة مصدرها</span></div>')
            counts = gr.HTML(handlers.counts(), elem_id="sanad-counts")

        with gr.Row(elem_id="sanad-main", equal_height=False):
            with gr.Column(scale=3, min_width=380, elem_id="sanad-chat"):
                transcript = gr.HTML(format_transcript([]), elem_id="sanad-transcript", js_on_load=TRANSCRIPT_JS,
                                     autoscroll=True, apply_default_css=False)
                question = gr.Textbox(show_label=False, elem_id="sanad-question", lines=1, max_lines=5,
                                      placeholder="اكتب سؤالك عن المقالات…  ·  Ask about the articles…",
                                      submit_btn="اسأل", rtl=True, autofocus=True, container=False)
                with gr.Row(elem_id="sanad-toolbar"):
                    examples = gr.Dataset(components=[question], samples=[[q] for q in EXAMPLES],
                                          label="أمثلة", elem_id="sanad-examples", layout="gallery")
                    clear = gr.Button("محادثة جديدة", elem_id="sanad-clear", variant="secondary", size="sm",
                                      scale=0, min_width=120)

            with gr.Column(scale=2, min_width=340, elem_id="sanad-side"):
                panel = gr.HTML(format_source_placeholder(), elem_id="sanad-panel", js_on_load=PANEL_JS,
                                apply_default_css=False)
                with gr.Accordion("الإعدادات", open=False, elem_id="sanad-settings"):
                    mode = gr.Radio([("استخراجي (اقتباس من المقالات)", "extractive"), ("نموذج لغوي LLM", "llm")],
                                    value="llm" if offer_llm else "extractive",
                                    label="طريقة الإجابة", interactive=offer_llm,
                                    info=None if offer_llm else "غير متاح: لم يُضبط خادم للنموذج اللغوي.")
                    top_k = gr.Slider(1, max_top_k, value=default_top_k, step=1, label="عدد المقاطع المسترجعة",
                                      info="كم مقطعًا من المقالات يُقرأ قبل الإجابة")
                    show_scores = gr.Checkbox(False, label="اعرض الدرجات")
                with gr.Accordion("المقالات", open=False, elem_id="sanad-corpus"):
                    corpus = gr.HTML(handlers.corpus(), elem_id="sanad-corpus-list", apply_default_css=False)
                    files = gr.File(label="أضف مقالات", file_count="multiple",
                                    file_types=list(SUFFIXES), type="filepath", elem_id="sanad-upload")
                    status = gr.HTML(handlers.upload_hint(), elem_id="sanad-upload-status", apply_default_css=False)
                    with gr.Row(elem_id="sanad-remove-row", equal_height=True):
                        removable = gr.Dropdown(choices=bot.uploads, value=None, label="مقال مرفوع",
                                                elem_id="sanad-removable", scale=3, allow_custom_value=False)
                        remove = gr.Button("احذف من الفهرس", elem_id="sanad-remove", variant="stop", size="sm",
                                           scale=1, min_width=110)

        # A question: show it, stream the answer, unlock the box (also after an error).
        ask_inputs = [question, turns, show_scores]
        ask_outputs = [question, transcript, pending]
        answer_args = dict(fn=handlers.answer, inputs=[pending, turns, top_k, mode, show_scores],
                           outputs=[transcript, turns], concurrency_limit=bot.config.answer.concurrency,
                           concurrency_id="answer", show_progress="hidden")
        asked = question.submit(handlers.ask, ask_inputs, ask_outputs, api_name="ask", show_progress="hidden")
        asked.success(**answer_args, api_name="answer").then(handlers.unlock, None, [question, pending],
                                                             api_visibility="private")
        picked = examples.click(handlers.pick_example, examples, question, api_visibility="private")
        picked.then(handlers.ask, ask_inputs, ask_outputs, api_visibility="private", show_progress="hidden").success(
            **answer_args, api_visibility="private").then(handlers.unlock, None, [question, pending],
                                                           api_visibility="private")

        transcript.cite(handlers.show_source, turns, panel, api_visibility="private", show_progress="hidden",
                        concurrency_limit=None)
        show_scores.change(handlers.redraw, [turns, show_scores], transcript, api_visibility="private",
                           show_progress="hidden")
        clear.click(handlers.clear, None, [turns, transcript, panel, question, pending], api_visibility="private",
                    show_progress="hidden")
        files.upload(handlers.upload, files, [status, corpus, counts, files, removable], api_name="upload",
                     concurrency_limit=1, concurrency_id="index")
        remove.click(handlers.remove, removable, [status, corpus, counts, removable], api_name="remove",
                     concurrency_limit=1, concurrency_id="index")
        # Another session may have added or removed articles since this page was built.
        demo.load(lambda: (handlers.corpus(), handlers.counts(), handlers.removable()), None,
                  [corpus, counts, removable], api_visibility="private", show_progress="hidden")

    demo.queue(default_concurrency_limit=4, max_size=64)
    demo.upload_limit = bot.config.upload.max_file_bytes
    return demo


def launch(corpus: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           config: SanadConfig | None = None):
    """``sanad chat``: load the model and index once, then serve the page until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    print("سند: loading the model and the index…", file=sys.stderr)
    bot = ChatBot(corpus=corpus, config=config)
    print(f"سند: {len(bot.articles)} articles, {len(bot.index)} chunks from {bot.corpus}", file=sys.stderr)
    for file, reason in bot.last_update.skipped:
        print(f"skipped {file}: {reason}", file=sys.stderr)
    demo = build_app(bot)
    return demo.launch(server_name=host, server_port=port, share=share, show_error=False)
