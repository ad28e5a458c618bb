"""``sanad eval --suite soak``: real text no one here wrote, every question asked, nothing may break.

The corpus is every paragraph of ``../shared/datasets/qa-train/*.json`` and
``../shared/benchmarks/xquad/*.json`` (SQuAD format; a paragraph found in several files is
indexed once), one JSONL record each. Every distinct question of those files is asked with the
default settings. Two checks, and no score: no question raises (a crash, or a `SanadError` on a
well-formed question), and every citation is exact (``article.text[start:end] == quote``).

``--limit N`` asks a fixed sample instead: an even share of N from each file (in the order of
a hash of the question id, so the sample never changes), over only the paragraphs those
questions are about. CI runs ``--limit 300`` (``tests/test_soak.py``); ``make soak`` the full run.
Each outcome is appended to ``asked-N.jsonl`` (``asked-all.jsonl``) in ``--out`` as it comes,
so a run that is killed resumes where it stopped when started again with the same ``--out``.
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
from rag.progress import progress_bar

SOURCES = (REPO_ROOT.parent / "shared" / "datasets" / "qa-train", REPO_ROOT.parent / "shared" / "benchmarks" / "xquad")


@dataclass(frozen=True)
class SoakQuestion:
    id: str
    question: str
    file: str  # the SQuAD file it comes from
    paragraph: int  # its paragraph's record number in the corpus file (1-based)

    @property
    def key(self) -> str:
        """Unique over the sources (XQuAD's languages share question ids)."""
        return f"{self.file}/{self.id}"


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
            raise CorpusError(file=path.name, reason=f"not a SQuAD-format file ({exc})") from exc
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
    order = sorted(questions, key=lambda q: hashlib.sha1(q.key.encode()).hexdigest())
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


def setup_key(config, index, embedder) -> str:
    """What decides the answers: the articles, what the index must agree with (embedder, reader,
    chunking) and the retrieval, answer and LLM settings. A journal written under another setup is
    not resumed."""
    import dataclasses

    from rag.indexing import manifest_for

    blob = json.dumps({"articles": sorted(index.article_hashes().items()),
                       "index": manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim),
                       **{name: dataclasses.asdict(getattr(config, name)) for name in ("retrieve", "answer", "llm")}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _journal(text: str, key: str, wanted: set[str]) -> dict[str, dict]:
    """The outcomes a journal's ``text`` records under this setup ``key`` for the questions in
    ``wanted``, by question key. A line cut short by a kill is ignored: that question is asked again."""
    done = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("setup") == key and record.get("key") in wanted:
            done[record["key"]] = record
    return done


def ask_one(bot, q: SoakQuestion) -> dict:
    """One question's outcome: its time, whether it was answered (raised nothing) and abstained, its
    citations, and its failures (an exception, or a citation that does not slice back out of its article)."""
    asked = time.perf_counter()
    try:
        answer = bot.ask(q.question)
    except Exception as exc:  # noqa: BLE001 - every exception is a finding
        kind = "refused" if isinstance(exc, SanadError) else "crash"
        return {"key": q.key, "ms": round((time.perf_counter() - asked) * 1000, 1), "answered": False,
                "abstained": False, "citations": 0,
                "failures": [{"id": q.id, "file": q.file, "question": q.question, "kind": kind,
                              "error": f"{type(exc).__name__}: {exc}"}]}
    ms = (time.perf_counter() - asked) * 1000
    failures = []
    for citation in answer.citations:
        text = bot.index.article(citation.article_id).text if citation.article_id in bot.index else None
        if text is None or text[citation.start:citation.end] != citation.quote:
            failures.append({"id": q.id, "file": q.file, "question": q.question, "kind": "inexact citation",
                             "error": f"{citation.article_id} [{citation.start}:{citation.end}] != {citation.quote!r}"})
    return {"key": q.key, "ms": round(ms, 1), "answered": True, "abstained": bool(answer.abstained),
            "citations": len(answer.citations), "failures": failures}


def ask_all(bot, questions: list[SoakQuestion], journal: Path, progress: bool = True) -> dict:
    """Ask every question not yet in ``journal``, appending each outcome to it as it comes (a killed
    run picks up where it stopped), and sum up every outcome of this question set."""
    import numpy as np
    from tqdm import tqdm

    key = setup_key(bot.config, bot.index, bot.embedder)
    text = journal.read_text(encoding="utf-8") if journal.exists() else ""
    done = _journal(text, key, {q.key for q in questions})
    resumed = len(done)
    with open(journal, "a", encoding="utf-8") as handle:
        if text and not text.endswith("\n"):
            handle.write("\n")  # end the line a kill cut short, so the next record starts its own
        for q in tqdm([q for q in questions if q.key not in done], desc="soak", unit="q", file=sys.stderr,
                      disable=not progress):
            done[q.key] = {"setup": key, **ask_one(bot, q)}
            handle.write(json.dumps(done[q.key], ensure_ascii=False) + "\n")
            handle.flush()
    outcomes = [done[q.key] for q in questions]
    latencies = [o["ms"] for o in outcomes if o["answered"]]
    failures = [f for o in outcomes for f in o["failures"]]
    seconds = sum(o["ms"] for o in outcomes) / 1000  # asking time, summed over the runs that asked
    return {
        "questions": len(questions), "resumed": resumed, "answered": len(latencies),
        "abstained": sum(o["abstained"] for o in outcomes), "citations": sum(o["citations"] for o in outcomes),
        "crashes": sum(f["kind"] == "crash" for f in failures), "refused": sum(f["kind"] == "refused" for f in failures),
        "inexact_citations": sum(f["kind"] == "inexact citation" for f in failures),
        "seconds": round(seconds, 1), "questions_per_s": round(len(questions) / seconds, 2) if seconds else None,
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
        "failures": failures,
    }


def run(out: Path, limit: int | None = None, config=None, sources=SOURCES, progress: bool = True) -> dict:
    """Build the soak corpus and its index under ``out``, ask, and return the summary. Run again with
    the same ``out`` and ``limit`` after a kill, it reopens the index and asks only what is left."""
    from rag.chatbot import ChatBot

    records, questions = load(sources)
    questions = sample(questions, limit)
    used = sorted({q.paragraph for q in questions})
    renumber = {old: new for new, old in enumerate(used, start=1)}
    questions = [SoakQuestion(q.id, q.question, q.file, renumber[q.paragraph]) for q in questions]
    corpus = write_corpus([records[n - 1] for n in used], out / "soak_corpus")
    started = time.perf_counter()
    bot = ChatBot(corpus=corpus, config=config, index_dir=out / "index-soak", strict=True,
                  progress=progress_bar() if progress else None)
    index_seconds = time.perf_counter() - started
    journal = out / f"asked-{limit or 'all'}.jsonl"
    summary = {"paragraphs": len(used), "chunks": len(bot.index), "index_seconds": round(index_seconds, 1),
               "limit": limit, "journal": str(journal), **ask_all(bot, questions, journal, progress)}
    return summary


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
          f"({summary['resumed']:,} of them in earlier runs) "
          f"(p50 {summary['latency_p50_ms']:.0f} ms, p95 {summary['latency_p95_ms']:.0f} ms); "
          f"crashes {summary['crashes']}, refused {summary['refused']}, "
          f"inexact citations {summary['inexact_citations']} of {summary['citations']:,}")
    for failure in summary["failures"][:20]:
        print(f"FAIL {failure['kind']}: {failure['file']} {failure['id']} {failure['question']!r}: {failure['error']}")
    print(f"Wrote {out / 'soak.json'}")
    return 1 if summary["failures"] else 0
