"""An update: compare the articles with the current version, have only the new and changed ones
prepared (chunked and embedded by the caller's ``prepare``), write one new segment and the
tombstones, merge segments by size tier, and switch versions."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rag.config import StoreConfig
from rag.errors import IndexMismatchError, StoreError
from rag.hashing import content_hash
from rag.store.index import Index
from rag.store.opening import files_table, load_version, open_index, read_files_part
from rag.store.segment import Prepared, Segment, merged_data, segment_data, write_segment
from rag.store.versions import array_bytes, clean_locked, locked, prune, read_manifest, write_version
from rag.types import Article
from rag.version import __version__

MERGE_FACTOR = 8  # this many segments of one size tier are merged into one
TIER_CHUNKS = 1024  # segments under this many chunks share the smallest tier
EXPUNGE_SHARE = 0.3  # a segment with this share of dead chunks is rewritten without them
Prepare = Callable[[list[Article]], list[Prepared]]  # chunks and embeds the new and changed articles


@dataclass(frozen=True)
class UpdateReport:
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    rebuilt_because: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # (file, reason) for each file left out of the index
    merged: int = 0  # segments merged into others by this update


@dataclass(frozen=True)
class Change:
    """An update given as what changed (an upload, a removal): articles to add or replace (one whose
    content is unchanged is kept, not embedded again), article ids to remove, and the corpus files
    table's changed entries ({path: [size, mtime_ns, [ids]]}, None for a file that is gone)."""

    upsert: tuple[Article, ...] = ()
    remove: tuple[str, ...] = ()
    files: dict = dataclasses.field(default_factory=dict)


def apply_change(index_dir: Path, change: Change, expected: dict, prepare: Prepare, *,
                 index: Index | None = None) -> tuple[Index, UpdateReport]:
    """Apply ``change`` to the current version, built as ``expected`` says (the manifest to agree
    with and write; else `IndexMismatchError`). Its cost follows the change, not the corpus: ids are
    found by binary search in each segment, ``index`` (the caller's open version, if still current)
    is not opened again, and only new segments and tombstones are read after the switch."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with locked(index_dir):
        clean_locked(index_dir)
        old = _current(index_dir, expected, index)
        return _apply(index_dir, old, expected, list(change.upsert), list(change.remove), change.files, prepare)


def update_index(index_dir: Path, articles: list[Article], expected: dict, prepare: Prepare, *,
                 unchanged: Iterable[str] = (), files: dict | None = None,
                 index: Index | None = None) -> tuple[Index, UpdateReport]:
    """Bring the index in line with ``articles`` plus the ``unchanged`` ones (every other article is
    removed), having ``prepare`` chunk and embed only what is new or changed. An index built other
    than ``expected`` (the manifest to agree with and write) is rebuilt. ``unchanged``: ids of indexed
    articles the caller knows did not change (their files' size and mtime are as recorded in
    ``files``, the whole files table to record; None leaves it as it is), kept without being read.
    What is gone is found from the files table when it accounts for every indexed article, else by
    listing every indexed id. A caller that knows what changed (an upload) uses `apply_change`."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with locked(index_dir):
        clean_locked(index_dir)
        old, rebuilt_because = None, None
        try:
            old = _current(index_dir, expected, index)
        except IndexMismatchError as exc:
            rebuilt_because = str(exc)
        except StoreError as exc:
            if (index_dir / "current").exists() or (index_dir / "current").is_symlink():
                rebuilt_because = str(exc)
        if rebuilt_because:
            print(f"Rebuilding the index: {rebuilt_because}.", file=sys.stderr)
        articles, unchanged = list(articles), list(unchanged)
        if unchanged and old is None:  # a rebuild: read what the caller did not, from the old version's texts
            articles += _texts_of(index_dir, unchanged)
            unchanged = []
        given = {article.id for article in articles}
        if len(given) != len(articles) or not given.isdisjoint(unchanged):
            raise StoreError("two articles share an id; give every file a distinct path")
        delta, known = {}, files_table(index_dir) if old and files is not None else {}
        if files is not None:  # None: the files table stays as it is
            delta = {path: entry for path, entry in files.items() if known.get(path) != entry}
            delta.update((path, None) for path in known if path not in files)
        gone = _gone_by_files(old, known, delta, articles) if old and files is not None else None
        if gone is None:  # list every indexed id to find what is gone
            live = set(old.article_hashes()) if old else set()
            missing = [article_id for article_id in unchanged if article_id not in live]
            if missing:
                raise StoreError(f"{missing[0]} is not in the index at {index_dir}; run the update again")
            gone = live - given - set(unchanged)
        index, report = _apply(index_dir, old, expected, articles, sorted(gone), delta, prepare)
    return index, dataclasses.replace(report, rebuilt_because=rebuilt_because)


