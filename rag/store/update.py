"""An update: compare the articles with the current version, embed only what is new or changed,
write one new segment and the tombstones, merge segments by size tier, and switch versions."""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rag.chunking import chunk_article
from rag.config import SanadConfig, StoreConfig
from rag.errors import IndexMismatchError, StoreError
from rag.ingest import content_hash
from rag.store.index import Index
from rag.store.opening import files_table, load_version, manifest_for, open_index
from rag.store.segment import Prepared, Segment, merged_data, segment_data, write_segment
from rag.store.versions import clean_locked, locked, prune, read_manifest, write_version
from rag.types import Article
from rag.version import __version__

EMBED_SLICE = 512  # texts per encode call: large enough for length-sorted batches, small enough to show progress
MERGE_FACTOR = 8  # this many segments of one size tier are merged into one
TIER_CHUNKS = 1024  # segments under this many chunks share the smallest tier
EXPUNGE_SHARE = 0.3  # a segment with this share of dead chunks is rewritten without them
Progress = Callable[[int, int, str], None]  # (done, total, what)


@dataclass(frozen=True)
class UpdateReport:
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    rebuilt_because: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # (file, reason) for each file left out of the index
    merged: int = 0  # segments merged into others by this update


def prepare_articles(articles: list[Article], embedder, config: SanadConfig, progress: Progress | None = None) -> list[Prepared]:
    """Chunk and embed articles in this process (one length sort over all their chunks)."""
    chunked = [(article, chunk_article(article, config.chunk)) for article in articles]
    texts = [chunk.text for _, chunks in chunked for chunk in chunks]
    if progress:
        progress(0, len(texts), "embedding")
    vectors = embed_texts(embedder, texts, progress)
    prepared, at = [], 0
    for article, chunks in chunked:
        prepared.append(Prepared(article, content_hash(article), tuple(chunks), vectors[at:at + len(chunks)]))
        at += len(chunks)
    return prepared


def update_index(index_dir: Path, articles: list[Article], embedder, config: SanadConfig,
                 progress: Progress | None = None, *, unchanged: Iterable[str] = (), files: dict | None = None,
                 prepare: Callable | None = None) -> tuple[Index, UpdateReport]:
    """Bring the index in line with ``articles`` plus the ``unchanged`` ones, embedding only what is
    new or changed. ``unchanged``: ids of indexed articles the caller knows did not change (their
    files' size and mtime are as recorded in ``files``), which are kept without being read.
    ``prepare(articles) -> list[Prepared]`` chunks and embeds elsewhere (e.g. on Ray)."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    expected = manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)
    prepare = prepare or (lambda fresh: prepare_articles(fresh, embedder, config, progress))
    with locked(index_dir):
        clean_locked(index_dir)
        old, rebuilt_because = None, None
        try:
            old = open_index(index_dir, expected)
        except IndexMismatchError as exc:
            rebuilt_because = str(exc)
        except StoreError as exc:
            if (index_dir / "current").exists() or (index_dir / "current").is_symlink():
                rebuilt_because = str(exc)
        if rebuilt_because:
            print(f"Rebuilding the index: {rebuilt_because}.", file=sys.stderr)
        unchanged = list(unchanged)
        live = old.article_hashes() if old else {}
        if unchanged and old is None:  # a rebuild: read what the caller did not, from the old version's texts
            articles = list(articles) + _texts_of(index_dir, unchanged)
            unchanged = []
        hashes = {article.id: content_hash(article) for article in articles}
        if len(hashes) != len(articles) or any(article_id in hashes for article_id in unchanged):
            raise StoreError("two articles share an id; give every file a distinct path")
        missing = [article_id for article_id in unchanged if article_id not in live]
        if missing:
            raise StoreError(f"{missing[0]} is not in the index at {index_dir}; run the update again")
        kept = set(unchanged) | {a for a, h in hashes.items() if live.get(a) == h}
        report = UpdateReport(
            added=sum(1 for a in hashes if a not in live),
            changed=sum(1 for a, h in hashes.items() if a in live and live[a] != h),
            removed=sum(1 for a in live if a not in hashes and a not in kept),
            unchanged=len(kept), rebuilt_because=rebuilt_because)
        fresh = [a for a in articles if a.id not in kept]
        if old is not None and not fresh and not report.removed and (files is None or files == files_table(index_dir)):
            return old, report
        dead_ids = {a for a in live if a not in kept}
        index, merged = _write_update(index_dir, old, expected, prepare(fresh) if fresh else [], dead_ids, files,
                                      config.store)
    return index, dataclasses.replace(report, merged=merged)


def _texts_of(index_dir: Path, article_ids: list[str]) -> list[Article]:
    """Articles read back from the current version's segments, whatever its settings."""
    try:
        version, manifest = read_manifest(index_dir)
        stored = load_version(index_dir, version, manifest, search=False)
        return [stored.article(article_id) for article_id in article_ids]
    except (StoreError, KeyError, OSError, ValueError) as exc:
        raise StoreError(f"the index at {index_dir} must be rebuilt but its texts cannot be read ({exc}); "
                         "delete the folder and index again") from exc


