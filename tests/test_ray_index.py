"""``sanad index DIR --ray``: a real local Ray (2 CPUs) builds the index the single process builds.

One CLI run (~1-2 min: Ray starts, an actor loads the model) over a copy of the seeds.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from rag.chatbot import default_index_dir
from rag.config import REPO_ROOT
from rag.indexing import manifest_for
from rag.store import open_index

pytestmark = pytest.mark.service


def test_ray_index_equals_the_single_process_index(seeds_corpus_copy, seeds_index, config, embedder, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(config.cache_dir / "models", target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    env.update(SANAD_CACHE_DIR=str(cache),  # Ray starts locally with this machine's 2 CPUs
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "rag.cli", "index", str(seeds_corpus_copy), "--ray"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "added 5" in done.stdout
    index_dir = default_index_dir(config.replace(cache_dir=cache), seeds_corpus_copy)
    ray_index = open_index(index_dir, manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim))
    assert len(ray_index) == len(seeds_index)
    assert [ray_index.chunk(row) for row in range(len(ray_index))] == [seeds_index.chunk(row)
                                                                       for row in range(len(seeds_index))]
    cosines = np.sum(ray_index.chunk_vectors() * seeds_index.chunk_vectors(), axis=1)
    assert cosines.min() >= 0.999  # the same model; bfloat16 batches may round differently
