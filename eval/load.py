"""``python -m eval.load``: concurrent users of a real ``sanad chat`` server, through `gradio_client`.

Starts ``sanad chat`` as a subprocess on a free port (over ``seeds/`` by default, with its own
cache folder, so the user's index is never touched), then runs ``--users`` users at once, each
with its own client session asking ``--questions`` gold questions (Arabic and English in turn)
through the page's own events, ``/ask`` then ``/answer``. Midway, user 0 uploads an article
(``/upload``), asks about it (the answer must cite it), removes it (``/remove``) and asks again.

Every answer is checked as the page shows it: no error notice, and each source entry's offsets
(``data-article``, ``data-start``, ``data-end``) slice the article's text to the quote shown.
Prints p50/p95 of the question round trip (``/ask`` + ``/answer``) under that load, for each of
``--users`` (e.g. ``--users 1 5 20``: one server, one run after another); exits 1 when any check
fails. ``--concurrency`` sets the server's ``answer.concurrency``. ``tests/test_load.py`` runs it
with 20 users and 5 questions each.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from eval import SEEDS_GOLD
from rag.config import REPO_ROOT, load_config
from ui.format import QUOTE_CHARS, shorten

UPLOAD_NAME = "zz_load_mars_base.md"
UPLOAD_TEXT = ("# قاعدة على المريخ\n\nأعلنت وكالة الفضاء أن قاعدة المريخ الجديدة تضم 42 عالمًا "
               "يعملون في مختبر الجليد منذ الربيع الماضي.\n")
UPLOAD_QUESTION = "كم عالمًا يعمل في قاعدة المريخ؟"
SOURCE = re.compile(r'<li class="sanad-source[^"]*"[^>]*data-article="([^"]*)" data-start="(\d+)" data-end="(\d+)">(.*?)</li>',
                    re.S)
QUOTE = re.compile(r'<blockquote class="sanad-quote"[^>]*>(.*?)</blockquote>', re.S)


@dataclass
class Asked:
    user: int
    question: str
    latency_ms: float
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # article ids cited


def questions_for(users: int, per_user: int) -> list[list[str]]:
    """Gold questions (no follow-ups), Arabic and English alternating within each user's list."""
    gold = [json.loads(line) for line in SEEDS_GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_lang = {lang: [g["question"] for g in gold if g["lang"] == lang and not g.get("follows")] for lang in ("ar", "en")}
    plan, taken = [], {"ar": 0, "en": 0}
    for _ in range(users):
        mine = []
        for k in range(per_user):
            lang = "ar" if k % 2 == 0 else "en"
            mine.append(by_lang[lang][taken[lang] % len(by_lang[lang])])
            taken[lang] += 1
        plan.append(mine)
    return plan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(corpus: Path, workdir: Path, cache_models: Path, timeout_s: float = 300, settings: dict | None = None):
    """``sanad chat`` in a subprocess with a cache of its own and only ``settings`` (``SANAD_*``
    variables) of its own; (process, url, log path) once it serves."""
    cache = workdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "models").exists():
        (cache / "models").symlink_to(cache_models, target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANAD_")}
    env.update(SANAD_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="0",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]), **(settings or {}))
    port = free_port()
    log_path = workdir / "server.log"
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "rag.cli", "chat", "--corpus", str(corpus), "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sanad chat exited with {process.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return process, url, log_path
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"sanad chat did not answer at {url} within {timeout_s:.0f} s")


