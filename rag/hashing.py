"""Content hashes: of an article (what decides whether it is embedded again), and of files,
remembered while a file's size and mtime stay the same (fingerprints of models and indexes hash the
same large files again and again)."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from rag.types import Article


def content_hash(article: Article) -> str:
    """What decides whether an article must be re-embedded."""
    payload = json.dumps([article.title, article.text, article.date, article.url], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)
