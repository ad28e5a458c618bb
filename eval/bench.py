"""``sanad bench``: query latency, ingestion throughput, cold start, scale and memory, each next to its floor.

    sanad bench --out bench/out          # full run (~25-35 min on 2 shared cores)
    sanad bench --smoke --out /tmp/b     # the same sections, tiny (CI)

Every measurement runs in a fresh worker process (``python -m eval.bench WORKER ARGS``) so that
peak RSS, thread settings and cold imports belong to what is measured. A figure is the median over
repeated runs, shown with its min and max and the number of runs; the machine is shared, so read
the spread. Writes ``bench.json``, ``bench.md`` and ``latency_vs_corpus.png`` to ``--out``.
The sections live in `eval.bench_query`, `eval.bench_scale` and `eval.bench_reader`; the report in
`eval.bench_report`; what they share in `eval.bench_common`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from eval import bench_reader
from eval.bench_common import FULL, SMOKE, machine, run_worker, say
from eval.bench_query import (bench_cold_start, bench_memory, bench_precision, bench_query, worker_memory, worker_phases,
                              worker_query)
from eval.bench_report import check_goals, plot, render_markdown
from eval.bench_scale import (bench_ingestion, bench_scale, bench_scale_update, sentence_pool, worker_ingest,
                              worker_model, worker_open, worker_update)
from eval.bench_update import bench_small_updates, worker_small_update
from rag.config import REPO_ROOT


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
    sections = {"update": lambda: bench_small_updates(plan, work, env, model, pool, pool_vectors),
                "scale_update": lambda: bench_scale_update(plan, work, env, model, pool, pool_vectors),
                "query": lambda: bench_query(plan, work, env, out),
                "precision": lambda: bench_precision(plan, work, env),
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


WORKERS = {"model": worker_model, "query": worker_query, "precision": bench_reader.worker_precision, "memory": worker_memory, "ingest": worker_ingest,
           "phases": worker_phases, "open": worker_open, "update": worker_update, "small_update": worker_small_update}

if __name__ == "__main__":
    print(json.dumps(WORKERS[sys.argv[1]](json.loads(sys.argv[2]))))
