"""``python -m eval.faults``: kill -9 ``sanad index`` while it indexes a folder, and check the index.

A folder of generated articles (built from the seed sentences) is indexed once (the *old*
version); then some articles are changed, added and deleted, and ``sanad index`` is started
as a subprocess and killed with SIGKILL at a point chosen per trial: while it starts, while it
embeds (its progress bar is on stderr), as soon as it writes a temporary version folder, as
soon as ``current`` points at the new version (before the old one is pruned), or after a
random delay. After each kill:

- the index opens, and its manifest is exactly the old version's or the new one's;
- the next open (an in-process `update_index`) removes every leftover (``.tmp-*``, ``.link-*``,
  ``v-*`` folders that are not current, segments and tables the current manifest does not name)
  and completes the new version;
- a search runs on the result.

Prints one line per trial and a summary; exits 1 when a check fails. ``tests/test_faults.py``
runs a reduced form (fewer trials, a smaller folder).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.config import REPO_ROOT, load_config

KINDS = ("starting", "embedding", "writing", "switched", "random")


@dataclass(frozen=True)
class Trial:
    number: int
    kind: str  # where the kill was aimed: one of KINDS
    killed_after_s: float
    finished_first: bool  # the run ended before the kill came (then there is nothing to check but the result)
    reopened_as: str  # "old" or "new": what the index was after the kill
    leftovers: tuple[str, ...]  # temporary entries found after the kill (removed by the next open)
    rerun: str  # the rerun's report


def seed_sentences() -> list[str]:
    from rag.arabic import split_sentences
    from rag.ingest import read_corpus

    return [a.text[s:e] for a in read_corpus(REPO_ROOT / "seeds") for s, e in split_sentences(a.text)]


def write_articles(folder: Path, numbers, sentences: list[str], edition: int = 0) -> None:
    """One small article per number, three seed sentences each; ``edition`` changes the text."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        body = " ".join(sentences[(n * k + edition) % len(sentences)] for k in (1, 7, 13))
        (folder / f"article-{n:05d}.txt").write_text(f"خبر رقم {n}\n{body}\nطبعة {edition}.\n", encoding="utf-8")