def check_answer(page: str, texts: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, cited article ids) of the last turn of a transcript, checked against the article texts."""
    turn = page.rsplit('<div class="sanad-turn" data-turn=', 1)[-1]
    problems = []
    if "sanad-error" in turn:
        problems.append("error shown: " + html.unescape(re.sub(r"<[^>]+>", " ", turn))[:300])
    shown_answer = re.sub(r"</?mark[^>]*>", "", turn.split('<div class="sanad-sources', 1)[0])  # the span mark is inline
    answer_text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", shown_answer)).split())
    cited = []
    for article_id, start, end, entry in SOURCE.findall(turn):
        article_id = html.unescape(article_id)
        cited.append(article_id)
        text = texts.get(article_id)
        if text is None:
            problems.append(f"cites {article_id!r}, which is not an article of the corpus")
            continue
        quote = text[int(start):int(end)]
        shown = QUOTE.search(entry)
        if shown is not None:
            if html.unescape(shown.group(1)) != shorten(quote, QUOTE_CHARS):
                problems.append(f"{article_id} [{start}:{end}] is {quote[:80]!r}, the page shows {shown.group(1)[:80]!r}")
        elif not quote.strip() or " ".join(quote.split()) not in answer_text:
            problems.append(f"{article_id} [{start}:{end}] = {quote[:80]!r} is neither shown nor in the answer")
    return problems, cited


def ask(client, question: str) -> tuple[str, float]:
    started = time.perf_counter()
    client.predict(question, api_name="/ask")
    page = client.predict(top_k=5, mode="extractive", show_scores=False, api_name="/answer")
    return page, (time.perf_counter() - started) * 1000


def run_users(url: str, plan: list[list[str]], texts: dict[str, str], upload_path: Path) -> dict:
    """All users at once; the uploader is user 0. The figures and every problem found."""
    from gradio_client import Client, handle_file

    results: list[Asked] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(plan))

    def user(number: int, questions: list[str]) -> None:
        try:
            client = Client(url, verbose=False, download_files=False)
            start.wait(timeout=300)
            for k, question in enumerate(questions):
                page, latency = ask(client, question)
                problems, cited = check_answer(page, texts)
                with lock:
                    results.append(Asked(number, question, latency, problems, cited))
                if number == 0 and k == len(questions) // 2:
                    upload_and_remove(client, number)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            with lock:
                errors.append(f"user {number}: {type(exc).__name__}: {exc}")

    def upload_and_remove(client, number: int) -> None:
        status = client.predict([handle_file(str(upload_path))], api_name="/upload")[0]
        if "is-ok" not in status:
            raise RuntimeError(f"the upload failed: {html.unescape(re.sub(r'<[^>]+>', ' ', status))}")
        with lock:
            texts[f"uploads/{UPLOAD_NAME}"] = UPLOAD_TEXT
        for when, expected in (("after the upload", True), ("after its removal", False)):
            page, latency = ask(client, UPLOAD_QUESTION)
            problems, cited = check_answer(page, texts)
            if (f"uploads/{UPLOAD_NAME}" in cited) != expected:
                problems.append(f"the question {when} {'does not cite' if expected else 'still cites'} the upload")
            with lock:
                results.append(Asked(number, UPLOAD_QUESTION, latency, problems, cited))
            if expected:
                status = client.predict(f"uploads/{UPLOAD_NAME}", api_name="/remove")[0]
                if "is-ok" not in status:
                    raise RuntimeError(f"the removal failed: {html.unescape(re.sub(r'<[^>]+>', ' ', status))}")

    threads = [threading.Thread(target=user, args=(n, qs)) for n, qs in enumerate(plan)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies = sorted(r.latency_ms for r in results)
    problems = errors + [f"user {r.user}, {r.question!r}: {p}" for r in results for p in r.problems]
    return {
        "users": len(plan), "questions": len(results), "wall_s": round(wall, 1),
        "questions_per_s": round(len(results) / wall, 2),
        "latency_p50_ms": round(_percentile(latencies, 50)), "latency_p95_ms": round(_percentile(latencies, 95)),
        "latency_max_ms": round(latencies[-1]) if latencies else None,
        "answers_with_citations": sum(bool(r.sources) for r in results), "problems": problems,
    }


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def run(users: tuple[int, ...] = (20,), per_user: int = 5, corpus: Path | None = None, config=None,
        concurrency: int | None = None) -> dict:
    """Start the server, run each number of users in turn, stop the server; per number of users its
    summary (``runs``), and every problem found."""
    from rag.ingest import scan_corpus

    config = config or load_config()
    corpus = Path(corpus or REPO_ROOT / "seeds")
    texts = {a.id: a.text for a in scan_corpus(corpus).articles}
    with tempfile.TemporaryDirectory(prefix="sanad-load-") as workdir:
        workdir = Path(workdir)
        upload_path = workdir / UPLOAD_NAME
        upload_path.write_text(UPLOAD_TEXT, encoding="utf-8")
        started = time.perf_counter()
        settings = {"SANAD_ANSWER_CONCURRENCY": str(concurrency)} if concurrency else {}
        process, url, log_path = start_server(corpus, workdir, Path(config.cache_dir) / "models", settings=settings)
        try:
            summary = {"server_start_s": round(time.perf_counter() - started, 1), "concurrency": concurrency,
                       "runs": {str(n): run_users(url, questions_for(n, per_user), dict(texts), upload_path) for n in users}}
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        tracebacks = log_path.read_text(errors="replace").count("Traceback")
    summary["server_tracebacks"] = tracebacks
    summary["problems"] = [f"{n} users: {p}" for n, r in summary["runs"].items() for p in r["problems"]]
    if tracebacks:
        summary["problems"].append(f"the server logged {tracebacks} tracebacks")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.load", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[20], help="users at once, one run per number")
    parser.add_argument("--questions", type=int, default=5, help="questions per user")
    parser.add_argument("--corpus", type=Path, default=None, help="folder served (default: seeds/)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="questions the server answers at once (default: answer.concurrency)")
    parser.add_argument("--out", type=Path, default=Path("eval/out/load"))
    args = parser.parse_args(argv)
    summary = run(tuple(args.users), args.questions, args.corpus, concurrency=args.concurrency)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    for r in summary["runs"].values():
        print(f"{r['users']} users, {r['questions']} questions in {r['wall_s']} s ({r['questions_per_s']} questions/s): "
              f"round trip p50 {r['latency_p50_ms']} ms, p95 {r['latency_p95_ms']} ms, max {r['latency_max_ms']} ms; "
              f"{r['answers_with_citations']} answers with citations")
    print(f"problems {len(summary['problems'])}. Wrote {args.out / 'load.json'}")
    for problem in summary["problems"][:20]:
        print(f"FAIL {problem}")
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