def _gone_by_files(old: Index, known: dict, delta: dict, articles: list[Article]) -> set[str] | None:
    """What is gone, from the files table alone: the articles of files that changed or went, less
    those given again. None unless every live article is a file's (as recorded) or one of
    ``articles`` not read from a file (a document held in memory), as then nothing else can be gone."""
    read = {article_id for entry in delta.values() if entry is not None for article_id in entry[2]}
    documents = [article.id for article in articles if article.id not in read]
    recorded = sum(len(entry[2]) for entry in known.values())
    if recorded + sum(place is not None for place in old.locate(documents)) != old.article_count:
        return None
    given = {article.id for article in articles}
    return {article_id for path in delta if path in known for article_id in known[path][2]} - given


def _current(index_dir: Path, expected: dict, index: Index | None) -> Index | None:
    """The current version: ``index`` if it still is, else opened (None when there is none yet)."""
    current = index_dir / "current"
    if index is not None and current.exists() and current.resolve() == Path(index.path).resolve():
        return index
    if not current.exists() and not current.is_symlink():
        return None
    return open_index(index_dir, expected)


def _apply(index_dir: Path, old: Index | None, expected: dict, upserts: list[Article], removals: list[str],
           files: dict, prepare: Prepare) -> tuple[Index, UpdateReport]:
    """Find the upserted and removed ids in ``old``, prepare what is new or changed, and write the
    version (or keep ``old`` when nothing changes)."""
    hashes = {article.id: content_hash(article) for article in upserts}
    if len(hashes) != len(upserts) or any(article_id in hashes for article_id in removals):
        raise StoreError("two articles share an id; give every file a distinct path")
    ids = list(hashes) + list(dict.fromkeys(removals))
    places = dict(zip(ids, old.locate(ids) if old else [None] * len(ids)))
    fresh, dead, added, changed, removed = [], {}, 0, 0, 0
    for article in upserts:
        place = places[article.id]
        if place is not None and old.parts[place[0]].segment.content_hash(place[1]) == hashes[article.id]:
            continue
        fresh.append(article)
        added, changed = added + (place is None), changed + (place is not None)
        if place is not None:
            dead.setdefault(place[0], []).append(place[1])
    for article_id in ids[len(hashes):]:
        if places[article_id] is not None:
            removed += 1
            dead.setdefault(places[article_id][0], []).append(places[article_id][1])
    report = UpdateReport(added=added, changed=changed, removed=removed,
                          unchanged=(old.article_count if old else 0) - changed - removed)
    if old is not None and not fresh and not dead and not files:
        return old, report
    index, merged = _write_update(index_dir, old, expected, prepare(fresh) if fresh else [],
                                  {number: np.array(rows, np.int64) for number, rows in dead.items()}, files)
    return index, dataclasses.replace(report, merged=merged)


def _texts_of(index_dir: Path, article_ids: list[str]) -> list[Article]:
    """Articles read back from the current version's segments, whatever its settings or format."""
    try:
        version, manifest = read_manifest(index_dir)
        wanted = set(article_ids)
        found = {article.id: article for article in load_version(index_dir, version, manifest, search=False).articles
                 if article.id in wanted}
        return [found[article_id] for article_id in article_ids]
    except (StoreError, KeyError, OSError, ValueError) as exc:
        raise StoreError(f"the index at {index_dir} must be rebuilt but its texts cannot be read ({exc}); "
                         "delete the folder and index again") from exc