def make_new_version(folder: Path, articles: int, sentences: list[str]) -> None:
    """Change a tenth of the articles, delete a twentieth, add a tenth more."""
    step = 10
    write_articles(folder, range(0, articles, step), sentences, edition=1)
    for n in range(5, articles, 20):
        (folder / f"article-{n:05d}.txt").unlink()
    write_articles(folder, range(articles, articles + max(1, articles // step)), sentences)


def leftovers(index_dir: Path) -> tuple[str, ...]:
    """Temporary entries, versions other than the current one, and segments and tables it does not name."""
    current = os.readlink(index_dir / "current") if (index_dir / "current").is_symlink() else None
    found = [entry.name for entry in index_dir.iterdir()
             if entry.name.startswith((".tmp-", ".link-")) or (entry.name.startswith("v-") and entry.name != current)]
    manifest = json.loads((index_dir / current / "manifest.json").read_text(encoding="utf-8")) if current else {}
    named = {"segments": {entry["name"] for entry in manifest.get("segments", [])},
             "tables": {entry["dead"] for entry in manifest.get("segments", []) if entry.get("dead")}
             | {part["name"] for part in manifest.get("files", [])}}
    for folder, names in named.items():
        if (index_dir / folder).is_dir():
            found += [f"{folder}/{entry.name}" for entry in (index_dir / folder).iterdir() if entry.name not in names]
    return tuple(sorted(found))


def kill_during(command: list[str], env: dict, index_dir: Path, kind: str, delay: float) -> tuple[float, bool]:
    """Start ``command``, SIGKILL it at the point ``kind`` names (plus ``delay`` s); (seconds, finished)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    embedding = threading.Event()

    def watch_stderr():
        tail = b""
        for piece in iter(lambda: process.stderr.read(64), b""):
            tail = (tail + piece)[-128:]
            if b"embedding" in tail:
                embedding.set()

    threading.Thread(target=watch_stderr, daemon=True).start()
    armed_at = started if kind in ("starting", "random") else None
    before = os.readlink(index_dir / "current")
    while process.poll() is None:
        if armed_at is None and ((kind == "embedding" and embedding.is_set()) or
                                 (kind == "writing" and any(p.name.startswith(".tmp-") for p in index_dir.iterdir())) or
                                 (kind == "switched" and os.readlink(index_dir / "current") != before)):
            armed_at = time.monotonic()
        if armed_at is not None and time.monotonic() - armed_at >= delay:
            process.kill()
            break
        time.sleep(0.0005 if kind in ("writing", "switched") else 0.01)
    finished = process.wait() == 0
    return time.monotonic() - started, finished


def run_trials(trials: int, articles: int, workdir: Path, embedder, config, seed: int = 11,
               log=print) -> list[Trial]:
    """The kill trials on a folder of ``articles`` articles; raises AssertionError on a broken index."""
    from rag.chatbot import default_index_dir
    from rag.hashing import content_hash
    from rag.indexing import manifest_for, update_index
    from rag.ingest import read_corpus
    from rag.store import open_index

    rng = random.Random(seed)
    sentences = seed_sentences()
    corpus, cache = workdir / "corpus", workdir / "cache"
    (cache / "models").parent.mkdir(parents=True, exist_ok=True)
    if not (cache / "models").exists():
        (cache / "models").symlink_to(Path(config.cache_dir) / "models", target_is_directory=True)
    shutil.rmtree(corpus, ignore_errors=True)
    write_articles(corpus, range(articles), sentences)
    run_config = config.replace(cache_dir=cache)
    index_dir = default_index_dir(run_config, corpus)  # where `sanad index corpus` writes
    shutil.rmtree(index_dir, ignore_errors=True)
    old_articles = read_corpus(corpus)
    update_index(index_dir, old_articles, embedder, run_config)
    pristine = workdir / "old-index"
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(index_dir, pristine, symlinks=True)
    make_new_version(corpus, articles, sentences)
    new_articles = read_corpus(corpus)
    versions = {"old": {a.id: content_hash(a) for a in old_articles}, "new": {a.id: content_hash(a) for a in new_articles}}
    expected = manifest_for(run_config, embedder.model_id, embedder.fingerprint, embedder.dim)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANAD_")}
    env.update(SANAD_CACHE_DIR=str(cache), PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, "-m", "rag.cli", "index", str(corpus)]
    results = []
    for number in range(trials):
        shutil.rmtree(index_dir)
        shutil.copytree(pristine, index_dir, symlinks=True)
        kind = KINDS[number % len(KINDS)]
        delay = {"starting": rng.uniform(0.2, 3.0), "embedding": rng.uniform(0.0, 1.5), "writing": 0.0,
                 "switched": 0.0, "random": rng.uniform(0.5, 20.0)}[kind]
        seconds, finished = kill_during(command, env, index_dir, kind, delay)
        index = open_index(index_dir, expected)  # raises StoreError if the kill broke it
        state = next((name for name, hashes in versions.items() if index.article_hashes() == hashes), None)
        assert state is not None, f"trial {number}: the index is neither the old nor the new version"
        assert len(index.articles) == len(versions[state]) and len(index) == index.manifest["chunks"]
        found = leftovers(index_dir)
        index, report = update_index(index_dir, new_articles, embedder, run_config)
        assert index.article_hashes() == versions["new"], f"trial {number}: the rerun did not complete"
        assert leftovers(index_dir) == (), f"trial {number}: leftovers after the next open: {leftovers(index_dir)}"
        assert len(index.search(embedder.encode_queries(["كورسك"])[0], 3)) == 3
        trial = Trial(number, kind, round(seconds, 2), finished, state, found,
                      f"added {report.added}, changed {report.changed}, removed {report.removed}")
        log(f"trial {number}: killed {kind} after {seconds:.1f} s{' (it had finished)' if finished else ''}; "
            f"reopened as the {state} version; leftovers {list(found) or 'none'}; rerun {trial.rerun}")
        results.append(trial)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--articles", type=int, default=400, help="articles in the folder being indexed")
    parser.add_argument("--out", type=Path, default=Path("eval/out/faults"))
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    from rag.embeddings import Embedder

    config = load_config()
    embedder = Embedder(config.embed, config.cache_dir)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sanad-faults-") as workdir:
        try:
            trials = run_trials(args.trials, args.articles, Path(workdir), embedder, config, args.seed)
        except AssertionError as exc:
            print(f"FAIL {exc}")
            return 1
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"trials": len(trials), "articles": args.articles, "seconds": round(time.monotonic() - started, 1),
               "reopened_old": sum(t.reopened_as == "old" for t in trials),
               "reopened_new": sum(t.reopened_as == "new" for t in trials),
               "with_leftovers": sum(bool(t.leftovers) for t in trials), "broken": 0,
               "results": [asdict(t) for t in trials]}
    (args.out / "faults.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    finished = sum(t.finished_first for t in trials)
    print(f"{summary['trials']} trials ({summary['trials'] - finished} killed mid-run, {finished} finished before the kill): "
          f"reopened as the old version {summary['reopened_old']}, the new "
          f"{summary['reopened_new']}, broken 0; leftovers removed on the next open in {summary['with_leftovers']}; "
          f"every rerun completed ({summary['seconds']} s). Wrote {args.out / 'faults.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
