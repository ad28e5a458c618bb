"""``sanad bench`` sections on one seed-corpus process: warm query latency and where it goes, the
reader per precision (`eval.bench_reader`), cold start, and peak memory."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eval import bench_reader
from eval.bench_common import (Plan, config_for, peak_rss_mib, percentile, questions_seeds, run_worker, spread,
                               timed)
from rag.config import DEFAULT_CORPUS


def worker_query(args: dict) -> dict:
    """Warm latency of ``ChatBot.ask`` next to embedding the question alone, per round."""
    from rag.chatbot import ChatBot

    bot = ChatBot(corpus=args["corpus"], config=config_for(args["store"]), index_dir=args["index_dir"])
    questions = args["questions"]
    for question in questions[:3]:  # warm-up: first calls load lazily
        bot.ask(question)
    rounds = [query_round(bot, questions) for _ in range(args["rounds"])]
    result = {"chunks": len(bot.index), "rounds": rounds, "peak_rss_mib": peak_rss_mib()}
    if args.get("profile"):
        result["profile"] = profile_asks(bot, questions, Path(args["profile"]))
    if args.get("recall"):
        result["recall"] = recall(bot, questions)
    return result


def query_round(bot, questions: list[str]) -> dict:
    """One pass over the questions: the whole ask, and its parts measured alone in the same process:
    embedding the question (the floor), retrieval, the reader's forward pass, the rest of the answer."""
    ask, floor, retrieve, reader, answer = [], [], [], [], []
    for question in questions:
        ask.append(timed(bot.ask, question))
        floor.append(timed(bot.embedder.encode_queries, [question]))
        vector = bot.embedder.encode_queries([question])[0]
        start = time.perf_counter()
        hits = bot.retrieve(question, query_vector=vector)
        retrieve.append(time.perf_counter() - start)
        reader.append(timed(bot.answerer.reader.read, question, hits))
        answer.append(timed(bot.answerer.extract, question, hits, bot.index))
    ms = lambda values, q: 1000 * percentile(values, q)  # noqa: E731
    return {"ask_p50": ms(ask, 50), "ask_p95": ms(ask, 95), "floor_p50": ms(floor, 50), "floor_p95": ms(floor, 95),
            "retrieve_p50": ms(retrieve, 50), "reader_p50": ms(reader, 50), "reader_p95": ms(reader, 95),
            "answer_p50": ms(answer, 50)}


