"""``python -m eval.update_before --checkout DIR``: the update section's upload timings on another
checkout of Sanad (e.g. the code before the store made uploads cost what they change), for comparison.

It uses what `sanad bench --only update` left in ``--work`` (the tiny model, the synthetic corpus
folders, the 5 uploads) and only `ChatBot` calls that older code has: the older code builds its own
index of each folder (with the tiny model, minutes for 200,000 articles), then uploads the 5 files
and removes them, 5 times. Prints one JSON line per corpus size, in seconds (medians)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag.config import REPO_ROOT


def measure(work: Path, count: int, rounds: int) -> dict:
    """Run inside the other checkout (its `rag` first on the path)."""
    from rag.chatbot import UPLOADS, ChatBot
    from rag.config import load_config

    folder = sorted(work.glob(f"synthetic-flat-*-{count * 4}/corpus"))[0]  # the tiny and the real model's hold the same texts
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        shutil.copytree(folder, copy / "corpus", copy_function=os.link)
        config = load_config().replace(store={"index": "flat"}, embed={"model": str(work / "tiny-model")})
        bot = ChatBot(copy / "corpus", config, index_dir=copy / "index")
        paths = sorted((work / "update-new").glob("*.txt"))
        add, remove = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            bot.add_files(paths)
            add.append(time.perf_counter() - start)
            for path in paths:
                start = time.perf_counter()
                bot.remove(f"{UPLOADS}/{path.name}")
                remove.append(time.perf_counter() - start)
        return {"articles": count, "segments": len(bot.index.segments), "add_files_s": statistics.median(add),
                "remove_s": statistics.median(remove)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.update_before", description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", type=Path, required=True, help="the other checkout's root folder")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench" / "out" / "work")
    parser.add_argument("--articles", type=int, nargs="+", default=[2_000, 20_000, 200_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(args.checkout.resolve()), "SANAD_CACHE_DIR": str(args.work / "cache")}
    for count in args.articles:
        code = (f"import json, runpy, sys; from pathlib import Path; sys.path.insert(0, {str(args.checkout.resolve())!r}); "
                f"measure = runpy.run_path({__file__!r})['measure']; "
                f"print(json.dumps(measure(Path({str(args.work.resolve())!r}), {count}, {args.rounds})))")
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=args.checkout, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        print(done.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
