"""What every ``sanad bench`` section shares: the plan (full or smoke), the goals, the helpers that
summarize repeated runs, and `run_worker`, which runs one measurement in a fresh process."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from eval import SEEDS_GOLD
from rag.config import REPO_ROOT

GOALS = {"ask_p50_ms": 150.0, "ask_p95_ms": 250.0, "chat_rss_mib": 1228.8, "ingest_speedup": 1.5,
         "cold_over_import": 1.5, "scale_p50_ms": 80.0, "scale_rss_mib": 2048.0, "recall": 0.98,
         "update_over_embed": 1.5, "open_s": 2.0, "open_rss_mib": 1536.0, "ask_over_floor": 4.0,
         "small_update_10x": 1.5, "small_update_100x": 2.0}


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
    update_articles: int  # articles added to each scale index by the scale_update section
    update_corpora: tuple[int, ...]  # corpus sizes (articles) of the update section (uploads of 5 articles)
    update_models: tuple[str, ...]  # "tiny" (a random one-layer model: the store's own work shows) and/or "real"


FULL = Plan(rounds=5, questions=40, ingest_rounds=3, ingest_paragraphs=240, synthetic_articles=60,
            cold_runs=5, memory_runs=3, pool_sentences=2000, scale_chunks=(10_000, 100_000, 1_000_000),
            update_articles=100, update_corpora=(2_000, 20_000, 200_000),
            update_models=("tiny", "real"))
SMOKE = Plan(rounds=2, questions=4, ingest_rounds=1, ingest_paragraphs=6, synthetic_articles=3,
             cold_runs=1, memory_runs=1, pool_sentences=120, scale_chunks=(1_000,), update_articles=3,
             update_corpora=(20, 200), update_models=("tiny",))


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
    lines = SEEDS_GOLD.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:n]


def questions_xquad(n: int) -> list[str]:
    from eval import xquad

    return [q.question_ar for q in xquad.load()[1]][:n]


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
