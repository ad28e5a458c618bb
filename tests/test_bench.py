"""`sanad bench --smoke`: every section runs and the report is well-formed. Never asserts on timings.

The smoke bench runs once per module (a few minutes: every measurement is a fresh process) through
the real CLI; its workers get a cache dir inside the output folder, sharing the session's model.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from eval import bench, bench_common, bench_scale
from rag.config import REPO_ROOT

SECTIONS = ("update", "scale_update", "query", "ingestion", "cold_start", "scale", "memory")


@pytest.fixture(scope="module")
def smoke(embedder, tmp_path_factory):
    """(exit code, output folder, stdout+stderr) of one ``sanad bench --smoke``."""
    out = tmp_path_factory.mktemp("bench") / "out"
    done = subprocess.run([sys.executable, "-m", "rag.cli", "bench", "--smoke", "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=1800)
    return done.returncode, out, done.stdout + done.stderr


@pytest.fixture(scope="module")
def report(smoke) -> dict:
    code, out, log = smoke
    assert code == 0, log[-3000:]
    return json.loads((out / "bench.json").read_text(encoding="utf-8"))


def _figures(node):
    """Every {median, min, max, runs} dict inside the report."""
    if isinstance(node, dict):
        if {"median", "min", "max", "runs"} <= node.keys():
            yield node
        for value in node.values():
            yield from _figures(value)
    elif isinstance(node, list):
        for value in node:
            yield from _figures(value)


@pytest.mark.slow
def test_every_section_ran(report):
    assert report["errors"] == {}
    assert all(report["sections"][name] for name in SECTIONS)
    assert report["smoke"] is True and report["machine"]["cores"] >= 1 and report["machine"]["cpu"]


@pytest.mark.slow
def test_figures_are_medians_with_their_spread(report):
    figures = list(_figures(report["sections"]))
    assert len(figures) > 20
    for figure in figures:
        assert figure["runs"] >= 1 and figure["min"] <= figure["median"] <= figure["max"]


@pytest.mark.slow
def test_query_section_has_latency_floor_and_profile(report):
    query = report["sections"]["query"]
    assert {"ask_p50", "ask_p95", "floor_p50", "floor_p95", "retrieve_p50", "reader_p50", "reader_p95",
            "answer_p50"} <= query["figures_ms"].keys()
    assert query["figures_ms"]["ask_p50"]["runs"] == bench_common.SMOKE.rounds
    assert query["chunks"] > 0 and query["profile"] and query["peak_rss_mib"] > 0


@pytest.mark.slow
def test_precision_section_times_each_precision_and_counts_changed_answers(report):
    section = report["sections"]["precision"]
    assert list(section) == ["float32", "bfloat16", "int8"] and sum(p["default"] for p in section.values()) == 1
    for name, p in section.items():
        assert {"floor_p50", "forward_p50", "ask_p50", "ask_p95", "ask_over_floor"} <= p["figures_ms"].keys()
        assert p["questions"] == bench_common.SMOKE.questions and p["tokens_per_question"] > 0
        assert (p["answers_changed"] is None) == (name == "float32")
        assert (p["passes_s"] is not None) == p["default"]
    assert any(name.startswith("warm ask p50 <= 4x embedding") for name in report["goals"])


@pytest.mark.slow
def test_ingestion_compares_with_llama_index_on_the_same_chunks(report):
    for corpus in ("xquad-ar", "synthetic"):
        result = report["sections"]["ingestion"][corpus]
        assert result["chunks"] > 0 and result["sentences"] >= result["chunks"] // 2
        ray = {"ray_index", "ray_embedding", "ray_per_actor"} if corpus == "xquad-ar" else set()
        assert set(result["chunks_per_s"]) == {"llama_index", "llama_index_same_threads", "sanad_chunk_pass",
                                               "sanad_index"} | ray
        assert set(result["speedup"]) == {f"{sanad}_vs_{base}" for sanad in ("sanad_chunk_pass", "sanad_index")
                                          for base in ("llama_index", "llama_index_same_threads")}


@pytest.mark.slow
def test_cold_start_scale_and_memory(report):
    cold = report["sections"]["cold_start"]
    assert set(cold["seconds"]) == {"sanad_ask", "import_sentence_transformers"} and cold["phases"]
    corpora = report["sections"]["scale"]["corpora"]
    assert list(corpora) == [str(n) for n in bench_common.SMOKE.scale_chunks]
    for result in corpora.values():
        assert result["chunks"] == bench_common.SMOKE.scale_chunks[0]
        assert 0.0 <= result["recall"]["recall@10"] <= 1.0 and result["peak_rss_mib"] > 0
    assert set(report["sections"]["memory"]) == {"chat", "model"}
    assert set(report["goals"]) and all(isinstance(met, bool) for met in report["goals"].values())


@pytest.mark.slow
def test_update_section_uploads_and_removes_at_every_corpus_size(report):
    section = report["sections"]["update"]
    assert list(section["models"]) == list(bench_common.SMOKE.update_models)
    for model, corpora in section["models"].items():
        assert list(corpora) == [str(n) for n in bench_common.SMOKE.update_corpora]
        for count, result in corpora.items():
            assert result["articles"] == int(count) and result["segments"] >= 1
            for step in ("add_files_s", "remove_s", "index_add_s", "index_remove_s"):
                assert result[step]["median"] > 0
        assert section["add_files_over_smallest"][model][str(min(bench_common.SMOKE.update_corpora))] == 1.0
    assert any(goal.startswith("tiny model: uploading") for goal in report["goals"])


@pytest.mark.slow
def test_scale_update_section_adds_articles_to_every_scale_index(report):
    corpora = report["sections"]["scale_update"]["corpora"]
    assert list(corpora) == [str(n) for n in bench_common.SMOKE.scale_chunks]
    for result in corpora.values():
        assert result["articles"] == bench_common.SMOKE.update_articles and result["new_chunks"] >= result["articles"]
        assert result["update_s"]["median"] > 0 and result["embed_s"]["median"] > 0
        assert result["open_rss_mib"]["median"] >= result["model_rss_mib"]["median"] > 0


@pytest.mark.slow
def test_markdown_and_plot_are_written(smoke, report):
    _, out, _ = smoke
    markdown = (out / "bench.md").read_text(encoding="utf-8")
    for heading in ("## Small updates", "## Updates", "## Query path", "## Ingestion", "## Cold start", "## Scale", "## Memory", "## Goals"):
        assert heading in markdown
    assert report["machine"]["cpu"] in markdown and "sanad bench --smoke" in markdown
    assert all(line.count("|") >= 3 for line in markdown.splitlines() if line.startswith("|"))
    assert (out / "latency_vs_corpus.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_synthetic_sentences_slice_back_to_the_pool():
    pool = [f"جملة رقم {i} عن الأخبار." for i in range(40)]
    articles = bench_scale.synthetic_articles(5, pool, seed=3)
    for text, spans in articles:
        assert len(spans) == bench_scale.CHUNK_STRIDE * bench_scale.CHUNKS_PER_ARTICLE + 1
        assert all(text[start:end] == pool[pool_id] for pool_id, start, end in spans)


def test_spread_and_percentile():
    assert bench_common.spread([3, 1, 2]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}
    assert bench_common.percentile(np.arange(101), 95) == pytest.approx(95.0)
