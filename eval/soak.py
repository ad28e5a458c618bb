"""``sanad eval --suite soak``: real text no one here wrote, every question asked, nothing may break.

The corpus is every paragraph of ``../shared/datasets/qa-train/*.json`` and
``../shared/benchmarks/xquad/*.json`` (SQuAD format; a paragraph found in several files is
indexed once), one JSONL record each. Every distinct question of those files is asked with the
default settings. Two checks, and no score: no question raises (a crash, or a `SanadError` on a
well-formed question), and every citation is exact (``article.text[start:end] == quote``).

``--limit N`` asks a fixed sample instead: an even share of N from each file (in the order of
a hash of the question id, so the sample never changes), over only the paragraphs those
questions are about. CI runs ``--limit 300`` (``tests/test_soak.py``); ``make soak`` the full run.
Writes ``soak.json`` (figures and every failure) to ``--out``; exits 1 on any failure.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rag.config import REPO_ROOT
from rag.errors import ConfigError, CorpusError, SanadError

SOURCES = (REPO_ROOT.parent / "shared" / "datasets" / "qa-train", REPO_ROOT.parent / "shared" / "benchmarks" / "xquad")


@dataclass(frozen=True)
class SoakQuestion:
    id: str
    question: str
    file: str  # the SQuAD file it comes from
    paragraph: int  # its paragraph's record number in the corpus file (1-based)


def load(sources=SOURCES) -> tuple[list[dict], list[SoakQuestion]]:
    """(paragraph records, questions), paragraphs deduplicated by text, questions by their text."""
    files = sorted(path for folder in sources for path in Path(folder).glob("*.json"))
    if not files:
        raise CorpusError(f"no SQuAD-format .json files in {', '.join(str(s) for s in sources)}")
    records, numbers, questions, asked = [], {}, [], set()
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))["data"]
        except (OSError, ValueError, KeyError) as exc:
            raise CorpusError(f"{path.name}: not a SQuAD-format file ({exc})") from exc
        for article in data:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                if context not in numbers:
                    records.append({"text": context, "title": article.get("title", ""), "source": path.name})
                    numbers[context] = len(records)
                for qa in paragraph["qas"]:
                    text = qa["question"].strip()
                    if text and text not in asked:
                        asked.add(text)
                        questions.append(SoakQuestion(qa["id"], qa["question"], path.name, numbers[context]))
    return records, questions


def sample(questions: list[SoakQuestion], limit: int | None) -> list[SoakQuestion]:
    """An even share of ``limit`` from each file, in a fixed hash order (all questions when no limit)."""
    if not limit:
        return questions
    files = sorted({q.file for q in questions})
    order = sorted(questions, key=lambda q: hashlib.sha1(f"{q.file}/{q.id}".encode()).hexdigest())
    chosen = []
    for rank, file in enumerate(files):
        share = limit // len(files) + (rank < limit % len(files))
        chosen += [q for q in order if q.file == file][:share]
    return chosen


def write_corpus(records: list[dict], folder: Path) -> Path:
    """The paragraphs as ``soak.jsonl`` (record n is article ``soak.jsonl#n``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "soak.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return folder


def ask_all(bot, questions: list[SoakQuestion], progress: bool = True) -> dict:
    """Ask every question; the figures and each failure (exception or inexact citation)."""
    import numpy as np
    from tqdm import tqdm

    failures, latencies, citations, abstained = [], [], 0, 0
    started = time.perf_counter()
    for q in tqdm(questions, desc="soak", unit="q", file=sys.stderr, disable=not progress):
        asked = time.perf_counter()
        try:
            answer = bot.ask(q.question)
        except Exception as exc:  # noqa: BLE001 - every exception is a finding
            kind = "refused" if isinstance(exc, SanadError) else "crash"
            failures.append({"id": q.id, "file": q.file, "question": q.question, "kind": kind,
                             "error": f"{type(exc).__name__}: {exc}"})
            continue
        latencies.append((time.perf_counter() - asked) * 1000)
        abstained += answer.abstained
        for citation in answer.citations:
            citations += 1
            text = bot.index.article(citation.article_id).text if citation.article_id in bot.index.article_rows else None
            if text is None or text[citation.start:citation.end] != citation.quote:
                failures.append({"id": q.id, "file": q.file, "question": q.question, "kind": "inexact citation",
                                 "error": f"{citation.article_id} [{citation.start}:{citation.end}] != {citation.quote!r}"})
    seconds = time.perf_counter() - started
    return {
        "questions": len(questions), "answered": len(latencies), "abstained": abstained, "citations": citations,
        "crashes": sum(f["kind"] == "crash" for f in failures), "refused": sum(f["kind"] == "refused" for f in failures),
        "inexact_citations": sum(f["kind"] == "inexact citation" for f in failures),
        "seconds": round(seconds, 1), "questions_per_s": round(len(questions) / seconds, 2) if seconds else None,
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
        "failures": failures,
    }


def run(out: Path, limit: int | None = None, config=None, sources=SOURCES, progress: bool = True) -> dict:
    """Build the soak corpus and its index under ``out``, ask, and return the summary."""
    from rag.chatbot import ChatBot

    records, questions = load(sources)
    questions = sample(questions, limit)
    used = sorted({q.paragraph for q in questions})
    renumber = {old: new for new, old in enumerate(used, start=1)}
    questions = [SoakQuestion(q.id, q.question, q.file, renumber[q.paragraph]) for q in questions]
    corpus = write_corpus([records[n - 1] for n in used], out / "soak_corpus")
    started = time.perf_counter()
    bot = ChatBot(corpus=corpus, config=config, index_dir=out / "index-soak", strict=True,
                  progress=_progress() if progress else None)
    index_seconds = time.perf_counter() - started
    summary = {"paragraphs": len(used), "chunks": len(bot.index), "index_seconds": round(index_seconds, 1),
               "limit": limit, **ask_all(bot, questions, progress)}
    return summary


def _progress():
    from rag.cli import _progress_bar

    return _progress_bar()


def main(args) -> int:
    """``sanad eval --suite soak [--limit N] [--out DIR]``: 0 when nothing failed, 1 otherwise."""
    if args.corpus or args.questions:
        raise ConfigError("--corpus and --questions are not for --suite soak: it reads ../shared/datasets/qa-train "
                          "and ../shared/benchmarks/xquad")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run(out, args.limit)
    (out / "soak.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"soak: {summary['questions']:,} questions over {summary['paragraphs']:,} paragraphs "
          f"({summary['chunks']:,} chunks, indexed in {summary['index_seconds']} s); asked in {summary['seconds']} s "
          f"(p50 {summary['latency_p50_ms']:.0f} ms, p95 {summary['latency_p95_ms']:.0f} ms); "
          f"crashes {summary['crashes']}, refused {summary['refused']}, "
          f"inexact citations {summary['inexact_citations']} of {summary['citations']:,}")
    for failure in summary["failures"][:20]:
        print(f"FAIL {failure['kind']}: {failure['file']} {failure['id']} {failure['question']!r}: {failure['error']}")
    print(f"Wrote {out / 'soak.json'}")
    return 1 if summary["failures"] else 0
