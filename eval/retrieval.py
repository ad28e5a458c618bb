"""Retrieval quality: recall@k and MRR of the gold article for dense, BM25 and hybrid search.

Also the chunk-size sweep behind ``ChunkConfig.chunk_tokens``:
``python -m eval.retrieval --sweep 96 128 160 224 320`` builds an XQuAD index per size; and
``python -m eval.retrieval --backends`` measures the FAISS and the Milvus (Lite) backends side by
side: XQuAD retrieval, and the chunks each retrieves for every question of the seed gold set.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from rag.retrieve import MODES

DEPTH = 20  # chunks retrieved; ranks of gold articles beyond this count as misses


def article_ranking(bot, question: str, mode: str, query_vector=None) -> list[str]:
    """Distinct article ids in the order their best chunk was retrieved."""
    hits = bot.retrieve(question, top_k=DEPTH, mode=mode, query_vector=query_vector)
    return list(dict.fromkeys(hit.chunk.article_id for hit in hits))


def retrieval_metrics(bot, items: list[tuple[str, set[str]]], modes=MODES, ks=(1, 5)) -> dict:
    """``items``: (question, gold article ids). Returns {mode: {"R@1":..., "R@5":..., "MRR":...}}."""
    vectors = bot.embedder.encode_queries([question for question, _ in items])
    results = {}
    for mode in modes:
        reciprocal, found = 0.0, {k: 0 for k in ks}
        for (question, gold), vector in zip(items, vectors):
            ranking = article_ranking(bot, question, mode, vector)
            rank = next((i for i, article in enumerate(ranking, start=1) if article in gold), None)
            if rank:
                reciprocal += 1.0 / rank
                for k in ks:
                    found[k] += rank <= k
        results[mode] = {**{f"R@{k}": round(found[k] / len(items), 3) for k in ks},
                         "MRR": round(reciprocal / len(items), 3)}
    return results


def xquad_retrieval(bot, questions) -> dict:
    """{"ar": {...}, "en": {...}} over all XQuAD questions, gold = the question's paragraph."""
    return {
        "ar": retrieval_metrics(bot, [(q.question_ar, {q.article_id}) for q in questions]),
        "en": retrieval_metrics(bot, [(q.question_en, {q.article_id}) for q in questions]),
    }


def sweep(sizes: list[int], out: Path) -> list[dict]:
    """Retrieval on XQuAD at several chunk sizes (overlap = a quarter of the size)."""
    from eval import xquad
    from rag.chatbot import ChatBot
    from rag.config import load_config

    records, questions = xquad.load()
    corpus = xquad.write_corpus(records, out / "xquad_corpus")
    rows = []
    for size in sizes:
        config = load_config()
        config = config.replace(chunk=dataclasses.replace(config.chunk, chunk_tokens=size, overlap_tokens=size // 4))
        started = time.perf_counter()
        bot = ChatBot(corpus=corpus, config=config, index_dir=out / f"index-{size}")
        built = time.perf_counter() - started
        row = {"chunk_tokens": size, "chunks": len(bot.index), "build_s": round(built, 1), **xquad_retrieval(bot, questions)}
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    return rows


def compare_backends(out: Path) -> dict:
    """XQuAD recall per backend and retrieval mode, and whether both retrieve the same top 5
    chunks (hybrid, as the chatbot asks) for each seed gold question."""
    from eval import SEEDS_GOLD, xquad
    from rag.chatbot import ChatBot
    from rag.config import DEFAULT_CORPUS, load_config

    records, questions = xquad.load()
    corpus = xquad.write_corpus(records, out / "xquad_corpus")
    gold = [json.loads(line)["question"] for line in SEEDS_GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    result, retrieved = {}, {}
    for backend, keyword in (("faiss", "local"), ("milvus", "milvus")):  # each backend with its own BM25
        config = load_config().replace(store={"backend": backend, "keyword": keyword})
        bot = ChatBot(corpus=corpus, config=config, index_dir=out / f"xquad-{backend}")
        result[backend] = xquad_retrieval(bot, questions)
        seeds = ChatBot(corpus=DEFAULT_CORPUS, config=config, index_dir=out / f"seeds-{backend}")
        vectors = seeds.embedder.encode_queries(gold)
        retrieved[backend] = [[(h.chunk.article_id, h.chunk.start, h.chunk.end)
                               for h in seeds.retrieve(q, top_k=5, query_vector=v)] for q, v in zip(gold, vectors)]
        print(json.dumps({backend: result[backend]}, ensure_ascii=False), flush=True)
    same = sum(a == b for a, b in zip(retrieved["faiss"], retrieved["milvus"]))
    result["recall@5_difference"] = {lang: {mode: round(abs(result["faiss"][lang][mode]["R@5"] -
                                                            result["milvus"][lang][mode]["R@5"]), 3)
                                            for mode in MODES} for lang in ("ar", "en")}
    result["seed_gold_same_top5"] = {"same": same, "questions": len(gold)}
    print(json.dumps({k: result[k] for k in ("recall@5_difference", "seed_gold_same_top5")}), flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", type=int, nargs="+", default=[96, 128, 160, 224, 320])
    parser.add_argument("--backends", action="store_true", help="compare the FAISS and Milvus backends instead")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.backends:
        compare_backends(args.out or Path("eval/out/backends"))
    else:
        sweep(args.sweep, args.out or Path("eval/out/sweep"))