def _write_update(index_dir: Path, old: Index | None, expected: dict, prepared: list[Prepared],
                  dead_ids: set[str], files: dict | None, store: StoreConfig) -> tuple[Index, int]:
    """New segment, tombstones, merges, then the version switch; the old files are removed last."""
    milvus = None
    if store.backend == "milvus":
        from rag.milvus import MilvusWriter

        milvus = MilvusWriter(index_dir, old.manifest if old else None, store, expected["dim"])
    pairs: list[tuple[Segment, np.ndarray]] = []  # (segment, which of its articles are alive)
    newly_dead_keys = [np.zeros(0, np.int64)]
    for number, segment in enumerate(old.segments if old else []):
        alive = np.ones(segment.article_count, bool) if old._alive[number] is None else old._alive[number].copy()
        ids = segment.catalog[0]
        for row in np.flatnonzero(alive).tolist():
            if ids[row] in dead_ids:
                alive[row] = False
                newly_dead_keys.append(np.asarray(segment.keys[segment.article_chunks[row]:segment.article_chunks[row + 1]]))
        pairs.append((segment, alive))
    next_key = old.manifest["next_key"] if old else 0
    if prepared:
        data = segment_data(prepared, next_key)
        next_key += len(data.keys)
        if milvus:
            milvus.insert(data.keys, data.vectors, data.chunk_terms)
        pairs.append((write_segment(index_dir, data, store), np.ones(len(prepared), bool)))
    merged, replaced = 0, {}
    for group in plan_merges([(len(s), int(s.live_chunks(alive).sum())) for s, alive in pairs]):
        sources = [pairs[i] for i in group]
        if milvus:  # the merge drops dead chunks for good: make sure Milvus has them deleted too
            milvus.delete(np.concatenate([np.asarray(s.keys)[~s.live_chunks(alive)] for s, alive in sources]))
        replaced.update((i, None) for i in group)
        if any(alive.any() for _, alive in sources):
            segment = write_segment(index_dir, merged_data(sources), store)
            replaced[group[0]] = (segment, np.ones(segment.article_count, bool))
        merged += len(group)
    pairs = [replaced.get(i, pair) if i in replaced else pair for i, pair in enumerate(pairs)]
    entries, dead_arrays = [], {}
    for segment, alive in (pair for pair in pairs if pair is not None and pair[1].any()):
        entry = {"name": segment.name, "dead": None, "chunks": int(segment.live_chunks(alive).sum()),
                 "sentences": int(alive[np.asarray(segment.sentence_table[:, 0])].sum()), "articles": int(alive.sum())}
        if not alive.all():
            entry["dead"] = f"dead-{segment.name}.npy"
            dead_arrays[entry["dead"]] = np.flatnonzero(~alive)
        entries.append(entry)
    manifest = {**expected, "sanad_version": __version__, "segments": entries, "next_key": next_key,
                "chunks": sum(e["chunks"] for e in entries), "sentences": sum(e["sentences"] for e in entries),
                "articles": sum(e["articles"] for e in entries)}
    if milvus:
        manifest["milvus_collection"] = milvus.collection
    version = write_version(index_dir, manifest, dead_arrays, files)
    if milvus:
        milvus.delete(np.concatenate(newly_dead_keys))
    prune(index_dir, version, manifest)
    return load_version(index_dir, version, manifest), merged


def plan_merges(sizes: list[tuple[int, int]]) -> list[list[int]]:
    """Groups of segment positions to merge, given (chunks, live chunks) per segment: any segment
    mostly dead on its own, and `MERGE_FACTOR` segments of one size tier (tier t holds segments of
    ``TIER_CHUNKS * MERGE_FACTOR**(t-1)`` chunks and up) into one. So there are at most
    ``MERGE_FACTOR - 1`` segments per tier, a logarithmic number in all, and each chunk is
    rewritten once per tier it climbs."""
    groups, taken = [], set()
    for i, (chunks, live) in enumerate(sizes):
        if chunks and live < (1 - EXPUNGE_SHARE) * chunks:
            groups.append([i])
            taken.add(i)
    tiers: dict[int, list[int]] = {}
    for i, (_, live) in enumerate(sizes):
        if i not in taken:
            tier = 0 if live < TIER_CHUNKS else 1 + int(math.log(live / TIER_CHUNKS, MERGE_FACTOR))
            tiers.setdefault(tier, []).append(i)
    for tier in sorted(tiers):
        members = tiers[tier]
        while len(members) >= MERGE_FACTOR:
            groups.append(members[:MERGE_FACTOR])
            members = members[MERGE_FACTOR:]
    return groups


def embed_texts(embedder, texts: list[str], progress) -> np.ndarray:
    """Embed in slices so the progress bar moves. All texts are sorted by length first (longest
    first, as sentence-transformers sorts within one call), so the batches of every slice pad little."""
    if not texts:
        return np.zeros((0, embedder.dim), np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    vectors = np.empty((len(texts), embedder.dim), np.float32)
    for at in range(0, len(texts), EMBED_SLICE):
        rows = order[at:at + EMBED_SLICE]
        vectors[rows] = embedder.encode_passages([texts[i] for i in rows])
        if progress:
            progress(min(at + EMBED_SLICE, len(texts)), len(texts), "embedding")
    return vectors
