"""``sanad bench``: query latency, ingestion throughput, cold start, scale and memory, each next to its floor.

    sanad bench --out bench/out          # full run (~25-35 min on 2 shared cores)
    sanad bench --smoke --out /tmp/b     # the same sections, tiny (CI)

Every measurement runs in a fresh worker process (``python -m eval.bench WORKER ARGS``) so that
peak RSS, thread settings and cold imports belong to what is measured. A figure is the median over
repeated runs, shown with its min and max and the number of runs; the machine is shared, so read
the spread. Writes ``bench.json``, ``bench.md`` and ``latency_vs_corpus.png`` to ``--out``.

Synthetic corpora (scale): articles built from real sentences (XQuAD-ar paragraphs and the seeds);
each sentence keeps its real embedding (embedding 100k chunks for real would take hours here). A
chunk's vector is the mean of its sentences' vectors pushed away from their centroid by `SPREAD`,
plus a little noise: a plain mean crowds every chunk near the centroid (random pairs at cosine 0.91,
against 0.80 for real embeddings of the same chunks), which makes approximate search look worse
than it is. With the push: random pairs 0.80-0.82, cosine 0.97 to the real chunk vectors.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rag.config import DEFAULT_CORPUS, REPO_ROOT

SEEDS_QUESTIONS = REPO_ROOT / "eval" / "datasets" / "seeds_qa.jsonl"
GOALS = {"ask_p50_ms": 150.0, "ask_p95_ms": 250.0, "chat_rss_mib": 1228.8, "ingest_speedup": 1.5,
         "cold_over_import": 1.5, "scale_p50_ms": 80.0, "scale_rss_mib": 2048.0, "recall": 0.98,
         "update_over_embed": 1.5, "open_s": 2.0, "open_rss_mib": 1536.0}
SENTENCES_PER_CHUNK, CHUNK_STRIDE, CHUNKS_PER_ARTICLE = 4, 3, 4  # synthetic chunks share one sentence
SPREAD = 1.6  # synthetic chunk vector = centroid + SPREAD * (mean of its sentence vectors - centroid)
NOISE = 0.05  # norm of the noise then added, relative to the vector's norm
GENERATOR_VERSION = 3  # 3: written through update_index (segments)
BUILD_CHUNKS = 250_000  # chunks per update while a synthetic index is built (memory: ~1 GiB per 100k chunks)


@dataclass(frozen=True)
class Plan:
    rounds: int  # rounds of the warm query benchmark (every question once per round)
    questions: int  # questions per round
    ingest_rounds: int  # fresh processes per ingestion pipeline, alternating Sanad / llama-index
    ingest_paragraphs: int  # XQuAD-ar paragraphs indexed
    synthetic_articles: int  # synthetic articles indexed in the ingestion benchmark
    cold_runs: int  # cold `sanad ask` runs, alternating with `import sentence_transformers`
    memory_runs: int
    pool_sentences: int  # real sentences embedded for the synthetic corpora
    scale_chunks: tuple[int, ...]
    update_articles: int  # articles added to each scale index by the update section


FULL = Plan(rounds=5, questions=40, ingest_rounds=3, ingest_paragraphs=240, synthetic_articles=60,
            cold_runs=5, memory_runs=3, pool_sentences=2000, scale_chunks=(10_000, 100_000, 1_000_000),
            update_articles=100)
SMOKE = Plan(rounds=2, questions=4, ingest_rounds=1, ingest_paragraphs=6, synthetic_articles=3,
             cold_runs=1, memory_runs=1, pool_sentences=120, scale_chunks=(1_000,), update_articles=3)


# --- small helpers ---------------------------------------------------------------------------

def spread(values) -> dict:
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q))


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor())
    memory = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), None) if Path("/proc/meminfo").exists() else None
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": model,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gib": round(memory, 1) if memory else None, "python": platform.python_version(),
            "load_average_start": os.getloadavg()[0]}


def questions_seeds(n: int) -> list[str]:
    lines = SEEDS_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:n]


def questions_xquad(n: int) -> list[str]:
    from eval import xquad

    return [q.question_ar for q in xquad.load()[1]][:n]


# --- workers: one measurement each, in a fresh process -----------------------------------------

def run_worker(name: str, args: dict, env: dict) -> dict:
    """Run ``worker_<name>(args)`` in a new interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, "-m", "eval.bench", name, json.dumps(args, ensure_ascii=False)]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def config_for(store_index: str = "flat"):
    from rag.config import load_config

    return load_config().replace(store={"index": store_index})


