"""``sanad eval``: ask a gold question set, score every answer, compare with ``eval/thresholds.toml``.

Three suites. ``seeds``: the hand-checked questions of ``eval/datasets/seeds_qa.jsonl`` over ``seeds/``
(or ``--corpus DIR --questions FILE``, the same JSONL format, for your own articles). ``xquad``: the
240 Arabic XQuAD paragraphs as a corpus, each question asked in Arabic and in English, reported
per ``fit``/``report`` half so figures tuned on one half are read on the other. ``arquad``: the 393
paragraphs of ArQuAD dev, read at run time and held in memory, with their expert-written Arabic
questions (for choosing, never for training), reported by half too: the answer settings are fitted
on its fit half's articles, so its report half is the honest figure. Both paragraph suites also run
the absent half: every other paragraph indexed, every question asked again.

The index lives under ``--out``, so an evaluation never touches the user's own index. The
command writes ``report.json``, ``report.md`` and ``confidence.png`` and exits 1 when a metric
falls below its threshold (or rises above a ``max`` ceiling), naming each one.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from itertools import islice, zip_longest
from pathlib import Path

from eval import SEEDS_GOLD as SEEDS_QUESTIONS
from eval import metrics as m
from eval.report import plot_confidence, render_markdown
from rag.config import load_config
from rag.errors import ConfigError, CorpusError
from rag.progress import progress_bar

THRESHOLDS = Path(__file__).with_name("thresholds.toml")
DEPTH = 20  # chunks retrieved for the retrieval metrics; a gold passage below this rank is a miss


@dataclass(frozen=True)
class GoldQuestion:
    """One line of a gold JSONL file (schema: ``eval/datasets/README.md``)."""

    id: str
    lang: str
    question: str
    answerable: bool
    answers: tuple[str, ...]
    articles: tuple[str, ...]
    support: tuple[str, ...]
    follows: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuestionResult:
    """Everything measured about one asked question; the summaries are means over these."""

    id: str
    lang: str
    group: str  # the XQuAD half ("fit"/"report"); "seeds" for the seeds suite
    answerable: bool
    tags: tuple[str, ...]
    abstained: bool
    key_matched: bool  # an answer key (XQuAD: a gold span) occurs in Answer.text
    short_answer: str | None
    short_em: float | None  # against the keys; 0 for an answerable question given no short answer
    short_f1: float | None
    confidence: float
    latency_ms: float
    article_rank: int | None  # rank of the first gold article in the top DEPTH chunks
    sentence_rank: int | None  # rank of the first chunk holding a whole support sentence
    citation_recall: float | None  # None: abstained, or nothing checkable in the answer
    citation_precision: float | None
    groundedness: float | None
    quotes_exact: int
    quotes: int
    cites_gold_article: bool | None  # a supporting citation points into a gold article
    cites_all_gold_articles: bool | None
    text: str


# --- reading ------------------------------------------------------------------------

def read_questions(path: Path) -> list[GoldQuestion]:
    """The gold questions, each line checked for the fields the suite needs."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the question file ({exc.strerror})") from exc
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            questions.append(GoldQuestion(
                id=entry["id"], lang=entry.get("lang", "ar"), question=entry["question"],
                answerable=bool(entry["answerable"]), answers=tuple(entry.get("answers", ())),
                articles=tuple(entry.get("articles", ())), support=tuple(entry.get("support", ())),
                follows=entry.get("follows"), tags=tuple(entry.get("tags", ()))))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CorpusError(f"{path}:{number}: not a gold question ({type(exc).__name__}: {exc})") from exc
    return questions