def _write_update(index_dir: Path, old: Index | None, expected: dict, prepared: list[Prepared],
                  dead: dict[int, np.ndarray], files: dict) -> tuple[Index, int]:
    """New segment, tombstones, merges, then the version switch; the old files are removed last.
    ``dead``: the article rows that die, by position in ``old.parts``. Segments with no new deaths
    keep their manifest entry and tombstone file as they are."""
    store, milvus = StoreConfig(**expected["store"]), None
    if store.backend == "milvus":
        from rag.milvus import MilvusWriter

        milvus = MilvusWriter(index_dir, old.manifest if old else None, store, expected["dim"])
    tables: dict[str, bytes] = {}
    slots: list[_Slot] = []
    newly_dead_keys = [np.zeros(0, np.int64)]
    for number, part in enumerate(old.parts if old else []):
        entry, rows = dict(old.manifest["segments"][number]), dead.get(number)
        alive = part.alive
        if rows is not None:
            segment = part.segment
            alive = np.ones(segment.article_count, bool) if part.alive is None else part.alive.copy()
            alive[rows] = False
            starts, stops = np.asarray(segment.article_chunks[rows]), np.asarray(segment.article_chunks[rows + 1])
            newly_dead_keys += [np.asarray(segment.keys[a:b]) for a, b in zip(starts.tolist(), stops.tolist())]
            entry.update(chunks=entry["chunks"] - int((stops - starts).sum()), articles=entry["articles"] - len(rows),
                         sentences=entry["sentences"] - int(segment.sentence_counts(rows).sum()),
                         dead=f"dead-{segment.name}-{uuid.uuid4().hex[:8]}.npy")
            tables[entry["dead"]] = array_bytes(np.flatnonzero(~alive).astype(np.int64))
        slots.append(_Slot(part.segment, alive, entry))
    next_key = old.manifest["next_key"] if old else 0
    if prepared:
        data = segment_data(prepared, next_key)
        next_key += len(data.keys)
        if milvus:
            milvus.insert(data.keys, data.vectors, data.chunk_terms)
        slots.append(_new_slot(write_segment(index_dir, data, store), data))
    merged, replaced = 0, {}
    for group in plan_merges([(len(slot.segment), slot.entry["chunks"]) for slot in slots]):
        sources = [(slots[i].segment, slots[i].alive_mask()) for i in group]
        if milvus:  # the merge drops dead chunks for good: make sure Milvus has them deleted too
            milvus.delete(np.concatenate([np.asarray(s.keys)[~s.live_chunks(alive)] for s, alive in sources]))
        replaced.update((i, None) for i in group)
        if any(slots[i].entry["articles"] for i in group):
            data = merged_data(sources)
            replaced[group[0]] = _new_slot(write_segment(index_dir, data, store), data)
        merged += len(group)
    slots = [replaced[i] if i in replaced else slot for i, slot in enumerate(slots)]
    entries = [slot.entry for slot in slots if slot is not None and slot.entry["articles"]]
    file_parts = list(old.manifest.get("files", [])) if old else []
    if files:
        name = f"files-{uuid.uuid4().hex[:12]}.json"
        tables[name] = json.dumps(files, ensure_ascii=False).encode("utf-8")
        file_parts = _compact_files(index_dir, file_parts + [{"name": name, "entries": len(files)}], tables)
    manifest = {**expected, "sanad_version": __version__, "segments": entries, "next_key": next_key,
                "chunks": sum(e["chunks"] for e in entries), "sentences": sum(e["sentences"] for e in entries),
                "articles": sum(e["articles"] for e in entries), "files": file_parts}
    if milvus:
        manifest["milvus_collection"] = milvus.collection
    version = write_version(index_dir, manifest, tables)
    if milvus:
        milvus.delete(np.concatenate(newly_dead_keys))
    prune(index_dir, version, manifest)
    return load_version(index_dir, version, manifest, reuse=old), merged


@dataclass(frozen=True)
class _Slot:
    """A segment in the version being written: its live articles (None: all) and manifest entry."""

    segment: Segment
    alive: np.ndarray | None
    entry: dict

    def alive_mask(self) -> np.ndarray:
        return np.ones(self.segment.article_count, bool) if self.alive is None else self.alive


def _new_slot(segment: Segment, data) -> _Slot:
    return _Slot(segment, None, {"name": segment.name, "dead": None, "chunks": len(data.keys),
                                 "sentences": len(data.sentence_table), "articles": len(data.ids)})


def _compact_files(index_dir: Path, parts: list[dict], tables: dict[str, bytes]) -> list[dict]:
    """Merge the newest files-table parts while the older of the last two is at most twice the
    newer: the parts stay logarithmic in number and each entry is rewritten a logarithmic number of
    times, so an update writes about what it changed. Entries of gone files are dropped once their
    part is the oldest."""
    while len(parts) >= 2 and parts[-2]["entries"] <= 2 * parts[-1]["entries"]:
        older, newer = (json.loads(tables.pop(p["name"])) if p["name"] in tables else read_files_part(index_dir, p["name"])
                        for p in parts[-2:])  # a part written by this update and merged at once is never written
        table = {**older, **newer}
        if len(parts) == 2:
            table = {path: entry for path, entry in table.items() if entry is not None}
        name = f"files-{uuid.uuid4().hex[:12]}.json"
        tables[name] = json.dumps(table, ensure_ascii=False).encode("utf-8")
        parts = parts[:-2] + [{"name": name, "entries": len(table)}]
    return parts


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