def worker_model(args: dict) -> dict:
    """The model's folder and fingerprint, and real passage vectors for the synthetic corpora."""
    from rag.embeddings import Embedder, resolve_model

    config = config_for()
    path, fingerprint = resolve_model(config.embed, config.cache_dir)
    texts = json.loads(Path(args["texts"]).read_text(encoding="utf-8"))
    embedder = Embedder(config.embed, config.cache_dir)
    np.save(args["vectors"], embedder.encode_passages(texts).astype(np.float16))
    return {"path": path, "fingerprint": fingerprint, "model_id": embedder.model_id, "dim": embedder.dim}


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
        found = [len(set(bot.index.search(v, k)[1].tolist()) & set(row.tolist())) / k for v, row in zip(vectors, exact)]
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
    from rag import store
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
    chunk_pass = timed(store._embed, embedder, texts, None)
    start = time.perf_counter()
    index, _ = store.update_index(index_dir, articles, embedder, config)
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


# --- synthetic corpora ----------------------------------------------------------------------------

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
    from rag.ingest import content_hash
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


def write_synthetic_index(folder: Path, index_dir: Path, chunks: int, pool, pool_vectors: np.ndarray, model: dict):
    """The synthetic corpus and its index, written through `update_index` (chunks and vectors made
    here) in updates of at most `BUILD_CHUNKS` chunks, as an archive grows: each adds a file batch
    that the scan reads while it keeps the earlier files unread."""
    from rag import store
    from rag.ingest import scan_corpus

    config = config_for("hnsw")
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
        store.update_index(index_dir, scan.articles, stamp, config, unchanged=scan.unchanged, files=scan.files,
                           prepare=lambda fresh: synthetic_prepared(articles, fresh, pool, pool_vectors, seed))


def synthetic_corpus(work: Path, chunks: int, pool: list[str], pool_vectors, model: dict) -> tuple[Path, Path]:
    """A corpus folder and its index with ``chunks`` chunks, reused while its recipe is unchanged."""
    folder, index_dir = work / f"synthetic-{chunks}" / "corpus", work / f"synthetic-{chunks}" / "index"
    recipe = json.dumps([GENERATOR_VERSION, chunks, pool, model["fingerprint"], asdict(config_for("hnsw").store),
                         SPREAD, NOISE], ensure_ascii=False)
    key, key_file = hashlib.sha256(recipe.encode()).hexdigest(), work / f"synthetic-{chunks}" / "recipe.sha256"
    if key_file.exists() and key_file.read_text() == key and (index_dir / "current").exists():
        return folder, index_dir
    say(f"writing a synthetic corpus of {chunks:,} chunks (once; reused by later runs)")
    write_synthetic_index(folder, index_dir, chunks, pool, pool_vectors, model)
    key_file.write_text(key)
    return folder, index_dir


# --- sections ---------------------------------------------------------------------------------------

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

    config = config_for("hnsw")
    embedder = Embedder(config.embed, config.cache_dir)
    embedder.encode_queries(["warm-up"])
    model_rss = peak_rss_mib()
    start = time.perf_counter()
    index = store.open_index(Path(args["index_dir"]), store.manifest_for(config, embedder.model_id,
                                                                          embedder.fingerprint, embedder.dim))
    seconds = time.perf_counter() - start
    return {"chunks": len(index), "seconds": seconds, "rss_mib": peak_rss_mib(), "model_rss_mib": model_rss,
            "segments": len(index.segments)}


def worker_update(args: dict) -> dict:
    """Add new articles to a copy of an index as a chat process does (scan, then update), next to
    embedding those articles' chunks alone."""
    from rag import store
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
    index, report = store.update_index(index_dir, scan.articles, embedder, config, unchanged=scan.unchanged,
                                       files=scan.files)
    update = time.perf_counter() - start
    embed = timed(store._embed, embedder, texts, None)
    assert report.added == len(new) and report.unchanged == len(index.articles) - len(new), report
    return {"chunks_before": len(index) - len(texts), "new_chunks": len(texts), "articles": len(new),
            "update_s": update, "embed_s": embed, "peak_rss_mib": peak_rss_mib(), "segments": len(index.segments),
            "articles_read": len(scan.articles)}


def bench_update(plan: Plan, work: Path, env: dict, model: dict, pool, pool_vectors) -> dict:
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