def profile_asks(bot, questions: list[str], path: Path) -> list[dict]:
    """cProfile of one pass of asks: the full listing to ``path``, the top functions returned."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(lambda: [bot.ask(q) for q in questions])
    listing = io.StringIO()
    pstats.Stats(profiler, stream=listing).sort_stats("cumulative").print_stats(60)
    path.write_text(listing.getvalue(), encoding="utf-8")
    per_ask = 1000 / len(questions)
    rows = [{"function": f"{Path(file).stem}.{function}", "calls_per_ask": calls * per_ask / 1000,
             "cumulative_ms_per_ask": cumulative * per_ask, "self_ms_per_ask": own * per_ask}
            for (file, _, function), (_, calls, own, cumulative, _) in pstats.Stats(profiler).stats.items()
            if f"{os.sep}rag{os.sep}" in file]
    return sorted(rows, key=lambda r: -r["cumulative_ms_per_ask"])[:20]


def recall(bot, questions: list[str]) -> dict:
    """Recall@k of the approximate FAISS index against exact inner-product search."""
    vectors = bot.embedder.encode_queries(questions)
    result = {}
    for k in (10, 30):
        exact = bot.index.exact_search(vectors, k)
        found = [len(set(bot.index.search(v, k).rows.tolist()) & set(row.tolist())) / k for v, row in zip(vectors, exact)]
        result[f"recall@{k}"] = float(np.mean(found))
    return result


def worker_memory(args: dict) -> dict:
    """Peak RSS of a chat process (``chat``) or of the model alone (``model``)."""
    if args["mode"] == "model":
        from rag.embeddings import Embedder

        config = config_for()
        Embedder(config.embed, config.cache_dir).encode_queries(args["questions"][:1])
    else:
        from rag.chatbot import ChatBot

        bot = ChatBot(corpus=args["corpus"], config=config_for(), index_dir=args["index_dir"])
        for question in args["questions"]:
            bot.ask(question)
    return {"peak_rss_mib": peak_rss_mib()}


def bench_query(plan: Plan, work: Path, env: dict, out: Path) -> dict:
    args = {"corpus": str(DEFAULT_CORPUS), "index_dir": str(work / "seeds-index"), "store": "flat",
            "questions": questions_seeds(plan.questions), "rounds": plan.rounds, "profile": str(out / "profile_seeds.txt")}
    result = run_worker("query", args, env)
    return summarize_query(result)


def summarize_query(result: dict) -> dict:
    rounds = result["rounds"]
    figures = {key: spread([r[key] for r in rounds]) for key in rounds[0]}
    return {"chunks": result["chunks"], "figures_ms": figures, "peak_rss_mib": result["peak_rss_mib"],
            "profile": result.get("profile"), "recall": result.get("recall")}


def bench_cold_start(plan: Plan, work: Path, env: dict) -> dict:
    question = questions_seeds(1)[0]
    script = Path(sys.executable).parent / "sanad"
    sanad = [str(script)] if script.exists() else [sys.executable, "-m", "rag.cli"]
    commands = {"sanad_ask": sanad + ["ask", question, "--corpus", str(DEFAULT_CORPUS)],
                "import_sentence_transformers": [sys.executable, "-c", "import sentence_transformers"]}
    subprocess.run(sanad + ["index", str(DEFAULT_CORPUS)], env=env, check=True, capture_output=True)
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(plan.cold_runs + 1):  # run 0 warms the OS file cache and is not counted
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            if run:
                seconds[name].append(time.perf_counter() - start)
    return {"seconds": {name: spread(values) for name, values in seconds.items()},
            "ratio": spread([a / b for a, b in zip(seconds["sanad_ask"], seconds["import_sentence_transformers"])]),
            "phases": run_worker("phases", {"question": question}, env)}


def worker_phases(args: dict) -> dict:
    """Where a cold ``sanad ask`` spends its time, phase by phase, in one fresh process."""
    marks, start = {}, time.perf_counter()

    def mark(name):
        nonlocal start
        marks[name] = time.perf_counter() - start
        start = time.perf_counter()

    from rag.chatbot import ChatBot
    from rag.embeddings import Embedder
    mark("import rag")
    import sentence_transformers  # noqa: F401  (what Embedder imports first)
    mark("import torch + sentence_transformers")
    config = config_for()
    Embedder(config.embed, config.cache_dir)
    mark("load model (tokenizer, weights)")
    bot = ChatBot(config=config)
    mark("open index (faiss, BM25, articles)")
    bot.ask(args["question"])
    mark("first ask")
    bot.ask(args["question"])
    mark("second ask")
    return marks


def bench_precision(plan: Plan, work: Path, env: dict) -> dict:
    args = {"corpus": str(DEFAULT_CORPUS), "index_dir": str(work / "seeds-index"),
            "questions": questions_seeds(plan.questions), "rounds": plan.rounds}
    results = {name: run_worker("precision", {**args, "precision": name}, env) for name in bench_reader.PRECISIONS}
    return bench_reader.summarize(results)


def bench_memory(plan: Plan, work: Path, env: dict) -> dict:
    args = {"corpus": str(DEFAULT_CORPUS), "index_dir": str(work / "seeds-index"), "questions": questions_seeds(5)}
    return {mode: spread([run_worker("memory", {**args, "mode": mode}, env)["peak_rss_mib"]
                          for _ in range(plan.memory_runs)]) for mode in ("chat", "model")}
