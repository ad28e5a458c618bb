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
         "cold_over_import": 1.5, "scale_p50_ms": 60.0, "scale_rss_mib": 2048.0, "recall": 0.98}
SENTENCES_PER_CHUNK, CHUNK_STRIDE, CHUNKS_PER_ARTICLE = 4, 3, 4  # synthetic chunks share one sentence
SPREAD = 1.6  # synthetic chunk vector = centroid + SPREAD * (mean of its sentence vectors - centroid)
NOISE = 0.05  # norm of the noise then added, relative to the vector's norm
GENERATOR_VERSION = 2


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


FULL = Plan(rounds=5, questions=40, ingest_rounds=3, ingest_paragraphs=240, synthetic_articles=60,
            cold_runs=5, memory_runs=3, pool_sentences=2000, scale_chunks=(10_000, 100_000))
SMOKE = Plan(rounds=2, questions=4, ingest_rounds=1, ingest_paragraphs=6, synthetic_articles=3,
             cold_runs=1, memory_runs=1, pool_sentences=120, scale_chunks=(1_000,))


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
    exact_scores = vectors @ np.asarray(bot.index.chunk_vectors, np.float32).T
    result = {}
    for k in (10, 30):
        exact = np.argsort(-exact_scores, axis=1, kind="stable")[:, :k]
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
    """Index a corpus from scratch with Sanad or with plain llama-index, on the same chunks."""
    from rag.chunking import chunk_article
    from rag.ingest import read_corpus

    config = config_for()
    articles = read_corpus(args["corpus"])
    texts = [chunk.text for article in articles for chunk in chunk_article(article, config.chunk)]
    if args["pipeline"] != "sanad":
        return {"chunks": len(texts), "seconds": {args["pipeline"]: llama_index_build(texts, args["model_path"], config)}}
    from rag import store
    from rag.embeddings import Embedder

    embedder = Embedder(config.embed, config.cache_dir)
    embedder.encode_passages(texts[:8])  # warm-up, as for the baseline
    chunk_pass = timed(store._embed, embedder, texts, None)
    index_dir = Path(args["index_dir"])
    shutil.rmtree(index_dir, ignore_errors=True)
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