def bench_memory(plan: Plan, work: Path, env: dict) -> dict:
    args = {"corpus": str(DEFAULT_CORPUS), "index_dir": str(work / "seeds-index"), "questions": questions_seeds(5)}
    return {mode: spread([run_worker("memory", {**args, "mode": mode}, env)["peak_rss_mib"]
                          for _ in range(plan.memory_runs)]) for mode in ("chat", "model")}


# --- report -------------------------------------------------------------------------------------------

def check_goals(sections: dict) -> dict:
    goals = {}
    query, ingestion, cold, scale, update = (sections.get(k) for k in ("query", "ingestion", "cold_start", "scale",
                                                                        "update"))
    for chunks, u in (update or {}).get("corpora", {}).items():
        goals[f"{int(chunks):,} chunks: adding articles <= 1.5x embedding them"] = \
            u["update_over_embed"]["median"] <= GOALS["update_over_embed"]
    if update:
        largest = update["corpora"][max(update["corpora"], key=int)]
        goals["largest corpus: open <= 2 s"] = largest["open_s"]["median"] <= GOALS["open_s"]
        goals["largest corpus: RSS before the first question <= 1.5 GiB"] = \
            largest["open_rss_mib"]["median"] <= GOALS["open_rss_mib"]
    if query:
        goals["warm ask p50 <= 150 ms"] = query["figures_ms"]["ask_p50"]["median"] <= GOALS["ask_p50_ms"]
        goals["warm ask p95 <= 250 ms"] = query["figures_ms"]["ask_p95"]["median"] <= GOALS["ask_p95_ms"]
    if sections.get("memory"):
        goals["chat process peak RSS <= 1.2 GiB"] = sections["memory"]["chat"]["median"] <= GOALS["chat_rss_mib"]
    if ingestion and "xquad-ar" in ingestion:
        speedup = ingestion["xquad-ar"]["speedup"]["sanad_chunk_pass_vs_llama_index_same_threads"]
        goals["XQuAD chunk pass >= 1.5x llama-index (same thread setting)"] = speedup >= GOALS["ingest_speedup"]
    if cold:
        goals["cold ask <= 1.5x import sentence_transformers"] = cold["ratio"]["median"] <= GOALS["cold_over_import"]
    if scale:
        largest = scale["corpora"][max(scale["corpora"], key=int)]
        goals["largest corpus: ask p50 <= 80 ms"] = largest["figures_ms"]["ask_p50"]["median"] <= GOALS["scale_p50_ms"]
        goals["largest corpus: peak RSS <= 2 GiB"] = largest["peak_rss_mib"] <= GOALS["scale_rss_mib"]
        goals["largest corpus: recall@10 >= 0.98"] = largest["recall"]["recall@10"] >= GOALS["recall"]
    return goals


def cell(figure: dict, digits: int = 1) -> str:
    return f"{figure['median']:.{digits}f} ({figure['min']:.{digits}f}–{figure['max']:.{digits}f}, n={figure['runs']})"


