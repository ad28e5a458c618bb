"""``sanad bench`` section "update": what a small change costs as the corpus grows.

For each model (a tiny random one, so that the store's own work shows, and the real one) and each
corpus size, a chat process opens a synthetic corpus folder and its index (flat FAISS, the default
settings), then, a few times over: uploads 5 articles (``ChatBot.add_files``), removes them one by
one (``ChatBot.remove``), and adds a file of 5 articles to the corpus folder and updates as
``sanad index`` does (scan the folder, then `update_index`), then deletes it and updates again.
Every round starts from the same index, so merges come out the same way in each."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from eval.bench_common import Plan, config_for, run_worker, say, spread
from eval.bench_scale import CHUNKS_PER_ARTICLE, synthetic_articles, synthetic_corpus

TINY_WIDTH = 32  # the tiny model: one layer this wide over the real tokenizer's vocabulary
NEW_ARTICLES = 5


def build_tiny_model(folder: Path, real_model: str) -> None:
    """A random one-layer model with the real model's tokenizer, saved as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    config = AutoConfig.from_pretrained(real_model, hidden_size=TINY_WIDTH, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=2 * TINY_WIDTH)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder / "transformer")
    tokenizer.save_pretrained(folder / "transformer")
    word = models.Transformer(str(folder / "transformer"), max_seq_length=256)
    SentenceTransformer(modules=[word, models.Pooling(TINY_WIDTH, "mean"), models.Normalize()]).save(str(folder))
    shutil.rmtree(folder / "transformer")


def worker_small_update(args: dict) -> dict:
    """One chat process on one corpus: the timings of `bench_small_updates`, in seconds."""
    from rag.chatbot import UPLOADS, ChatBot

    config = config_for("flat")
    if args["model"]:  # else the configured (real) model
        config = config.replace(embed={"model": args["model"]})
    bot = ChatBot(args["corpus"], config, index_dir=args["index_dir"])
    assert bot.last_update.rebuilt_because is None and not bot.last_update.added, bot.last_update
    before = bot.index.manifest["articles"]
    uploads, corpus = Path(args["new"]), Path(args["corpus"])
    timings: dict[str, list[float]] = {"add_files": [], "remove": [], "index_add": [], "index_remove": []}
    for _ in range(args["rounds"]):
        paths = sorted(uploads.glob("*.txt"))
        start = time.perf_counter()
        report = bot.add_files(paths)
        timings["add_files"].append(time.perf_counter() - start)
        assert report.added == len(paths) and report.unchanged == before, report
        for path in paths:
            start = time.perf_counter()
            bot.remove(f"{UPLOADS}/{path.name}")
            timings["remove"].append(time.perf_counter() - start)
        shutil.copyfile(uploads / "new.jsonl", corpus / "zz-new.jsonl")
        start = time.perf_counter()
        report = bot.refresh()
        timings["index_add"].append(time.perf_counter() - start)
        assert report.added == NEW_ARTICLES and report.unchanged == before, report
        (corpus / "zz-new.jsonl").unlink()
        start = time.perf_counter()
        report = bot.refresh()
        timings["index_remove"].append(time.perf_counter() - start)
        assert report.removed == NEW_ARTICLES and bot.index.manifest["articles"] == before, report
    return {"articles": before, "chunks": len(bot.index), "segments": len(bot.index.segments), "seconds": timings}


def bench_small_updates(plan: Plan, work: Path, env: dict, model: dict, pool, pool_vectors) -> dict:
    """Per model and corpus size: the median time to upload, remove and index 5 articles."""
    tiny = work / "tiny-model"
    if not (tiny / "modules.json").exists():
        build_tiny_model(tiny, model["path"])
    tiny_model = run_worker("model", {"texts": str(work / "pool.json"), "vectors": str(work / "pool-tiny.npy"),
                                      "model": str(tiny)}, env)
    import numpy as np

    models = {"tiny": (tiny_model, np.load(work / "pool-tiny.npy")), "real": ({**model, "path": None}, pool_vectors)}
    new = work / "update-new"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    articles = synthetic_articles(NEW_ARTICLES, pool, seed=5)
    for number, (text, _) in enumerate(articles):
        (new / f"upload-{number}.txt").write_text(f"{text.split('.')[0][:80]}\n{text}\n", encoding="utf-8")
    (new / "new.jsonl").write_text("".join(json.dumps({"title": t[:40], "text": t}, ensure_ascii=False) + "\n"
                                           for t, _ in synthetic_articles(NEW_ARTICLES, pool, seed=6)), encoding="utf-8")
    results: dict[str, dict] = {}
    for name, (stamp, vectors) in ((name, models[name]) for name in plan.update_models):
        for count in plan.update_corpora:
            folder, index_dir = synthetic_corpus(work, count * CHUNKS_PER_ARTICLE, pool, vectors, stamp, "flat")
            say(f"small updates: {name} model, {count:,} articles")
            copy = work / f"small-update-{name}-{count}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(folder, copy / "corpus", copy_function=os.link)
            shutil.copytree(index_dir, copy / "index", symlinks=True, copy_function=os.link)
            result = run_worker("small_update", {"model": stamp["path"], "corpus": str(copy / "corpus"),
                                                 "index_dir": str(copy / "index"), "new": str(new),
                                                 "rounds": plan.ingest_rounds + 2}, env)
            shutil.rmtree(copy, ignore_errors=True)
            results.setdefault(name, {})[str(count)] = {
                **{k: v for k, v in result.items() if k != "seconds"},
                **{f"{what}_s": spread(values) for what, values in result["seconds"].items()}}
    ratios = {}
    for name, corpora in results.items():
        smallest = corpora[str(min(plan.update_corpora))]["add_files_s"]["median"]
        ratios[name] = {count: corpus["add_files_s"]["median"] / smallest for count, corpus in corpora.items()}
    return {"new_articles": NEW_ARTICLES, "index": "flat", "models": results, "add_files_over_smallest": ratios}
