"""How a ``sanad bench`` report is shown: the goals met or not, ``bench.md`` and the latency plot."""
from __future__ import annotations

import json
import time
from pathlib import Path


from eval import bench_reader
from eval.bench_common import GOALS


def check_goals(sections: dict) -> dict:
    goals = {}
    query, ingestion, cold, scale, update = (sections.get(k) for k in ("query", "ingestion", "cold_start", "scale",
                                                                        "scale_update"))
    small = sections.get("update")
    for count, ratio in ((small or {}).get("add_files_over_smallest", {}).get("tiny", {})).items():
        times = int(count) // min(map(int, small["models"]["tiny"]))
        if times in (10, 100):
            goals[f"tiny model: uploading 5 articles to {int(count):,} articles <= {GOALS[f'small_update_{times}x']}x "
                  f"to {int(count) // times:,}"] = ratio <= GOALS[f"small_update_{times}x"]
    for chunks, u in (update or {}).get("corpora", {}).items():
        goals[f"{int(chunks):,} chunks: adding articles <= 1.5x embedding them"] = \
            u["update_over_embed"]["median"] <= GOALS["update_over_embed"]
    if update:
        largest = update["corpora"][max(update["corpora"], key=int)]
        goals["largest corpus: open <= 2 s"] = largest["open_s"]["median"] <= GOALS["open_s"]
        goals["largest corpus: RSS before the first question <= 1.5 GiB"] = \
            largest["open_rss_mib"]["median"] <= GOALS["open_rss_mib"]
    for name, p in (sections.get("precision") or {}).items():
        if p["default"]:
            goals[f"warm ask p50 <= 4x embedding the question ({name}, the default here)"] = \
                p["figures_ms"]["ask_over_floor"]["median"] <= GOALS["ask_over_floor"]
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
    if s.get("precision"):
        lines += bench_reader.render(s["precision"], cell)
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
        u = s["update"]
        lines += ["", f"## Small updates as the corpus grows (flat index, {u['new_articles']} articles)", "",
                  "A chat process uploads the articles (`ChatBot.add_files`), removes them one file at a time, then "
                  "adds them as a file in the corpus folder and updates as `sanad index` does (folder scan, "
                  "`update_index`), and deletes that file again. Seconds, median of the rounds.", "",
                  "| model | articles | chunks | segments | upload 5 | / smallest | remove 1 | index +5 | index -5 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for model, corpora in u["models"].items():
            for count, c in corpora.items():
                lines.append(f"| {model} | {int(count):,} | {c['chunks']:,} | {c['segments']} | "
                             f"{cell(c['add_files_s'], 3)} | {u['add_files_over_smallest'][model][count]:.2f}x | "
                             f"{cell(c['remove_s'], 3)} | {cell(c['index_add_s'], 3)} | {cell(c['index_remove_s'], 3)} |")
    if s.get("scale_update"):
        lines += ["", f"## Updates: adding articles to the scale indexes ({json.dumps(s['scale_update']['index'])})", "",
                  "A chat process's update: scan the corpus (unchanged files are not read), then `update_index`; next "
                  "to embedding the same chunks alone. Open: a process with the model loaded opens the index.", "",
                  "| chunks | segments | open s | RSS after open MiB (model alone) | added articles (chunks) | update s | "
                  "embedding alone s | update / embedding | update peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
        for chunks, u in s["scale_update"]["corpora"].items():
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
    if not points:  # --only without query or scale
        return
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
