"""The ``sanad`` command: index, remove, ask, chat, llm-server, eval, bench.

Every `SanadError` is printed as one line on stderr with exit code 2; heavy
modules are imported inside the subcommand that needs them, so ``sanad ask``
starts quickly.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.errors import SanadError
from rag.progress import progress_bar


def cmd_index(args) -> int:
    from rag.chatbot import ChatBot

    hooks = {}
    if args.ray is not None:
        from rag.config import load_config
        from rag.ray_index import RayIndexer

        indexer = RayIndexer(load_config(), address=None if args.ray == "local" else args.ray)
        hooks = {"read": indexer.read, "prepare": indexer.prepare}
    bot = ChatBot(corpus=args.corpus, progress=progress_bar(), strict=args.strict, **hooks)
    report = bot.last_update
    count = len(report.skipped)
    skipped = f", skipped {count} file{'s' if count != 1 else ''}" if count else ""
    print(f"Index ready at {bot.index_dir}: {len(bot.articles)} articles, {len(bot.index)} chunks "
          f"(added {report.added}, changed {report.changed}, removed {report.removed}, unchanged {report.unchanged}"
          f"{skipped}).")
    for file, reason in report.skipped:  # one line per file left out
        print(f"skipped {file}: {reason}")
    return 0


def cmd_remove(args) -> int:
    from rag.chatbot import ChatBot

    bot = ChatBot(corpus=args.corpus, progress=progress_bar())
    report = bot.remove(args.article_id)
    print(f"Removed {args.article_id}: {report.removed} articles left the index; {len(bot.articles)} articles, "
          f"{len(bot.index)} chunks remain.")
    return 0


def cmd_ask(args) -> int:
    from rag.chatbot import ChatBot, check_question
    from rag.config import load_config

    check_question(args.question, load_config().answer.max_question_chars)  # before the model loads
    bot = ChatBot(corpus=args.corpus, progress=progress_bar())
    if bot.last_update.skipped:
        print(f"sanad: {len(bot.last_update.skipped)} files of the corpus could not be read and were skipped; "
              f"`sanad index` lists them", file=sys.stderr)
    answer = bot.ask(args.question)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(answer.text)
    if answer.citations:
        print()
    for citation in answer.citations:
        label = "related" if citation.related else f"[{citation.n}]"
        print(f"{label} {citation.source} ({citation.start}-{citation.end}): {citation.quote}")
    return 0


def cmd_chat(args) -> int:
    from rag.config import load_config
    from ui.app import launch

    config = load_config()
    if args.llm != "local":
        launch(corpus=args.corpus, host=args.host, port=args.port, share=args.share, config=config)
        return 0
    from rag.local_llm import serving

    print(f"sanad: starting the local LLM server ({args.llm_model})…", file=sys.stderr)
    with serving(config, args.llm_model) as llm_config:
        launch(corpus=args.corpus, host=args.host, port=args.port, share=args.share, config=llm_config)
    return 0


def cmd_llm_server(args) -> int:
    from rag.config import load_config
    from rag.local_llm import model_named, serve

    with serve(model_named(args.llm_model), load_config().cache_dir, port=args.port) as server:
        print(f"Serving {server.model} at {server.base_url} (log: {server.log_path}); for Sanad:\n"
              f"  SANAD_LLM_BASE_URL={server.base_url} SANAD_LLM_MODEL={server.model} sanad chat\nCtrl-C stops it.")
        server.process.wait()
    return 0


def _llm_arguments(parser, local: bool = True) -> None:
    from rag.local_llm import DEFAULT_LOCAL_MODEL, MODELS

    if local:
        parser.add_argument("--llm", choices=("local",), default=None,
                            help="start Sanad's local LLM server (pip install -e '.[llm-local]') and answer in LLM mode")
    parser.add_argument("--llm-model", choices=tuple(MODELS), default=DEFAULT_LOCAL_MODEL, help="the local model")


def cmd_eval(args) -> int:
    from eval.run import main as run_eval

    return run_eval(args)


def cmd_bench(args) -> int:
    from eval.bench import main as run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sanad", description="Grounded answers from Arabic news articles.")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="build or update the index of a folder of articles")
    index.add_argument("corpus", nargs="?", type=Path, default=None, help="folder of articles (default: seeds/)")
    index.add_argument("--strict", action="store_true",
                       help="stop at the first unreadable file instead of skipping it (all or nothing)")
    index.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="read, chunk and embed on Ray Data: a local Ray, or the cluster at ADDRESS")
    index.set_defaults(run=cmd_index)

    remove = commands.add_parser("remove", help="remove an uploaded article from the index")
    remove.add_argument("article_id", help="its id as listed by the chat's corpus panel, e.g. uploads/news.txt")
    remove.add_argument("--corpus", type=Path, default=None)
    remove.set_defaults(run=cmd_remove)

    ask = commands.add_parser("ask", help="answer one question with citations")
    ask.add_argument("question")
    ask.add_argument("--corpus", type=Path, default=None)
    ask.add_argument("--json", action="store_true", help="print the Answer as JSON")
    ask.set_defaults(run=cmd_ask)

    chat = commands.add_parser("chat", help="start the Gradio chat")
    chat.add_argument("--corpus", type=Path, default=None)
    chat.add_argument("--host", default="127.0.0.1")
    chat.add_argument("--port", type=int, default=7860)
    chat.add_argument("--share", action="store_true", help="also open a public Gradio link")
    _llm_arguments(chat)
    chat.set_defaults(run=cmd_chat)

    server = commands.add_parser("llm-server", help="serve a local LLM from its PyPI parts (OpenAI-compatible)")
    server.add_argument("--port", type=int, default=8008)
    _llm_arguments(server, local=False)
    server.set_defaults(run=cmd_llm_server)

    evaluate = commands.add_parser("eval", help="measure grounding, accuracy and abstention")
    evaluate.add_argument("--suite", choices=("seeds", "xquad", "arquad", "soak"), default="seeds")
    evaluate.add_argument("--corpus", type=Path, default=None)
    evaluate.add_argument("--questions", type=Path, default=None)
    evaluate.add_argument("--xquad", type=Path, default=None, help="folder with xquad.ar.json and xquad.en.json")
    evaluate.add_argument("--arquad", type=Path, default=None, help="folder with ArQuAD-dev.csv and skip-ids.txt")
    evaluate.add_argument("--out", type=Path, default=Path("eval/out"))
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N questions (smoke runs)")
    evaluate.add_argument("--every", type=int, default=None, metavar="K",
                          help="seeds: every K-th question (and those it follows), spread over the file (slow modes)")
    evaluate.add_argument("--thresholds", type=Path, default=None, help="TOML of minimum scores (default: eval/thresholds.toml)")
    evaluate.add_argument("--mode", choices=("extractive", "llm"), default=None,
                          help="llm: answer through an LLM server (seeds suite), each question also asked extractively")
    _llm_arguments(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    bench = commands.add_parser("bench", help="latency, throughput, cold start and scale figures")
    bench.add_argument("--out", type=Path, default=Path("bench/out"))
    bench.add_argument("--smoke", action="store_true", help="a tiny, quick version for CI")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--only", nargs="+", default=None, metavar="SECTION",
                       help="run only these sections (update, query, precision, ingestion, cold_start, scale, memory)")
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SanadError as exc:
        print(f"sanad: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
