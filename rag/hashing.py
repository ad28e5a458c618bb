"""Content hashes of files, remembered while a file's size and mtime stay the same (fingerprints of
models and indexes hash the same large files again and again)."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path


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