def read_thresholds(path: Path, suite: str) -> dict:
    """The ``[suite]`` table: floors as ``name = value``, ceilings under ``[suite.max]``."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8")).get(suite, {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the thresholds ({exc})") from exc


# --- asking and scoring ----------------------------------------------------------------

def timed_ask(bot, question: str, history=None):
    """(Answer, wall-clock milliseconds of ``ChatBot.ask``)."""
    started = time.perf_counter()
    answer = bot.ask(question, history)
    return answer, (time.perf_counter() - started) * 1000


def score_answer(answer, *, id: str, lang: str, group: str, answerable: bool, keys, gold_articles: set[str],
                 latency_ms: float, article_text, tags=(), article_rank=None, sentence_rank=None) -> QuestionResult:
    """The metrics of one answer (only citation and quote checks count for abstentions)."""
    answered = not answer.abstained
    recall, precision = m.citation_scores(answer.text, answer.citations) if answered else (None, None)
    cited = {c.article_id for c in answer.citations if not c.related}
    short = answer.short_answer if answered and answer.short_answer else None
    return QuestionResult(
        id=id, lang=lang, group=group, answerable=answerable, tags=tuple(tags), abstained=answer.abstained,
        key_matched=m.any_key_matches(keys, answer.text), short_answer=short,
        short_em=(m.exact_match(short, keys) if short else 0.0) if answerable and keys else None,
        short_f1=(m.token_f1(short, keys) if short else 0.0) if answerable and keys else None,
        confidence=float(answer.confidence), latency_ms=round(latency_ms, 1),
        article_rank=article_rank, sentence_rank=sentence_rank, citation_recall=recall, citation_precision=precision,
        groundedness=m.groundedness(answer.text, answer.citations) if answered else None,
        quotes_exact=m.exact_quotes(answer.citations, article_text), quotes=len(answer.citations),
        cites_gold_article=bool(cited & gold_articles) if answered and gold_articles else None,
        cites_all_gold_articles=gold_articles <= cited if answered and gold_articles else None,
        text=answer.text)


def summarize(results: list[QuestionResult], retrieval: bool = True) -> dict:
    """The suite's figures over ``results`` (None where no question of the kind was asked)."""
    answerable = [r for r in results if r.answerable]
    answered = [r for r in results if not r.abstained]
    conflicts = [r.cites_all_gold_articles for r in answerable if "conflict" in r.tags]
    summary = {"questions": len(results), "answerable": len(answerable), "unanswerable": len(results) - len(answerable)}
    if retrieval:
        for name in ("article", "sentence"):
            ranks = [getattr(r, f"{name}_rank") for r in answerable]
            summary |= {f"{name}_recall@1": m.recall_at(ranks, 1), f"{name}_recall@5": m.recall_at(ranks, 5),
                        f"{name}_mrr": m.mrr(ranks)}
    return summary | {
        "answer_accuracy": m.mean([r.key_matched and not r.abstained for r in answerable]),
        "short_answer_rate": m.mean([r.short_answer is not None for r in answerable]),
        "short_answer_em": m.mean([r.short_em for r in answerable]),
        "short_answer_f1": m.mean([r.short_f1 for r in answerable]),
        "cites_gold_article": m.mean([r.cites_gold_article for r in answerable]),
        "conflict_coverage": m.mean(conflicts),
        "citation_recall": m.mean([r.citation_recall for r in answered]),
        "citation_precision": m.mean([r.citation_precision for r in answered]),
        "groundedness": m.mean([r.groundedness for r in answered]),
        "exact_quote_rate": m.ratio(sum(r.quotes_exact for r in results), sum(r.quotes for r in results)),
        **m.abstention_scores([r.answerable for r in results], [r.abstained for r in results],
                              [r.key_matched for r in results]),
        "answer_words_p50": m.percentile([len(r.text.split()) for r in answered], 50),
        "latency_p50_ms": m.percentile([r.latency_ms for r in results], 50),
        "latency_p95_ms": m.percentile([r.latency_ms for r in results], 95),
    }


# --- suites -------------------------------------------------------------------------------

