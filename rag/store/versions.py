"""Versions on disk: the manifest behind ``current``, writing a version and switching ``current`` to
it atomically, the writers' lock, and removing what interrupted writes and older versions leave."""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from rag.errors import StoreError

TABLES = "tables"  # the folder of tombstones and files-table parts, shared by versions


def read_manifest(index_dir: Path) -> tuple[Path, dict]:
    current = index_dir / "current"
    if not current.exists():
        raise StoreError(f"no index at {index_dir}; build it with `sanad index`")
    try:
        version = current.resolve(strict=True)
        manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"the index at {index_dir} is unreadable ({exc}); delete the folder to rebuild it") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("segments", []), list):
        raise StoreError(f"the index at {index_dir} has a damaged manifest; delete the folder to rebuild it")
    return version, manifest


def write_version(index_dir: Path, manifest: dict, tables: dict[str, bytes]) -> Path:
    """Write the new ``tables`` (tombstones, files-table parts: immutable files a version refers to by
    name, so unchanged ones are shared rather than copied), then the version folder, then switch."""
    name = f"v-{uuid.uuid4().hex[:12]}"
    temporary = index_dir / f".tmp-{name}"
    try:
        if tables:
            (index_dir / TABLES).mkdir(exist_ok=True)
        for table, data in tables.items():  # a crash leaves files no manifest names: removed by `prune`
            partial = index_dir / TABLES / f".tmp-{table}"
            partial.write_bytes(data)
            os.replace(partial, index_dir / TABLES / table)
        temporary.mkdir()
        (temporary / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        final = index_dir / name
        os.rename(temporary, final)
        link = index_dir / f".tmp-link-{name}"
        os.symlink(name, link)
        os.replace(link, index_dir / "current")  # the atomic switch
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(index_dir / f".tmp-link-{name}")
        raise StoreError(f"cannot write the index to {index_dir}: {exc}") from exc
    return final


def array_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of its .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def clean(index_dir: Path) -> None:
    """Remove what interrupted writes left behind, unless a writer is at work right now."""
    lock = Path(index_dir) / ".lock"
    if not lock.exists():
        return
    with contextlib.suppress(OSError), open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            clean_locked(Path(index_dir))
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean_locked(index_dir: Path) -> None:
    try:
        version, manifest = read_manifest(index_dir)
    except StoreError:
        version, manifest = None, None
    for entry in index_dir.iterdir():
        if entry.name.startswith((".tmp-", ".link-")):  # a write, or a switch, killed midway
            _remove(entry)
    if manifest is not None:
        prune(index_dir, version, manifest)


def prune(index_dir: Path, keep: Path, manifest: dict) -> None:
    """Delete versions other than ``keep``, and segments and tables its manifest does not name."""
    segments = [entry for entry in manifest.get("segments", []) if isinstance(entry, dict)]
    names = {entry["name"] for entry in segments}
    tables = {entry["dead"] for entry in segments if entry.get("dead")}
    tables |= {part["name"] for part in manifest.get("files", []) if isinstance(part, dict)}
    for entry in index_dir.iterdir():
        if entry.name.startswith("v-") and entry.name != keep.name:
            _remove(entry)
    for folder, keep_names in (("segments", names), (TABLES, tables)):
        if (index_dir / folder).is_dir():
            for entry in (index_dir / folder).iterdir():
                if entry.name not in keep_names:
                    _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def locked(index_dir: Path):
    """One writer at a time per index folder, across processes."""
    with open(index_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