def render_markdown(report: dict) -> str:
    m, s = report["machine"], report["sections"]
    lines = [f"# Sanad benchmark{' (smoke)' if report['smoke'] else ''}", "",
             f"{m['date']} · {m['cpu']} · {m['cores']} cores · {m['memory_gib']} GiB · Python {m['python']} · "
             f"load average {m['load_average_start']:.1f} at start, {m['load_average_end']:.1f} at end · "
             f"`{report['command']}`", "", "Cells: median (min–max, n = number of runs).", ""]
    if s.get("query"):
        q = s["query"]
        lines += [f"## Query path: warm `ask` on the seed corpus ({q['chunks']} chunks, exact index)", "",
                  "| figure | ms |", "|---|---|"]
        lines += [f"| {name} | {cell(value, 2)} |" for name, value in q["figures_ms"].items()]
        lines += ["", "Where query time goes (cProfile, rag/ functions, ms per ask):", "",
                  "| function | calls | cumulative | self |", "|---|---|---|---|"]
        lines += [f"| {r['function']} | {r['calls_per_ask']:.1f} | {r['cumulative_ms_per_ask']:.2f} | "
                  f"{r['self_ms_per_ask']:.2f} |" for r in (q["profile"] or [])[:12]]
    if s.get("ingestion"):
        lines += ["", "## Ingestion: chunks per second, same model and chunks", "",
                  "llama-index: `VectorStoreIndex` + `HuggingFaceEmbedding` on the same model folder, as it runs "
                  "by default and with Sanad's thread setting (`OMP_WAIT_POLICY=PASSIVE`). Sanad chunk pass: the "
                  "chunk vectors only; full index: chunking, chunk vectors, FAISS, BM25, files.", "",
                  "| corpus | chunks | sentences | llama-index | llama-index, same threads | Sanad chunk pass | "
                  "Sanad full index | chunk pass vs the two | full index vs the two |", "|---|---|---|---|---|---|---|---|---|"]
        for name, i in s["ingestion"].items():
            r, x = i["chunks_per_s"], i["speedup"]
            lines.append(f"| {name} | {i['chunks']} | {i['sentences']} | {cell(r['llama_index'])} | "
                         f"{cell(r['llama_index_same_threads'])} | {cell(r['sanad_chunk_pass'])} | {cell(r['sanad_index'])} | "
                         f"{x['sanad_chunk_pass_vs_llama_index']:.2f}x / {x['sanad_chunk_pass_vs_llama_index_same_threads']:.2f}x | "
                         f"{x['sanad_index_vs_llama_index']:.2f}x / {x['sanad_index_vs_llama_index_same_threads']:.2f}x |")
        for name, i in s["ingestion"].items():
            if "ray_index" in i["chunks_per_s"]:
                r = i["chunks_per_s"]
                lines += ["", f"Ray Data ({name}, a local Ray of this machine's cores, {i['ray_actors']} embedding actor): "
                          f"whole index {cell(r['ray_index'])} chunks/s (Ray start included), embedding stage "
                          f"{cell(r['ray_embedding'])} chunks/s (actor start included), one actor while encoding "
                          f"{cell(r['ray_per_actor'])} chunks/s; the single process: whole index "
                          f"{cell(r['sanad_index'])}, chunk pass {cell(r['sanad_chunk_pass'])} chunks/s."]
    if s.get("update"):
        lines += ["", f"## Updates: adding articles to the scale indexes ({json.dumps(s['update']['index'])})", "",
                  "A chat process's update: scan the corpus (unchanged files are not read), then `update_index`; next "
                  "to embedding the same chunks alone. Open: a process with the model loaded opens the index.", "",
                  "| chunks | segments | open s | RSS after open MiB (model alone) | added articles (chunks) | update s | "
                  "embedding alone s | update / embedding | update peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
        for chunks, u in s["update"]["corpora"].items():
            lines.append(f"| {int(chunks):,} | {u['segments']} | {cell(u['open_s'], 2)} | {cell(u['open_rss_mib'], 0)} "
                         f"({u['model_rss_mib']['median']:.0f}) | {u['articles']} ({u['new_chunks']}) | "
                         f"{cell(u['update_s'], 2)} | {cell(u['embed_s'], 2)} | {cell(u['update_over_embed'], 2)} | "
                         f"{cell(u['update_peak_rss_mib'], 0)} |")
    if s.get("cold_start"):
        c = s["cold_start"]
        lines += ["", "## Cold start (new process, index on disk)", "", "| command | seconds |", "|---|---|"]
        lines += [f"| `{name}` | {cell(value, 2)} |" for name, value in c["seconds"].items()]
        lines += [f"| ratio | {cell(c['ratio'], 2)} |", "", "Phases of one cold process (s): " +
                  ", ".join(f"{name} {value:.2f}" for name, value in c["phases"].items())]
    if s.get("scale"):
        lines += ["", f"## Scale: synthetic corpora, HNSW ({json.dumps(s['scale']['index'])})", "",
                  "| chunks | ask p50 ms | ask p95 ms | floor p50 ms | retrieve p50 ms | answer p50 ms | "
                  "peak RSS MiB | recall@10 | recall@30 |", "|---|---|---|---|---|---|---|---|---|"]
        for chunks, r in s["scale"]["corpora"].items():
            f = r["figures_ms"]
            lines.append(f"| {int(chunks):,} | {cell(f['ask_p50'])} | {cell(f['ask_p95'])} | {cell(f['floor_p50'])} | "
                         f"{cell(f['retrieve_p50'], 2)} | {cell(f['answer_p50'])} | {r['peak_rss_mib']:.0f} | "
                         f"{r['recall']['recall@10']:.3f} | {r['recall']['recall@30']:.3f} |")
    if s.get("memory"):
        lines += ["", "## Memory: peak RSS (MiB)", "", "| process | MiB |", "|---|---|",
                  f"| chat process on the seed corpus (ChatBot + 5 asks) | {cell(s['memory']['chat'], 0)} |",
                  f"| the embedding model alone (load + 1 query) | {cell(s['memory']['model'], 0)} |"]
    lines += ["", "## Goals", "", "| goal | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if met else 'NO'} |" for name, met in report["goals"].items()]
    lines += [f"| section {name} failed: {error} | NO |" for name, error in report["errors"].items()]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    if report["sections"].get("query"):
        points.append(report["sections"]["query"])
    if report["sections"].get("scale"):
        points += [report["sections"]["scale"]["corpora"][k] for k in sorted(report["sections"]["scale"]["corpora"], key=int)]
    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label in (("ask_p50", "ask p50"), ("ask_p95", "ask p95"), ("floor_p50", "embed question (floor) p50")):
        axes.plot([p["chunks"] for p in points], [p["figures_ms"][key]["median"] for p in points], "o-", label=label)
    axes.axhline(GOALS["scale_p50_ms"], color="grey", linestyle=":", label="goal at 1M: p50 80 ms")
    axes.set_ylim(bottom=0)
    axes.set(xscale="log", xlabel="chunks in the index (seeds: exact; synthetic: HNSW)", ylabel="ms",
             title="Sanad warm query latency vs corpus size")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- main ------------------------------------------------------------------------------------------------

def bench_env(work: Path, device: str) -> dict:
    """Workers get their own cache dir (indexes land in ``work``) sharing the user's built model."""
    from rag.config import load_config

    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    models = cache / "models"
    if not models.exists():
        (Path(load_config().cache_dir) / "models").mkdir(parents=True, exist_ok=True)
        models.symlink_to(Path(load_config().cache_dir) / "models", target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANAD_")}
    env.update(SANAD_CACHE_DIR=str(cache), SANAD_EMBED_DEVICE=device, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    return env


def main(args) -> int:
    """Run every section (a failing one is recorded and the rest still run); 0 when all ran."""
    plan = SMOKE if args.smoke else FULL
    out = Path(args.out).resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = bench_env(work, args.device)
    args.only = getattr(args, "only", None)
    report = {"command": "sanad bench" + (" --smoke" if args.smoke else "") + f" --out {args.out} --device {args.device}"
              + (f" --only {' '.join(args.only)}" if args.only else ""),
              "smoke": args.smoke, "machine": machine(), "plan": asdict(plan), "sections": {}, "errors": {}}
    say("embedding the sentence pool for the synthetic corpora")
    pool = sentence_pool(plan.pool_sentences)
    (work / "pool.json").write_text(json.dumps(pool, ensure_ascii=False), encoding="utf-8")
    model = run_worker("model", {"texts": str(work / "pool.json"), "vectors": str(work / "pool.npy")}, env)
    pool_vectors = np.load(work / "pool.npy")
    sections = {"update": lambda: bench_update(plan, work, env, model, pool, pool_vectors),
                "query": lambda: bench_query(plan, work, env, out),
                "ingestion": lambda: bench_ingestion(plan, work, env, model),
                "cold_start": lambda: bench_cold_start(plan, work, env),
                "scale": lambda: bench_scale(plan, work, env, out, model, pool, pool_vectors),
                "memory": lambda: bench_memory(plan, work, env)}
    for name, run in sections.items():
        if args.only and name not in args.only:
            continue
        say(f"{name} ...")
        started = time.perf_counter()
        try:
            report["sections"][name] = run()
        except Exception as exc:  # record it and go on: the other figures are still worth having
            report["sections"][name] = None
            report["errors"][name] = f"{type(exc).__name__}: {exc}"
            say(f"{name} failed: {report['errors'][name]}")
        say(f"{name} done in {time.perf_counter() - started:.0f} s")
    report["machine"]["load_average_end"] = os.getloadavg()[0]
    report["goals"] = check_goals(report["sections"])
    (out / "bench.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    markdown = render_markdown(report)
    (out / "bench.md").write_text(markdown, encoding="utf-8")
    plot(report, out / "latency_vs_corpus.png")
    print(markdown)
    print(f"Wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'latency_vs_corpus.png'}")
    return 1 if report["errors"] else 0


WORKERS = {"model": worker_model, "query": worker_query, "memory": worker_memory, "ingest": worker_ingest,
           "phases": worker_phases, "open": worker_open, "update": worker_update}

if __name__ == "__main__":
    print(json.dumps(WORKERS[sys.argv[1]](json.loads(sys.argv[2]))))
