"""The `sanad` command, run as a subprocess the way a user runs it.

The subprocesses get their own cache dir (so their indexes land in a tmp dir) whose `models`
entry links to the session's model folder, so nothing is rebuilt.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KURSK_AR = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
KURSK_SEED = "004_d287910d6ae0b8d5.txt"
SANAD = Path(sys.executable).parent / "sanad"


@pytest.fixture(scope="session")
def cli_env(embedder, config, tmp_path_factory) -> dict:
    if not SANAD.exists():
        pytest.skip(f"{SANAD} is not installed (pip install -e .)")
    cache = tmp_path_factory.mktemp("cli-cache")
    (cache / "models").symlink_to(Path(config.cache_dir) / "models", target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANAD_")}
    env.update(SANAD_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def sanad(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SANAD), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def cli_corpus(seeds_dir, tmp_path_factory) -> Path:
    corpus = tmp_path_factory.mktemp("cli-corpus")
    shutil.copy(seeds_dir / KURSK_SEED, corpus / KURSK_SEED)
    return corpus


@pytest.fixture(scope="session")
def indexed(cli_env, cli_corpus) -> subprocess.CompletedProcess:
    return sanad(cli_env, "index", str(cli_corpus))


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(r"sanad: ", lines[0]) and re.search(pattern, lines[0]), lines[0]
    assert result.stdout == ""


def test_index_builds_and_prints_counts(indexed, cli_env):
    assert indexed.returncode == 0, indexed.stderr
    match = re.search(r"Index ready at (\S+): 1 articles, (\d+) chunks "
                      r"\(added 1, changed 0, removed 0, unchanged 0\)\.", indexed.stdout)
    assert match, indexed.stdout
    assert int(match.group(2)) > 1
    index_dir = Path(match.group(1))
    assert index_dir.is_relative_to(Path(cli_env["SANAD_CACHE_DIR"]))
    assert (index_dir / "current" / "manifest.json").is_file()
    assert "Traceback" not in indexed.stderr


def test_ask_json_prints_an_answer_with_exact_citations(indexed, cli_env, cli_corpus):
    result = sanad(cli_env, "ask", KURSK_AR, "--corpus", str(cli_corpus), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) >= {"text", "abstained", "citations"}
    assert answer["abstained"] is False and answer["citations"]
    text = (cli_corpus / KURSK_SEED).read_bytes().decode("utf-8")
    for citation in answer["citations"]:
        assert citation["source"] == KURSK_SEED
        assert text[citation["start"]:citation["end"]] == citation["quote"]
        assert f"[{citation['n']}]" in answer["text"] or citation["related"]


def test_ask_empty_question_is_one_line_and_exit_2(indexed, cli_env, cli_corpus):
    result = sanad(cli_env, "ask", "", "--corpus", str(cli_corpus))
    assert_one_line_error(result, "the question is empty")


def test_index_of_a_missing_folder_is_one_line_and_exit_2(cli_env, tmp_path):
    missing = tmp_path / "nonexistent"
    result = sanad(cli_env, "index", str(missing))
    assert_one_line_error(result, f"corpus folder not found: {re.escape(str(missing))}")


def test_index_of_a_folder_with_a_binary_file_skips_it_with_one_line(cli_env, tmp_path):
    (tmp_path / "good.txt").write_text("خبر قصير عن كورسك.", encoding="utf-8")
    (tmp_path / "scan.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "old.txt").write_bytes("خبر قديم عن كورسك.".encode("cp1256"))
    result = sanad(cli_env, "index", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "2 articles" in result.stdout and "skipped 1 file)" in result.stdout
    assert "skipped scan.txt: looks like a binary file, not text\n" in result.stdout


def test_strict_index_of_a_folder_with_a_binary_file_is_exit_2(cli_env, tmp_path):
    (tmp_path / "good.txt").write_text("خبر قصير عن كورسك.", encoding="utf-8")
    (tmp_path / "scan.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    result = sanad(cli_env, "index", "--strict", str(tmp_path))
    assert_one_line_error(result, r"scan\.txt: looks like a binary file")
    assert not list((Path(cli_env["SANAD_CACHE_DIR"]) / "indexes").glob(f"{tmp_path.name}-*/current"))


def test_remove_of_an_article_that_is_not_an_upload_is_one_line_and_exit_2(indexed, cli_env, cli_corpus):
    result = sanad(cli_env, "remove", KURSK_SEED, "--corpus", str(cli_corpus))
    assert_one_line_error(result, "belongs to the corpus folder")