def write_records(folder: Path, articles, per_file: int = 2000) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for part, at in enumerate(range(0, len(articles), per_file)):
        lines = (json.dumps({"title": text.split(".")[0][:80], "text": text}, ensure_ascii=False)
                 for text, _ in articles[at:at + per_file])
        (folder / f"part-{part:04d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_synthetic_index(folder: Path, index_dir: Path, articles, pool_vectors: np.ndarray, model: dict, seed: int):
    """The store format written directly (no model): tables, sentence vectors, mixed chunk vectors."""
    from rag import __version__, store
    from rag.ingest import content_hash, read_corpus

    config = config_for("hnsw")
    stored = read_corpus(folder)
    assert [a.text for a in stored] == [text for text, _ in articles], "corpus did not round-trip"
    rng = np.random.default_rng(seed + 1)
    sentence_rows, chunk_rows, chunk_members = [], [], []
    for row, (_, spans) in enumerate(articles):
        base = len(sentence_rows)
        sentence_rows += [(row, start, end) for _, start, end in spans]
        for first in range(0, len(spans) - 1, CHUNK_STRIDE):
            stop = min(first + SENTENCES_PER_CHUNK, len(spans))
            chunk_rows.append((row, spans[first][1], spans[stop - 1][2], base + first, base + stop))
            chunk_members.append([pool_id for pool_id, _, _ in spans[first:stop]])
    sentence_ids = np.array([pool_id for _, spans in articles for pool_id, _, _ in spans])
    vectors = pool_vectors.astype(np.float32)
    centroid = vectors.mean(axis=0)
    means = centroid + SPREAD * (vectors[np.array(chunk_members)].mean(axis=1) - centroid)
    noise = rng.standard_normal(means.shape).astype(np.float32)
    noise *= NOISE * np.linalg.norm(means, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
    chunk_vectors = means + noise
    chunk_vectors /= np.linalg.norm(chunk_vectors, axis=1, keepdims=True)
    manifest = {**store.manifest_for(config, model["model_id"], model["fingerprint"], model["dim"]),
                "articles": {a.id: content_hash(a) for a in stored}, "sanad_version": __version__,
                "chunks": len(chunk_rows), "sentences": len(sentence_rows)}
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir(parents=True)
    store._write_version(index_dir, manifest, stored, np.array(chunk_rows, np.int64), np.array(sentence_rows, np.int64),
                         chunk_vectors, pool_vectors[sentence_ids].astype(np.float16), config.store)


def synthetic_corpus(work: Path, chunks: int, pool: list[str], pool_vectors, model: dict) -> tuple[Path, Path]:
    """A corpus folder and its index with ``chunks`` chunks, reused while its recipe is unchanged."""
    folder, index_dir = work / f"synthetic-{chunks}" / "corpus", work / f"synthetic-{chunks}" / "index"
    recipe = json.dumps([GENERATOR_VERSION, chunks, pool, model["fingerprint"], asdict(config_for("hnsw").store),
                         SPREAD, NOISE], ensure_ascii=False)
    key, key_file = hashlib.sha256(recipe.encode()).hexdigest(), work / f"synthetic-{chunks}" / "recipe.sha256"
    if key_file.exists() and key_file.read_text() == key and (index_dir / "current").exists():
        return folder, index_dir
    say(f"writing a synthetic corpus of {chunks:,} chunks (once; reused by later runs)")
    articles = synthetic_articles(-(-chunks // CHUNKS_PER_ARTICLE), pool, seed=chunks)
    write_records(folder, articles)
    write_synthetic_index(folder, index_dir, articles, pool_vectors, model, seed=chunks)
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
    return {name: ingest_corpus(folder, plan, work, env, model) for name, folder in corpora.items()}


def ingest_corpus(folder: Path, plan: Plan, work: Path, env: dict, model: dict) -> dict:
    """Rounds of fresh processes: llama-index as it runs by default, llama-index with Sanad's thread
    setting (so its speedup shows what batching and precision alone bring), then Sanad."""
    seconds: dict[str, list[float]] = {}
    counts = {}
    pipelines = {"llama_index": env, "llama_index_same_threads": {**env, "OMP_WAIT_POLICY": "PASSIVE"}, "sanad": env}
    for _ in range(plan.ingest_rounds):
        for pipeline, pipeline_env in pipelines.items():
            args = {"pipeline": pipeline, "corpus": str(folder), "index_dir": str(work / "ingest-index"),
                    "model_path": model["path"]}
            result = run_worker("ingest", args, pipeline_env)
            counts.update({k: v for k, v in result.items() if k != "seconds"})
            for name, value in result["seconds"].items():
                seconds.setdefault(name, []).append(value)
    rates = {name: spread([counts["chunks"] / s for s in values]) for name, values in seconds.items()}
    texts_per_s = spread([(counts["chunks"] + counts["sentences"]) / s for s in seconds["sanad_index"]])
    speedup = {f"{name}_vs_{base}": rates[name]["median"] / rates[base]["median"]
               for base in ("llama_index", "llama_index_same_threads") for name in ("sanad_chunk_pass", "sanad_index")}
    return {**counts, "chunks_per_s": rates, "sanad_index_texts_per_s": texts_per_s, "speedup": speedup}


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


def bench_memory(plan: Plan, work: Path, env: dict) -> dict:
    args = {"corpus": str(DEFAULT_CORPUS), "index_dir": str(work / "seeds-index"), "questions": questions_seeds(5)}
    return {mode: spread([run_worker("memory", {**args, "mode": mode}, env)["peak_rss_mib"]
                          for _ in range(plan.memory_runs)]) for mode in ("chat", "model")}


# --- report -------------------------------------------------------------------------------------------

def check_goals(sections: dict) -> dict:
    goals = {}
    query, ingestion, cold, scale = (sections.get(k) for k in ("query", "ingestion", "cold_start", "scale"))
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
        goals["largest corpus: ask p50 <= 60 ms"] = largest["figures_ms"]["ask_p50"]["median"] <= GOALS["scale_p50_ms"]
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
                  "chunk vectors only; full index: chunking, chunk and sentence vectors, FAISS, BM25, files.", "",
                  "| corpus | chunks | sentences | llama-index | llama-index, same threads | Sanad chunk pass | "
                  "Sanad full index | chunk pass vs the two | full index vs the two |", "|---|---|---|---|---|---|---|---|---|"]
        for name, i in s["ingestion"].items():
            r, x = i["chunks_per_s"], i["speedup"]
            lines.append(f"| {name} | {i['chunks']} | {i['sentences']} | {cell(r['llama_index'])} | "
                         f"{cell(r['llama_index_same_threads'])} | {cell(r['sanad_chunk_pass'])} | {cell(r['sanad_index'])} | "
                         f"{x['sanad_chunk_pass_vs_llama_index']:.2f}x / {x['sanad_chunk_pass_vs_llama_index_same_threads']:.2f}x | "
                         f"{x['sanad_index_vs_llama_index']:.2f}x / {x['sanad_index_vs_llama_index_same_threads']:.2f}x |")
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
    axes.axhline(GOALS["scale_p50_ms"], color="grey", linestyle=":", label="goal at 100k: p50 60 ms")
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
    report = {"command": "sanad bench" + (" --smoke" if args.smoke else "") + f" --out {args.out} --device {args.device}",
              "smoke": args.smoke, "machine": machine(), "plan": asdict(plan), "sections": {}, "errors": {}}
    say("embedding the sentence pool for the synthetic corpora")
    pool = sentence_pool(plan.pool_sentences)
    (work / "pool.json").write_text(json.dumps(pool, ensure_ascii=False), encoding="utf-8")
    model = run_worker("model", {"texts": str(work / "pool.json"), "vectors": str(work / "pool.npy")}, env)
    pool_vectors = np.load(work / "pool.npy")
    sections = {"query": lambda: bench_query(plan, work, env, out),
                "ingestion": lambda: bench_ingestion(plan, work, env, model),
                "cold_start": lambda: bench_cold_start(plan, work, env),
                "scale": lambda: bench_scale(plan, work, env, out, model, pool, pool_vectors),
                "memory": lambda: bench_memory(plan, work, env)}
    for name, run in sections.items():
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
           "phases": worker_phases}

if __name__ == "__main__":
    print(json.dumps(WORKERS[sys.argv[1]](json.loads(sys.argv[2]))))
