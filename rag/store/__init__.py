"""The index on disk: immutable segments, tombstones, and one small manifest per version.

Layout of an index folder::

    index_dir/
      current -> v-<id>/             symlink swapped atomically, once per update
      v-<id>/manifest.json           model id + fingerprint, settings, the segment list, counts, the
                                     names of its tables
      tables/                        immutable files versions refer to by name (unchanged ones are shared):
             dead-<segment>-<id>.npy tombstones: the deleted article rows of that segment
             files-<id>.json         parts of the files table: size, mtime and article ids per corpus file
                                     (unchanged files are not re-read); later parts override earlier ones
      segments/<segment>/            written once, never changed (all arrays memory-mapped when opened):
             articles.jsonl, article_offsets.npy   exact article texts, one JSON line each (citations slice these)
             catalog.json            article ids and content hashes
             id_keys.npy, id_rows.npy  sorted 64-bit keys of the article ids and their rows (binary search)
             content_hashes.npy, article_sentences.npy  content hash and first sentence row per article
             article_chunks.npy      (a + 1,) first chunk row of each article
             chunks.npy              (n, 5) int64: article row, start, end, first sentence, end sentence
             sentences.npy           (m, 3) int64: article row, start, end
             vectors.npy, keys.npy   chunk vectors (float32); chunk keys, stable across merges (Milvus ids)
             bm25_*.npy              BM25 postings (`rag.bm25`)
             faiss.index             the segment's FAISS index (backend "faiss")
      .lock, .tmp-*                  the writers' lock; leftovers of an interrupted write

The store keeps what it is given: an update is handed the manifest the index must agree with and
a ``prepare`` that chunks and embeds the articles it finds new or changed (`rag.indexing` makes
both from the model and the config), and an opened version is handed the searchers its store
settings choose (`rag.store.search`: FAISS or Milvus for dense search, BM25 over the segments or
Milvus for keyword search), each returning chunk rows and scores best first (`Ranked`).

An update writes one new segment with the added and changed articles, marks the deleted and
changed ones dead in their old segments, merges segments when `MERGE_FACTOR` of one size tier
have piled up (or a segment is mostly dead), writes a new version folder and switches ``current``
to it with one rename. An update that is given what changed (`apply_change`: an upload, a
removal) costs what changed, not the corpus: ids are found by binary search, untouched segments
keep their tombstones and their opened state, and the files table grows by a part. A crash at any
point leaves the old version or the new one as ``current``; leftovers are removed on the next
open or update. A reader keeps the version it opened (its files stay mapped even once removed).
An index built other than the manifest expects (another model, other settings) is rebuilt.
"""
from __future__ import annotations

from rag.store.index import ArticleList, Index, LiveSegment
from rag.store.opening import FORMAT_VERSION, files_entry, files_table, mismatch, open_index
from rag.store.search import BM25Searcher, DenseSearcher, FaissSearcher, KeywordSearcher, Ranked
from rag.store.segment import Prepared, Segment, build_faiss
from rag.store.update import (MERGE_FACTOR, Change, Prepare, UpdateReport, apply_change, plan_merges,
                              update_index)
from rag.store.versions import clean

__all__ = ["ArticleList", "BM25Searcher", "Change", "DenseSearcher", "FORMAT_VERSION", "FaissSearcher", "Index",
           "KeywordSearcher", "LiveSegment", "MERGE_FACTOR", "Prepare", "Prepared", "Ranked", "Segment",
           "UpdateReport", "apply_change", "build_faiss", "clean", "files_entry", "files_table", "mismatch",
           "open_index", "plan_merges", "update_index"]
