"""``sanad bench`` sections on large corpora: ingestion throughput (next to llama-index and Ray),
updates and queries on synthetic indexes of 10k-1M chunks.

Synthetic corpora: articles built from real sentences (XQuAD-ar paragraphs and the seeds); each
sentence keeps its real embedding (embedding 100k chunks for real would take hours here). A chunk's
vector is the mean of its sentences' vectors pushed away from their centroid by `SPREAD`, plus a
little noise: a plain mean crowds every chunk near the centroid (random pairs at cosine 0.91,
against 0.80 for real embeddings of the same chunks), which makes approximate search look worse
than it is. With the push: random pairs 0.80-0.82, cosine 0.97 to the real chunk vectors."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.bench_common import Plan, config_for, peak_rss_mib, questions_xquad, run_worker, say, spread, timed
from eval.bench_query import summarize_query
from rag.config import DEFAULT_CORPUS

SENTENCES_PER_CHUNK, CHUNK_STRIDE, CHUNKS_PER_ARTICLE = 4, 3, 4  # synthetic chunks share one sentence
SPREAD = 1.6  # synthetic chunk vector = centroid + SPREAD * (mean of its sentence vectors - centroid)
NOISE = 0.05  # norm of the noise then added, relative to the vector's norm
GENERATOR_VERSION = 3  # 3: written through update_index (segments)
BUILD_CHUNKS = 250_000  # chunks per update while a synthetic index is built (memory: ~1 GiB per 100k chunks)


def worker_model(args: dict) -> dict:
    """The model's folder and fingerprint, and real passage vectors for the synthetic corpora
    (``args["model"]``: another model than the configured one)."""
    from rag.embeddings import Embedder, resolve_model

    config = config_for()
    if args.get("model"):
        config = config.replace(embed={"model": args["model"]})
    path, fingerprint = resolve_model(config.embed, config.cache_dir)
    texts = json.loads(Path(args["texts"]).read_text(encoding="utf-8"))
    embedder = Embedder(config.embed, config.cache_dir)
    np.save(args["vectors"], embedder.encode_passages(texts).astype(np.float16))
    return {"path": path, "fingerprint": fingerprint, "model_id": embedder.model_id, "dim": embedder.dim}


def worker_ingest(args: dict) -> dict:
    """Index a corpus from scratch with Sanad (in this process or on a local Ray) or with plain
    llama-index, on the same chunks."""
    from rag.chunking import chunk_article
    from rag.ingest import read_corpus

    config = config_for()
    articles = read_corpus(args["corpus"])
    texts = [chunk.text for article in articles for chunk in chunk_article(article, config.chunk)]
    if args["pipeline"].startswith("llama_index"):
        return {"chunks": len(texts), "seconds": {args["pipeline"]: llama_index_build(texts, args["model_path"], config)}}
    from rag import indexing
    from rag.chatbot import ChatBot
    from rag.embeddings import Embedder

    index_dir = Path(args["index_dir"])
    shutil.rmtree(index_dir, ignore_errors=True)
    if args["pipeline"] == "sanad_ray":
        from rag.ray_index import RayIndexer

        indexer = RayIndexer(config)
        start = time.perf_counter()
        bot = ChatBot(corpus=args["corpus"], config=config, index_dir=index_dir, read=indexer.read,
                      prepare=indexer.prepare)
        embedding = indexer.last_embedding
        return {"chunks": len(texts), "sentences": int(bot.index.manifest["sentences"]), "ray_actors": embedding["actors"],
                "seconds": {"ray_index": time.perf_counter() - start, "ray_embedding": embedding["seconds"],
                            "ray_per_actor": embedding["actor_seconds"]}}
    embedder = Embedder(config.embed, config.cache_dir)
    embedder.encode_passages(texts[:8])  # warm-up, as for the baseline
    chunk_pass = timed(indexing.embed_texts, embedder, texts, None)
    start = time.perf_counter()
    index, _ = indexing.update_index(index_dir, articles, embedder, config)
    build = time.perf_counter() - start
    return {"chunks": len(texts), "sentences": int(index.manifest["sentences"]),
            "seconds": {"sanad_chunk_pass": chunk_pass, "sanad_index": build}}


def llama_index_build(texts: list[str], model_path: str, config) -> float:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed = HuggingFaceEmbedding(model_name=model_path, text_instruction="passage: ", query_instruction="query: ",
                                 device=config.embed.device)
    embed.get_text_embedding_batch(texts[:8])  # warm-up
    nodes = [TextNode(text=text, id_=str(i)) for i, text in enumerate(texts)]
    return timed(lambda: VectorStoreIndex(nodes, embed_model=embed))


def sentence_pool(limit: int) -> list[str]:
    """Real Arabic news-style sentences: the XQuAD-ar paragraphs and the seed articles."""
    from eval import xquad
    from rag.arabic import split_sentences
    from rag.ingest import read_corpus

    texts = [record["text"] for record in xquad.load()[0]] + [article.text for article in read_corpus(DEFAULT_CORPUS)]
    sentences = (" ".join(text[start:end].split()) for text in texts for start, end in split_sentences(text))
    return list(dict.fromkeys(s for s in sentences if 20 <= len(s) <= 400))[:limit]


def synthetic_articles(count: int, pool: list[str], seed: int) -> list[tuple[str, list[tuple[int, int, int]]]]:
    """(text, [(pool id, start, end)]) per article: random pool sentences, each chunk 4 of them."""
    rng = np.random.default_rng(seed)
    articles = []
    for _ in range(count):
        ids = rng.choice(len(pool), CHUNK_STRIDE * CHUNKS_PER_ARTICLE + 1, replace=False)
        spans, at = [], 0
        for pool_id in ids.tolist():
            spans.append((pool_id, at, at + len(pool[pool_id])))
            at += len(pool[pool_id]) + 1
        articles.append((" ".join(pool[i] for i in ids.tolist()), spans))
    return articles


def write_records(folder: Path, articles, per_file: int = 2000, first_part: int = 0) -> None:
    """JSONL files of ``per_file`` articles, numbered from ``first_part`` (0: the folder is emptied first)."""
    if first_part == 0:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for part, at in enumerate(range(0, len(articles), per_file), start=first_part):
        lines = (json.dumps({"title": text.split(".")[0][:80], "text": text}, ensure_ascii=False)
                 for text, _ in articles[at:at + per_file])
        (folder / f"part-{part:04d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ModelStamp:
    """What the store records of the model (its id, fingerprint, dimension), without loading it."""

    model_id: str
    fingerprint: str
    dim: int


def synthetic_prepared(articles, stored, pool: list[str], pool_vectors: np.ndarray, seed: int):
    """`rag.store.Prepared` articles: chunks of 4 pool sentences (stride 3), mixed vectors (see the top)."""
    from rag import store
    from rag.hashing import content_hash
    from rag.types import Chunk, Sentence

    from rag.arabic import terms

    rng = np.random.default_rng(seed + 1)
    vectors = pool_vectors.astype(np.float32)
    centroid = vectors.mean(axis=0)
    pool_terms = [terms(sentence) for sentence in pool]  # a chunk's terms are its sentences' (stemming 1M chunks: ~45 min)
    prepared = []
    for article, (_, spans) in zip(stored, articles):
        chunks, members, chunk_terms = [], [], []
        for first in range(0, len(spans) - 1, CHUNK_STRIDE):
            stop = min(first + SENTENCES_PER_CHUNK, len(spans))
            start, end = spans[first][1], spans[stop - 1][2]
            sentences = tuple(Sentence(article.id, a, b, "") for _, a, b in spans[first:stop])  # the store keeps spans
            chunks.append(Chunk(len(chunks), article.id, start, end, article.text[start:end], sentences))
            members.append([pool_id for pool_id, _, _ in spans[first:stop]])
            chunk_terms.append([t for pool_id in members[-1] for t in pool_terms[pool_id]])
        means = centroid + SPREAD * (vectors[np.array(members)].mean(axis=1) - centroid)
        noise = rng.standard_normal(means.shape).astype(np.float32)
        noise *= NOISE * np.linalg.norm(means, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
        chunk_vectors = means + noise
        chunk_vectors /= np.linalg.norm(chunk_vectors, axis=1, keepdims=True)
        prepared.append(store.Prepared(article, content_hash(article), tuple(chunks), chunk_vectors, tuple(chunk_terms)))
    return prepared


def write_synthetic_index(folder: Path, index_dir: Path, chunks: int, pool, pool_vectors: np.ndarray, model: dict,
                          store_index: str = "hnsw"):
    """The synthetic corpus and its index, written through `update_index` (chunks and vectors made
    here) in updates of at most `BUILD_CHUNKS` chunks, as an archive grows: each adds a file batch
    that the scan reads while it keeps the earlier files unread."""
    from rag import indexing, store
    from rag.ingest import scan_corpus

    config = config_for(store_index)
    shutil.rmtree(index_dir, ignore_errors=True)
    stamp = ModelStamp(model["model_id"], model["fingerprint"], model["dim"])
    total = -(-chunks // CHUNKS_PER_ARTICLE)
    per_update = BUILD_CHUNKS // CHUNKS_PER_ARTICLE
    for number, at in enumerate(range(0, total, per_update)):
        seed = chunks if number == 0 else chunks * 1000 + number
        articles = synthetic_articles(min(per_update, total - at), pool, seed=seed)
        write_records(folder, articles, first_part=number * -(-per_update // 2000))
        scan = scan_corpus(folder, store.files_table(index_dir))
        assert [a.text for a in scan.articles] == [text for text, _ in articles], "corpus did not round-trip"
        indexing.update_index(index_dir, scan.articles, stamp, config, unchanged=scan.unchanged, files=scan.files,
                              prepare=lambda fresh: synthetic_prepared(articles, fresh, pool, pool_vectors, seed))


def synthetic_corpus(work: Path, chunks: int, pool: list[str], pool_vectors, model: dict,
                     store_index: str = "hnsw") -> tuple[Path, Path]:
    """A corpus folder and its index with ``chunks`` chunks, reused while its recipe is unchanged."""
    from rag.store import FORMAT_VERSION

    home = work / f"synthetic-{store_index}-{model['fingerprint'][:8]}-{chunks}"
    folder, index_dir = home / "corpus", home / "index"
    recipe = json.dumps([GENERATOR_VERSION, FORMAT_VERSION, chunks, pool, model["fingerprint"],
                         asdict(config_for(store_index).store), SPREAD, NOISE], ensure_ascii=False)
    key, key_file = hashlib.sha256(recipe.encode()).hexdigest(), home / "recipe.sha256"
    if key_file.exists() and key_file.read_text() == key and (index_dir / "current").exists():
        return folder, index_dir
    say(f"writing a synthetic corpus of {chunks:,} chunks ({store_index}; once, reused by later runs)")
    write_synthetic_index(folder, index_dir, chunks, pool, pool_vectors, model, store_index)
    key_file.write_text(key)
    return folder, index_dir


def bench_ingestion(plan: Plan, work: Path, env: dict, model: dict) -> dict:
    from eval import xquad

    records = xquad.load()[0][:plan.ingest_paragraphs]
    corpora = {"xquad-ar": xquad.write_corpus(records, work / "xquad-corpus")}
    pool = sentence_pool(plan.pool_sentences)
    write_records(work / "synthetic-ingest", synthetic_articles(plan.synthetic_articles, pool, seed=7))
    corpora["synthetic"] = work / "synthetic-ingest"
    return {name: ingest_corpus(folder, plan, work, env, model, ray=name == "xquad-ar") for name, folder in corpora.items()}


def ingest_corpus(folder: Path, plan: Plan, work: Path, env: dict, model: dict, ray: bool = False) -> dict:
    """Rounds of fresh processes: llama-index as it runs by default, llama-index with Sanad's thread
    setting (so its speedup shows what batching and precision alone bring), then Sanad (and Sanad
    on a local Ray of this machine's cores, one embedding actor)."""
    seconds: dict[str, list[float]] = {}
    counts = {}
    pipelines = {"llama_index": env, "llama_index_same_threads": {**env, "OMP_WAIT_POLICY": "PASSIVE"}, "sanad": env}
    if ray:
        pipelines["sanad_ray"] = env
    for _ in range(plan.ingest_rounds):
        for pipeline, pipeline_env in pipelines.items():
            args = {"pipeline": pipeline, "corpus": str(folder), "index_dir": str(work / "ingest-index"),
                    "model_path": model["path"]}
            result = run_worker("ingest", args, pipeline_env)
            counts.update({k: v for k, v in result.items() if k != "seconds"})
            for name, value in result["seconds"].items():
                seconds.setdefault(name, []).append(value)
    rates = {name: spread([counts["chunks"] / s for s in values]) for name, values in seconds.items()}
    speedup = {f"{name}_vs_{base}": rates[name]["median"] / rates[base]["median"]
               for base in ("llama_index", "llama_index_same_threads") for name in ("sanad_chunk_pass", "sanad_index")}
    return {**counts, "chunks_per_s": rates, "speedup": speedup}


def bench_scale(plan: Plan, work: Path, env: dict, out: Path, model: dict, pool, pool_vectors) -> dict:
    questions, results = questions_xquad(plan.questions), {}
    for chunks in plan.scale_chunks:
        folder, index_dir = synthetic_corpus(work, chunks, pool, pool_vectors, model)
        say(f"scale: {chunks:,} chunks")
        args = {"corpus": str(folder), "index_dir": str(index_dir), "store": "hnsw", "questions": questions,
                "rounds": plan.rounds, "recall": True,
                "profile": str(out / f"profile_{chunks}.txt") if chunks == max(plan.scale_chunks) else None}
        results[str(chunks)] = summarize_query(run_worker("query", args, env))
    return {"index": asdict(config_for("hnsw").store), "corpora": results}


def worker_open(args: dict) -> dict:
    """A chat process before its first question: the model loaded, then the index opened."""
    from rag import store
    from rag.embeddings import Embedder
    from rag.indexing import manifest_for

    config = config_for("hnsw")
    embedder = Embedder(config.embed, config.cache_dir)
    embedder.encode_queries(["warm-up"])
    model_rss = peak_rss_mib()
    start = time.perf_counter()
    index = store.open_index(Path(args["index_dir"]), manifest_for(config, embedder.model_id, embedder.fingerprint,
                                                                    embedder.dim))
    seconds = time.perf_counter() - start
    return {"chunks": len(index), "seconds": seconds, "rss_mib": peak_rss_mib(), "model_rss_mib": model_rss,
            "segments": len(index.segments)}


def worker_update(args: dict) -> dict:
    """Add new articles to a copy of an index as a chat process does (scan, then update), next to
    embedding those articles' chunks alone."""
    from rag import indexing, store
    from rag.chunking import chunk_article
    from rag.embeddings import Embedder
    from rag.ingest import read_corpus, scan_corpus

    config = config_for("hnsw")
    embedder = Embedder(config.embed, config.cache_dir)
    new = read_corpus(args["new_file"])
    texts = [chunk.text for article in new for chunk in chunk_article(article, config.chunk)]
    embedder.encode_passages(texts[:8])  # warm-up
    index_dir, folder = Path(args["index_dir"]), Path(args["corpus"])
    start = time.perf_counter()
    scan = scan_corpus(folder, store.files_table(index_dir))
    index, report = indexing.update_index(index_dir, scan.articles, embedder, config, unchanged=scan.unchanged,
                                          files=scan.files)
    update = time.perf_counter() - start
    embed = timed(indexing.embed_texts, embedder, texts, None)
    assert report.added == len(new) and report.unchanged == len(index.articles) - len(new), report
    return {"chunks_before": len(index) - len(texts), "new_chunks": len(texts), "articles": len(new),
            "update_s": update, "embed_s": embed, "peak_rss_mib": peak_rss_mib(), "segments": len(index.segments),
            "articles_read": len(scan.articles)}


def bench_scale_update(plan: Plan, work: Path, env: dict, model: dict, pool, pool_vectors) -> dict:
    """Per scale index: open time and RSS, then adding `Plan.update_articles` real articles (a new
    file), on a hard-linked copy (segment files are never changed in place, so linking is safe)."""
    results = {}
    new_articles = synthetic_articles(plan.update_articles, pool, seed=11)
    for chunks in plan.scale_chunks:
        folder, index_dir = synthetic_corpus(work, chunks, pool, pool_vectors, model)
        say(f"update: {chunks:,} chunks")
        opened = [run_worker("open", {"index_dir": str(index_dir)}, env) for _ in range(plan.memory_runs)]
        updates = []
        for run in range(plan.ingest_rounds):
            copy = work / f"update-{chunks}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(folder, copy / "corpus", copy_function=os.link)
            shutil.copytree(index_dir, copy / "index", symlinks=True, copy_function=os.link)
            write_records(copy / "new", new_articles)
            os.link(copy / "new" / "part-0000.jsonl", copy / "corpus" / "new-0000.jsonl")
            updates.append(run_worker("update", {"index_dir": str(copy / "index"), "corpus": str(copy / "corpus"),
                                                 "new_file": str(copy / "new" / "part-0000.jsonl")}, env))
            shutil.rmtree(copy, ignore_errors=True)
        results[str(chunks)] = {
            "chunks": opened[0]["chunks"], "segments": opened[0]["segments"],
            "open_s": spread([o["seconds"] for o in opened]), "open_rss_mib": spread([o["rss_mib"] for o in opened]),
            "model_rss_mib": spread([o["model_rss_mib"] for o in opened]),
            "new_chunks": updates[0]["new_chunks"], "articles": updates[0]["articles"],
            "update_s": spread([u["update_s"] for u in updates]), "embed_s": spread([u["embed_s"] for u in updates]),
            "update_over_embed": spread([u["update_s"] / u["embed_s"] for u in updates]),
            "update_peak_rss_mib": spread([u["peak_rss_mib"] for u in updates])}
    return {"index": asdict(config_for("hnsw").store), "corpora": results}
