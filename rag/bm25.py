"""BM25 over Sanad's normalized, stemmed terms, as per-segment postings scored across segments.

The store is made of immutable segments with deletions as tombstones (`rag.store`). bm25s, which
the store used before, keeps one matrix for the whole corpus with the IDF baked into its scores,
so every update re-stemmed every chunk. Here each segment keeps raw postings (term -> chunk rows,
term frequencies, chunk lengths) as memory-mapped arrays; the corpus statistics (live chunks,
document frequency among live chunks, mean length) are taken at query time, so adding or deleting
an article never touches another segment's postings. The score is bm25s's "lucene" BM25 (k1 1.5,
b 0.75): idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf part = tf / (tf + k1 (1 - b + b dl / avgdl)),
a query term counted once per occurrence; `tests/test_bm25.py` checks the scores equal bm25s's.
Terms are keyed by a 64-bit BLAKE2b hash, so a vocabulary is a sorted uint64 array.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

K1, B = 1.5, 0.75
FILES = ("terms", "offsets", "rows", "freqs", "lengths")


def term_keys(terms: list[str]) -> np.ndarray:
    """The uint64 key of each term (stable across processes, unlike ``hash``)."""
    return np.array([int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
                     for t in terms], np.uint64)


@dataclass(frozen=True)
class Postings:
    """One segment's inverted index: for term ``terms[i]``, rows ``rows[offsets[i]:offsets[i+1]]``."""

    terms: np.ndarray  # (V,) uint64, sorted
    offsets: np.ndarray  # (V + 1,) int64
    rows: np.ndarray  # (P,) int32: the segment's chunk rows, ascending within a term
    freqs: np.ndarray  # (P,) uint16: occurrences of the term in the chunk
    lengths: np.ndarray  # (n,) int32: terms per chunk

    def save(self, folder: Path) -> None:
        for name in FILES:
            np.save(folder / f"bm25_{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: Path) -> "Postings":
        return cls(**{name: np.load(folder / f"bm25_{name}.npy", mmap_mode="r") for name in FILES})

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Position of each key in ``terms``, or -1."""
        if not len(self.terms):
            return np.full(len(keys), -1)
        at = np.minimum(np.searchsorted(self.terms, keys), len(self.terms) - 1)
        return np.where(self.terms[at] == keys, at, -1)


def build(term_lists: list[list[str]]) -> Postings:
    """Postings of chunks given as lists of terms (row i = ``term_lists[i]``)."""
    vocabulary: dict[str, int] = {}  # each distinct term is hashed once, not once per chunk
    numbers, rows, freqs = [], [], []
    for row, chunk_terms in enumerate(term_lists):
        counts = Counter(chunk_terms)
        numbers.append(np.fromiter((vocabulary.setdefault(t, len(vocabulary)) for t in counts), np.int64, len(counts)))
        rows.append(np.full(len(counts), row, np.int32))
        freqs.append(np.fromiter(counts.values(), np.uint16, len(counts)))
    lengths = np.array([len(t) for t in term_lists], np.int32)
    if not numbers:
        return _from_triples(np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.uint16), lengths)
    keys = term_keys(list(vocabulary))[np.concatenate(numbers)]
    return _from_triples(keys, np.concatenate(rows), np.concatenate(freqs), lengths)


def merge(parts: list[tuple[Postings, np.ndarray]]) -> Postings:
    """One segment's postings from several, each given with the rows it keeps (in order):
    the kept rows are numbered on from the previous part's. Nothing is re-stemmed."""
    keys, rows, freqs, lengths, base = [], [], [], [], 0
    for postings, kept in parts:
        renumber = np.full(len(postings.lengths), -1, np.int64)
        renumber[kept] = np.arange(len(kept)) + base
        counts = np.diff(np.asarray(postings.offsets))
        part_rows = renumber[np.asarray(postings.rows)]
        alive = part_rows >= 0
        keys.append(np.repeat(np.asarray(postings.terms), counts)[alive])
        rows.append(part_rows[alive].astype(np.int32))
        freqs.append(np.asarray(postings.freqs)[alive])
        lengths.append(np.asarray(postings.lengths)[kept])
        base += len(kept)
    return _from_triples(np.concatenate(keys), np.concatenate(rows), np.concatenate(freqs), np.concatenate(lengths))


def _from_triples(keys: np.ndarray, rows: np.ndarray, freqs: np.ndarray, lengths: np.ndarray) -> Postings:
    order = np.lexsort((rows, keys))
    keys, rows, freqs = keys[order], rows[order], freqs[order]
    terms, starts = np.unique(keys, return_index=True)
    offsets = np.append(starts, len(keys)).astype(np.int64)
    return Postings(terms.astype(np.uint64), offsets, rows.astype(np.int32), freqs.astype(np.uint16),
                    lengths.astype(np.int32))


@dataclass(frozen=True)
class Part:
    """A segment's postings as one index snapshot sees them: which rows are live, and where they go."""

    postings: Postings
    live: np.ndarray | None  # (n,) bool, None when nothing is deleted
    ranks: np.ndarray | None  # (n,) int64 position of each local row among the live ones (-1: deleted); None: the row
    base: int  # global row of the segment's first live row
    documents: int | None = None  # live chunks and their summed lengths, when already known (else counted here)
    total_length: int | None = None


def live_statistics(postings: Postings, live: np.ndarray | None) -> tuple[int, int]:
    """(live chunks, their summed lengths): a segment's share of the collection statistics."""
    lengths = np.asarray(postings.lengths)
    live_lengths = lengths if live is None else lengths[live]
    return len(live_lengths), int(live_lengths.sum(dtype=np.int64))


class Scorer:
    """BM25 over several segments' postings, with statistics from their live chunks only."""

    def __init__(self, parts: list[Part]):
        self.parts = parts
        self.documents = 0
        total_length = 0
        for part in parts:
            documents, length = ((part.documents, part.total_length) if part.documents is not None
                                 else live_statistics(part.postings, part.live))
            self.documents += documents
            total_length += length
        self.mean_length = total_length / self.documents if self.documents else 1.0

    def _postings(self, keys: np.ndarray):
        """Per query term: [(part, local rows, freqs)] of its live postings."""
        found = [[] for _ in keys]
        for part in self.parts:
            positions = part.postings.find(keys)
            for i, at in enumerate(positions.tolist()):
                if at < 0:
                    continue
                start, stop = int(part.postings.offsets[at]), int(part.postings.offsets[at + 1])
                rows = np.asarray(part.postings.rows[start:stop])
                freqs = np.asarray(part.postings.freqs[start:stop])
                if part.live is not None:
                    keep = part.live[rows]
                    rows, freqs = rows[keep], freqs[keep]
                if len(rows):
                    found[i].append((part, rows, freqs))
        return found

    def document_frequencies(self, terms: list[str]) -> list[int]:
        return [sum(len(rows) for _, rows, _ in postings) for postings in self._postings(term_keys(terms))]

    def coverage(self, terms: list[str]) -> float:
        """Share of the terms that occur in at least one live chunk (0 for no terms): how much BM25 can say."""
        if not terms:
            return 0.0
        return sum(df > 0 for df in self.document_frequencies(terms)) / len(terms)

    def scores(self, terms: list[str], size: int) -> np.ndarray:
        """(size,) float32 BM25 score of every global row for the query terms."""
        scores = np.zeros(size, np.float32)
        for postings in self._postings(term_keys(terms)):
            frequency = sum(len(rows) for _, rows, _ in postings)
            if not frequency:
                continue
            idf = np.log(1.0 + (self.documents - frequency + 0.5) / (frequency + 0.5))
            for part, rows, freqs in postings:
                lengths = np.asarray(part.postings.lengths)[rows]
                tf = freqs.astype(np.float32)
                weight = idf * tf / (tf + K1 * (1 - B + B * lengths / self.mean_length))
                targets = part.base + (rows if part.ranks is None else part.ranks[rows])
                scores[targets] += weight.astype(np.float32)  # a row occurs once per term
        return scores