def run_seeds(args, out: Path, config=None):
    """(metrics, results, bot) for a gold JSONL file over a folder of articles. With a ``config`` in LLM
    mode, each question is also asked extractively, and ``metrics["llm"]`` says what the model wrote,
    what was kept, and which answers it made worse (``llm_questions.jsonl`` lists every question)."""
    from tqdm import tqdm

    from eval import llm_mode
    from rag.chatbot import ChatBot

    if args.corpus and not args.questions:
        raise ConfigError("--corpus needs --questions FILE: the seeds questions are about seeds/ only")
    questions = every(read_questions(args.questions or SEEDS_QUESTIONS)[:args.limit or None], getattr(args, "every", None))
    halves = gold_halves(questions)
    bot = ChatBot(corpus=args.corpus, index_dir=out / "index-seeds", progress=progress_bar(), config=config)
    llm = bot.config.answer.mode == "llm"
    replies, rows = llm_mode.Replies(), []
    ids_by_name = {name: article.id for article in bot.articles for name in (article.id, article.source)}
    asked: dict = {}  # id -> (question, Answer), the history of follow-ups
    results = []
    for gold in tqdm(questions, desc="seeds", unit="q", file=sys.stderr):
        if gold.follows and gold.follows not in asked:
            raise CorpusError(f"{gold.id} follows {gold.follows!r}, which is not an earlier question of the file")
        history = [asked[gold.follows]] if gold.follows else None
        query = bot.answerer.retrieval_query(gold.question, history)
        hits = bot.retrieve(query, top_k=DEPTH)
        gold_articles = {ids_by_name.get(name, name) for name in gold.articles}
        with replies.listening() if llm else contextlib.nullcontext():
            answer, latency = timed_ask(bot, gold.question, history)
        if llm:
            extractive = bot.ask(gold.question, history, mode="extractive")
            rows.append(llm_mode.row(gold, answer, extractive, replies.take(), latency))
        asked[gold.id] = (gold.question, answer)
        results.append(score_answer(
            answer, id=gold.id, lang=gold.lang, group=halves[gold.id], answerable=gold.answerable, keys=gold.answers,
            gold_articles=gold_articles, latency_ms=latency, article_text=lambda a: bot.index.article(a).text,
            tags=gold.tags, article_rank=m.article_rank([h.chunk.article_id for h in hits], gold_articles),
            sentence_rank=m.sentence_rank([h.chunk.text for h in hits], gold.support)))
    summary = summarize(results)
    for lang in sorted({r.lang for r in results}):
        summary[lang] = summarize([r for r in results if r.lang == lang])
    for half in ("fit", "report"):  # the reader's calibration saw the fit half only
        summary[half] = summarize([r for r in results if r.group == half])
    if llm:
        summary["llm"] = llm_mode.summarize(rows)
        (out / "llm_questions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                                 encoding="utf-8")
    return summary, results, bot


def every(questions: list[GoldQuestion], k: int | None) -> list[GoldQuestion]:
    """Every ``k``-th question and the earlier questions they follow (a sample spread over the file, for slow modes)."""
    if not k or k <= 1:
        return questions
    by_id = {q.id: q for q in questions}
    keep = set()
    for q in questions[::k]:
        while q is not None and q.id not in keep:
            keep.add(q.id)
            q = by_id.get(q.follows) if q.follows else None
    return [q for q in questions if q.id in keep]


def gold_halves(questions: list[GoldQuestion]) -> dict[str, str]:
    """{id: "fit" or "report"}: the split `eval.reader_data.seeds_half` trains and calibrates on."""
    from eval.reader_data import seeds_half

    by_id = {q.id: {"id": q.id, "follows": q.follows} for q in questions}
    return {q.id: seeds_half(by_id[q.id], by_id) for q in questions}


@dataclass(frozen=True)
class ParagraphQuestion:
    """One question of a paragraph benchmark (XQuAD, ArQuAD) as it is asked: XQuAD asks each twice, in
    Arabic and in English, so the suites share one way of asking and scoring."""

    id: str
    lang: str
    half: str  # "fit" (what the answer layer is tuned on) or "report", by article
    text: str
    answers: tuple[str, ...]
    article_id: str  # the gold paragraph's article
    paragraph: int  # its record number (1-based): the absent half keeps the odd ones


HALVES = ("fit", "report")


def run_xquad(args, out: Path):
    """(metrics, results, bot) for XQuAD-ar paragraphs, questions in Arabic and English."""
    from eval import xquad
    from rag.chatbot import ChatBot

    refuse_own_questions(args, "XQuAD", "--xquad")
    records, questions = xquad.load(args.xquad)
    questions = balanced_sample(questions, args.limit)
    asks = xquad_asks(questions)
    bot = ChatBot(corpus=xquad.write_corpus(records, out / "xquad_corpus"), index_dir=out / "index-xquad",
                  progress=progress_bar())
    summary, results = ask_paragraphs(bot, asks, HALVES, "xquad")
    half_bot = ChatBot(corpus=xquad.write_corpus(records[::2], out / "xquad_half_corpus"),
                       index_dir=out / "index-xquad-half", progress=progress_bar())
    summary["absent_half"] = absent_half(half_bot, asks, HALVES, "xquad")
    return summary, results, bot


def xquad_asks(questions: list) -> list[ParagraphQuestion]:
    """Every XQuAD question in Arabic, then every one again in English, over the same Arabic paragraphs."""
    return [ParagraphQuestion(q.id, lang, q.half, q.question_ar if lang == "ar" else q.question_en, q.answers,
                              q.article_id, q.paragraph) for lang in ("ar", "en") for q in questions]


def run_arquad(args, out: Path):
    """(metrics, results, bot) for ArQuAD dev: its paragraphs held in memory as the corpus (its licence
    allows no copy), its expert-written Arabic questions over all of it, reported by half: the gate and
    answer settings are fitted on the fit half's articles (`eval.calibrate_reader`), never on the report half."""
    from eval import arquad
    from rag.chatbot import ChatBot

    refuse_own_questions(args, "ArQuAD", "--arquad")
    records, questions = arquad.load(args.arquad)
    questions = balanced_sample(questions, args.limit, kind=lambda q: q.paragraph % 2)  # both sides of the absent half
    asks = [ParagraphQuestion(q.id, "ar", q.half, q.question, (q.answer,), q.article_id, q.paragraph) for q in questions]
    articles = arquad.articles(records)
    bot = ChatBot(articles=articles, index_dir=out / "index-arquad", progress=progress_bar())
    summary, results = ask_paragraphs(bot, asks, HALVES, "arquad")
    half_bot = ChatBot(articles=articles[::2], index_dir=out / "index-arquad-half", progress=progress_bar())
    summary["absent_half"] = absent_half(half_bot, asks, HALVES, "arquad")
    return summary, results, bot


def refuse_own_questions(args, name: str, option: str) -> None:
    """A benchmark suite brings its corpus and questions, so ``--corpus``/``--questions`` would be ignored."""
    if args.corpus or args.questions:
        raise ConfigError(f"--corpus and --questions are for --suite seeds; {name} brings its own (see {option} DIR)")


def ask_paragraphs(bot, asks: list[ParagraphQuestion], halves: tuple[str, ...], name: str):
    """(metrics, results): every question asked through the default ChatBot, gate on, as users get it.
    Every question has an answer, so an abstention is a false one (``false_abstention_rate``). Per
    language: each half and "all", with the gold-paragraph F1 and the retrieval of the gold paragraph."""
    from tqdm import tqdm

    summary = {"retrieval": retrieval_by_half(bot, asks, halves)}
    results, gold_f1 = [], []
    for ask in tqdm(asks, desc=name, unit="q", file=sys.stderr):
        answer, latency = timed_ask(bot, ask.text)
        results.append(score_answer(
            answer, id=ask.id, lang=ask.lang, group=ask.half, answerable=True, keys=ask.answers,
            gold_articles={ask.article_id}, latency_ms=latency, article_text=lambda a: bot.index.article(a).text))
        gold_f1.append(m.token_f1(gold_paragraph_answer(bot, ask.text, ask.article_id), ask.answers))
    summary |= summarize(results, retrieval=False)
    for lang in dict.fromkeys(ask.lang for ask in asks):
        summary[lang] = {half: summarize([r for r in results if r.lang == lang and half in ("all", r.group)], retrieval=False)
                         | {"gold_paragraph_f1": m.mean([f for r, f in zip(results, gold_f1)
                                                         if r.lang == lang and half in ("all", r.group)])}
                         for half in (*halves, "all")}
    return summary, results


def absent_half(bot, asks: list[ParagraphQuestion], halves: tuple[str, ...], name: str) -> dict:
    """``bot`` indexes every other paragraph (odd record numbers) and every question is asked again: a
    question about an indexed paragraph should be answered, one about a left-out paragraph abstained
    on, though its article's other paragraphs are there (the on-topic absent fact). {lang: {half: rates}}."""
    from tqdm import tqdm

    rows = []
    for ask in tqdm(asks, desc=f"{name} absent half", unit="q", file=sys.stderr):
        answer = bot.ask(ask.text)
        rows.append((ask, answer.abstained, not answer.abstained and m.any_key_matches(ask.answers, answer.text)))
    table = {}
    for lang in dict.fromkeys(ask.lang for ask in asks):
        table[lang] = {}
        for half in (*halves, "all"):
            mine = [(ask.paragraph % 2 == 1, abstained, correct) for ask, abstained, correct in rows
                    if ask.lang == lang and half in ("all", ask.half)]
            table[lang][half] = {"present_answered": m.mean([not r[1] for r in mine if r[0]]),
                                 "present_correct": m.mean([r[2] for r in mine if r[0]]),
                                 "absent_abstained": m.mean([r[1] for r in mine if not r[0]])}
    return table


def gold_paragraph_answer(bot, question: str, article_id: str) -> str:
    """The reader's best span when it is handed the gold paragraph alone (the published XQuAD setting)."""
    from rag.types import Chunk, Hit

    article = bot.index.article(article_id)
    readings = bot.answerer.reader.read(question, [Hit(Chunk(-1, article.id, 0, len(article.text), article.text), 1.0, 0, "gold")])
    spans = [span for reading in readings for span in reading.spans]
    return max(spans, key=lambda s: s.score).text if spans else ""


def balanced_sample(questions: list, limit: int | None, kind=lambda q: q.half) -> list:
    """The first ``limit`` questions taken in turn from each kind (XQuAD: its halves), in file order.

    The files are ordered by article, so the plain first N would all be of one kind; a kind with too
    few questions leaves its turns to the others.
    """
    if not limit:
        return questions
    numbers: dict = {}
    for number, question in enumerate(questions):
        numbers.setdefault(kind(question), []).append(number)
    turns = (number for row in zip_longest(*(numbers[k] for k in sorted(numbers))) for number in row if number is not None)
    return [questions[number] for number in sorted(islice(turns, limit))]


def retrieval_by_half(bot, asks: list[ParagraphQuestion], halves: tuple[str, ...]) -> dict:
    """{lang: {half: {mode: {"R@1", "R@5", "MRR"}}}}, gold = the question's paragraph; "all" is the
    question-weighted mean of the halves, so no question is retrieved twice."""
    from eval.retrieval import retrieval_metrics
    from rag.retrieve import MODES

    table = {}
    for lang in dict.fromkeys(ask.lang for ask in asks):
        mine = [ask for ask in asks if ask.lang == lang]
        parts = {half: [ask for ask in mine if ask.half == half] for half in halves} or {"all": mine}
        scores = {half: retrieval_metrics(bot, [(ask.text, {ask.article_id}) for ask in part])
                  for half, part in parts.items() if part}
        table[lang] = scores | {"all": {mode: {
            name: round(sum(len(parts[h]) * scores[h][mode][name] for h in scores) / len(mine), 3)
            for name in ("R@1", "R@5", "MRR")} for mode in (MODES if scores else ())}}
    return table


def confidence_groups(results: list[QuestionResult]) -> dict[str, dict[str, list[float]]]:
    """{language: {"answerable": [...], "unanswerable": [...]}}: the gate's threshold is per language."""
    groups: dict = {}
    for r in results:
        groups.setdefault(r.lang, {}).setdefault("answerable" if r.answerable else "unanswerable", []).append(r.confidence)
    return groups


# --- thresholds ------------------------------------------------------------------------------

def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted names: {"ar": {"answer_accuracy": 1}} -> {"ar.answer_accuracy": 1}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat |= flatten(value, name + ".") if isinstance(value, dict) else {name: value}
    return flat


def check_thresholds(metrics: dict, thresholds: dict) -> list[str]:
    """One line per metric below its floor or above its ``max`` ceiling (or missing from the report).

    A metric that could not be measured (None: no question of that kind) fails only a positive floor.
    """
    values, failures = flatten(metrics), []
    limits = [(name, limit, "floor") for name, limit in flatten({k: v for k, v in thresholds.items() if k != "max"}).items()]
    limits += [(name, limit, "ceiling") for name, limit in flatten(thresholds.get("max", {})).items()]
    for name, limit, kind in limits:
        if name not in values:
            failures.append(f"{name}: no such metric in the report (check the name in the thresholds file)")
        elif values[name] is None:
            if kind == "floor" and limit > 0:
                failures.append(f"{name}: not measured (no questions of that kind), threshold {limit}")
        elif kind == "floor" and values[name] < limit:
            failures.append(f"{name} = {values[name]:.4g} is below its threshold {limit}")
        elif kind == "ceiling" and values[name] > limit:
            failures.append(f"{name} = {values[name]:.4g} is above its ceiling {limit}")
    return failures


# --- entry point -------------------------------------------------------------------------------

def main(args) -> int:
    """Run the suite named by ``args.suite``; 0 when every threshold holds, 1 otherwise."""
    if args.suite == "soak":  # no scores, only checks: eval/soak.py
        from eval.soak import main as run_soak

        return run_soak(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    thresholds_path = Path(getattr(args, "thresholds", None) or THRESHOLDS)
    thresholds = read_thresholds(thresholds_path, args.suite)
    run = {"xquad": run_xquad, "arquad": run_arquad}.get(args.suite, run_seeds)
    if getattr(args, "mode", None) == "llm" or getattr(args, "llm", None):
        if args.suite != "seeds":
            raise ConfigError("--mode llm runs on the seeds suite only (each question is also asked extractively)")
        from eval.llm_mode import llm_config

        local = args.llm_model if getattr(args, "llm", None) == "local" else None
        with llm_config(load_config(), local) as config:
            summary, results, bot = run_seeds(args, out, config)
    else:
        summary, results, bot = run(args, out)
    failures = check_thresholds(summary, thresholds)
    gate = getattr(bot.answerer, "abstain_threshold", None)
    report = {
        "suite": args.suite, "corpus": str(bot.corpus or f"{len(bot.articles)} articles held in memory"),
        "model": bot.config.embed.model,
        "answer_mode": bot.config.answer.mode, "abstain_threshold": gate, "limit": args.limit,
        "thresholds_file": str(thresholds_path), "failures": failures, "metrics": summary,
        "results": [asdict(r) for r in results],
    }
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    markdown = render_markdown(report)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    plot_confidence(confidence_groups(results), gate, out / "confidence.png", f"Sanad {args.suite}: answer confidence")
    print(markdown.split("\n## Questions", 1)[0])  # the tables, not the per-question lists
    print(f"Wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'confidence.png'}")
    for failure in failures:
        print(f"FAIL {failure}")
    if failures and args.limit:
        print(f"(--limit {args.limit}: the thresholds were set on full runs, so a smoke run may miss them by noise)")
    return 1 if failures else 0
