"""The reader's share of a question, per precision: ``sanad bench --only precision``.

For float32, bfloat16 and int8 in turn, a fresh worker process answers the seed questions and times,
in the same process and round: embedding the question alone (the floor), the reader's forward pass
alone (the question's windows encoded beforehand), and the whole ``ask``. It also records each
answer, so the report says how many answers a precision changes against float32.

For the default precision the worker also times the same reader passes three ways, to choose how
the chat server shares the CPU between users: one question at a time, two questions at once on two
threads, and the windows of several questions in one batched pass.
"""
from __future__ import annotations

import statistics
import threading

import numpy as np

from eval.bench_common import percentile, spread, timed

PRECISIONS = ("float32", "bfloat16", "int8")
GATHERED = 6  # questions whose windows share one batched pass


def worker_precision(args: dict) -> dict:
    """Warm timings of one precision (``args["precision"]``) over ``args["rounds"]`` rounds of questions."""
    from rag.chatbot import ChatBot
    from rag.config import load_config
    from rag.reader import resolve_precision

    config = load_config().replace(answer={"precision": args["precision"]})
    bot = ChatBot(corpus=args["corpus"], config=config, index_dir=args["index_dir"])
    reader, questions = bot.answerer.reader, args["questions"]
    for question in questions[:3]:  # warm-up: first calls load lazily
        bot.ask(question)
    windows = [reader.windows(question, bot.retrieve(question)) for question in questions]
    rounds = []
    for _ in range(args["rounds"]):
        floor, forward, ask = [], [], []
        for question, question_windows in zip(questions, windows):
            floor.append(timed(bot.embedder.encode_queries, [question]))
            forward.append(timed(reader.forward, question_windows))
            ask.append(timed(bot.ask, question))
        ms = lambda values, q: 1000 * percentile(values, q)  # noqa: E731
        rounds.append({"floor_p50": ms(floor, 50), "forward_p50": ms(forward, 50), "ask_p50": ms(ask, 50),
                       "ask_p95": ms(ask, 95), "ask_over_floor": statistics.median(ask) / statistics.median(floor)})
    default = resolve_precision("auto") == resolve_precision(args["precision"])
    result = {"default": default, "rounds": rounds,
              "tokens_per_question": float(np.median([sum(len(w.input_ids) for w in ws) for ws in windows])),
              "windows_per_question": float(np.median([len(ws) for ws in windows])),
              "answers": [bot.ask(question).text for question in questions]}
    if default:
        result["passes_s"] = reader_passes(reader, windows)
        result["adaptive"] = adaptive_reading(bot, questions, args["rounds"])
    return result


def adaptive_reading(bot, questions: list[str], rounds: int) -> dict | None:
    """What adaptive reading (`rag.chatbot.ChatBot.read`) did on these questions: the share that stopped
    after the first chunks, chunks read per question, ask p50 with and without it (same process, same
    rounds), and answers that differ from reading every retrieved chunk. None for a reader without a cascade."""
    from rag.chatbot import ChatBot

    if not bot.config.answer.adaptive or bot.reader.settings.cascade is None:
        return None
    every = ChatBot(corpus=bot.corpus, config=bot.config.replace(answer={"adaptive": False}), index_dir=bot.index_dir)
    read = [len(bot.read(q, q, bot.retrieve(q)[:bot.config.answer.read_k])) for q in questions]
    adaptive, all_chunks = [], []
    for _ in range(rounds):
        for question in questions:
            adaptive.append(timed(bot.ask, question))
            all_chunks.append(timed(every.ask, question))
    return {"stopped_early": sum(n < bot.config.answer.read_k for n in read) / len(read),
            "chunks_read": float(np.mean(read)), "cascade": vars(bot.reader.settings.cascade),
            "ask_p50_ms": 1000 * percentile(adaptive, 50), "ask_p50_ms_every_chunk": 1000 * percentile(all_chunks, 50),
            "answers_changed": sum(bot.ask(q).text != every.ask(q).text for q in questions)}


def reader_passes(reader, windows: list) -> dict:
    """Seconds for every question's reader pass: one at a time, two at once, `GATHERED` per batched pass."""
    def one_at_a_time():
        for question_windows in windows:
            reader.forward(question_windows)

    def two_at_once():
        threads = [threading.Thread(target=lambda half=half: [reader.forward(w) for w in windows[half::2]]) for half in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def gathered():
        for at in range(0, len(windows), GATHERED):
            reader.forward([w for question_windows in windows[at:at + GATHERED] for w in question_windows])

    return {name: timed(run) for name, run in (("one_at_a_time", one_at_a_time), ("two_at_once", two_at_once),
                                                ("gathered", gathered))}


def summarize(results: dict[str, dict]) -> dict:
    """Per precision: the figures' spread over rounds, and answers that differ from float32's."""
    reference = results.get("float32", {}).get("answers")
    summary = {}
    for name, result in results.items():
        rounds = result["rounds"]
        summary[name] = {"figures_ms": {key: spread([r[key] for r in rounds]) for key in rounds[0]},
                         "tokens_per_question": result["tokens_per_question"],
                         "windows_per_question": result["windows_per_question"],
                         "answers_changed": (sum(a != b for a, b in zip(result["answers"], reference))
                                             if reference and name != "float32" else None),
                         "questions": len(result["answers"]), "default": result["default"],
                         "passes_s": result.get("passes_s"), "adaptive": result.get("adaptive")}
    return summary


def render(section: dict, cell) -> list[str]:
    """The markdown lines of the section."""
    lines = ["", "## The reader's share, per precision (seed questions, warm)", "",
             "Floor: embedding the question alone; forward: the reader's pass over the question's windows alone; "
             "answers changed: against float32, same questions.", "",
             "| precision | floor p50 ms | reader forward p50 ms | ask p50 ms | ask p95 ms | ask / floor | answers changed |",
             "|---|---|---|---|---|---|---|"]
    for name, p in section.items():
        f = p["figures_ms"]
        changed = "—" if p["answers_changed"] is None else f"{p['answers_changed']}/{p['questions']}"
        lines.append(f"| {name}{' (default here)' if p['default'] else ''} | {cell(f['floor_p50'])} | {cell(f['forward_p50'])} | {cell(f['ask_p50'])} | "
                     f"{cell(f['ask_p95'])} | {cell(f['ask_over_floor'], 2)} | {changed} |")
    default = next((p for p in section.values() if p.get("passes_s")), None)
    if default:
        first = next(iter(section.values()))
        s = default["passes_s"]
        lines += ["", f"Reader passes for {default['questions']} questions ({first['windows_per_question']:.0f} windows, "
                  f"{first['tokens_per_question']:.0f} tokens each, median), default precision: one at a time "
                  f"{s['one_at_a_time']:.2f} s, two at once {s['two_at_once']:.2f} s, {GATHERED} questions per batched "
                  f"pass {s['gathered']:.2f} s."]
    adaptive = default and default.get("adaptive")
    if adaptive:
        lines += ["", f"Adaptive reading ({adaptive['cascade']}): {adaptive['stopped_early']:.0%} of the questions stopped "
                  f"early, {adaptive['chunks_read']:.2f} chunks read per question; ask p50 {adaptive['ask_p50_ms']:.0f} ms, "
                  f"{adaptive['ask_p50_ms_every_chunk']:.0f} ms reading every chunk; answers changed "
                  f"{adaptive['answers_changed']}/{default['questions']}."]
    return lines
