"""rag/store/: the index on disk. Manifest, atomic versions, incremental updates, FAISS kinds.

The seeds index is built once per session (conftest); tests that change an index work on a
copy of its folder, or build a three-article index of their own when a full rebuild is the
point (the model embeds a dozen texts in a second, the seeds in ~20 s).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag import __version__
from rag.errors import IndexMismatchError, SanadError, StoreError
from rag.hashing import content_hash
from rag.indexing import apply_change, manifest_for, update_index
from rag.ingest import read_corpus
from rag import store
from rag.store import FORMAT_VERSION, build_faiss, open_index
from rag.types import Article

KURSK_AR = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
KURSK_EN = "How many North Korean troops are in Kursk?"
QUESTIONS = [KURSK_AR, KURSK_EN, "زيلينسكي يكشف عن إرسال كوريا الشمالية مواطنين", "السفير الروسي في سيول",
             "لافروف وتشوي سون هوي في موسكو", "صور جنود يتلقون الزي الرسمي", "صواريخ ستورم شادو"]

TINY = [  # one sentence each: a rebuild embeds six short texts
    Article("kursk.txt", "kursk.txt", "جنود في كورسك",
            "أكدت الولايات المتحدة وجود أكثر من 11 ألف جندي كوري شمالي في منطقة كورسك الروسية."),
    Article("wheat.txt", "wheat.txt", "أسعار القمح",
            "ارتفعت أسعار القمح في الأسواق المصرية بعد موسم حصاد ضعيف بسبب موجة الجفاف."),
    Article("library.txt", "library.txt", "مكتبة الزيتون",
            "افتتحت بلدية طرابلس مكتبة الزيتون العامة التي تضم 4321 كتابا."),
]


class SpyEmbedder:
    """The real embedder, with a record of every passage it was asked to embed."""

    def __init__(self, embedder):
        self._embedder = embedder
        self.model_id, self.fingerprint, self.dim = embedder.model_id, embedder.fingerprint, embedder.dim
        self.passages: list[str] = []

    def encode_passages(self, texts, show_progress=False):
        self.passages.extend(texts)
        return self._embedder.encode_passages(texts, show_progress)

    def encode_queries(self, texts):
        return self._embedder.encode_queries(texts)


def expected_manifest(config, embedder) -> dict:
    return manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)


def article_rows(index, article_id: str) -> list[int]:
    return [row for row in range(len(index)) if index.chunk(row).article_id == article_id]


def article_vectors(index, article_id: str) -> bytes:
    return index.chunk_vectors(article_rows(index, article_id)).tobytes()


def version_dirs(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if p.name.startswith(("v-", ".tmp-")))


def segment_dirs(index_dir: Path) -> list[str]:
    return sorted(p.name for p in (index_dir / "segments").iterdir())


def faiss_total(index) -> int:
    return sum(segment.faiss_index.ntotal for segment in index.segments)


def top_article(index, embedder, question: str) -> str:
    ranked = index.search(embedder.encode_queries([question])[0], 1)
    return index.chunk(int(ranked.rows[0])).article_id


@pytest.fixture(scope="session")
def tiny_index_built(tmp_path_factory, config, embedder) -> Path:
    index_dir = tmp_path_factory.mktemp("tiny") / "index"
    update_index(index_dir, TINY, embedder, config)
    return index_dir


@pytest.fixture
def tiny_index_dir(tiny_index_built, tmp_path) -> Path:
    """A private copy of a three-article index, for tests that rebuild."""
    target = tmp_path / "tiny-index"
    shutil.copytree(tiny_index_built, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def question_vectors(embedder) -> dict:
    return dict(zip(QUESTIONS, embedder.encode_queries(QUESTIONS)))


# --- the saved index ------------------------------------------------------------------

def test_manifest_names_model_settings_and_article_hashes(seeds_index, seeds_articles, config, embedder):
    manifest = seeds_index.manifest
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["embedding_model"] == config.embed.model == embedder.model_id
    assert manifest["embedding_fingerprint"] == embedder.fingerprint and len(manifest["embedding_fingerprint"]) == 64
    assert manifest["dim"] == embedder.dim == 384
    assert manifest["chunking"] == {"encoding": "o200k_base", "chunk_tokens": 160, "overlap_tokens": 40}
    assert manifest["store"]["index"] == "flat"
    assert seeds_index.article_hashes() == {a.id: content_hash(a) for a in seeds_articles}
    assert manifest["articles"] == len(seeds_articles)
    assert manifest["sanad_version"] == __version__
    assert manifest["chunks"] == len(seeds_index) == faiss_total(seeds_index)
    assert manifest["sentences"] == sum(len(s.sentence_table) for s in seeds_index.segments)
    on_disk = json.loads((seeds_index.path / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest


def test_current_is_a_relative_symlink_to_the_only_version(seeds_bot):
    current = seeds_bot.index_dir / "current"
    assert current.is_symlink()
    target = os.readlink(current)
    assert target.startswith("v-") and "/" not in target
    assert (seeds_bot.index_dir / target).is_dir()
    assert seeds_bot.index.path == (seeds_bot.index_dir / target).resolve()
    assert version_dirs(seeds_bot.index_dir) == [target]


def test_chunks_and_sentences_slice_back_from_the_articles(seeds_index, seeds_articles):
    assert [a.text for a in seeds_index.articles] == [a.text for a in seeds_articles]
    assert len(seeds_index) > len(seeds_articles)
    for row in range(len(seeds_index)):
        chunk = seeds_index.chunk(row)
        article = seeds_index.article(chunk.article_id)
        assert chunk.id == row
        assert article.text[chunk.start:chunk.end] == chunk.text
        assert chunk.sentences and (chunk.sentences[0].start, chunk.sentences[-1].end) == (chunk.start, chunk.end)
        for sentence in chunk.sentences:
            assert article.text[sentence.start:sentence.end] == sentence.text
        assert [seeds_index.sentence(i) for i in seeds_index.sentence_rows(row)] == list(chunk.sentences)


def test_vectors_are_normalized_and_only_chunks_are_stored(seeds_index):
    vectors = seeds_index.chunk_vectors()
    assert vectors.shape == (len(seeds_index), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    files = {p.name for p in seeds_index.segments[0].path.iterdir()}
    assert "vectors.npy" in files and not any("sentence_vectors" in name for name in files)


def test_tables_and_vectors_are_memory_mapped(seeds_index):
    segment = seeds_index.segments[0]
    for array in (segment.chunk_table, segment.sentence_table, segment.vectors, segment.postings.rows):
        assert isinstance(array, np.memmap)


def test_save_load_search_gives_the_same_hits(seeds_bot, seeds_index, config, embedder, question_vectors):
    reopened = open_index(seeds_bot.index_dir, expected_manifest(config, embedder))
    assert reopened is not seeds_index
    assert [reopened.chunk(r) for r in range(len(reopened))] == [seeds_index.chunk(r) for r in range(len(seeds_index))]
    for vector in question_vectors.values():
        before, after = seeds_index.search(vector, 5), reopened.search(vector, 5)
        assert len(after.rows) == 5
        np.testing.assert_array_equal(after.rows, before.rows)
        np.testing.assert_array_equal(after.scores, before.scores)
    from rag.arabic import terms

    query_terms = terms(KURSK_AR)
    np.testing.assert_array_equal(reopened.bm25_scores(query_terms), seeds_index.bm25_scores(query_terms))


def test_search_finds_a_chunk_from_its_own_text(seeds_index, embedder):
    row = 7
    ranked = seeds_index.search(embedder.encode_queries([seeds_index.chunk(row).text])[0], 3)
    assert ranked.rows[0] == row
    assert list(ranked.scores) == sorted(ranked.scores, reverse=True)


def test_search_top_k_larger_than_the_index(seeds_index, question_vectors):
    ranked = seeds_index.search(question_vectors[KURSK_AR], 10_000)
    assert sorted(ranked.rows.tolist()) == list(range(len(seeds_index)))


def test_dense_and_keyword_search_give_one_result_type(seeds_index, question_vectors):
    from rag.arabic import terms

    dense = seeds_index.search(question_vectors[KURSK_AR], 5)
    keyword = seeds_index.bm25_search(terms(KURSK_AR), 5)
    for ranked in (dense, keyword):
        assert isinstance(ranked, store.Ranked) and len(ranked) == 5
        assert ranked.rows.dtype == np.int64 and ranked.scores.dtype == np.float32
        assert list(ranked.scores) == sorted(ranked.scores, reverse=True)
        assert ranked.pairs() == list(zip(ranked.rows.tolist(), ranked.scores.tolist()))
    assert all(keyword.scores > 0)
    scores = seeds_index.bm25_scores(terms(KURSK_AR))
    np.testing.assert_array_equal(keyword.scores, scores[keyword.rows])


def test_the_index_searches_through_faiss_and_local_bm25_by_default(seeds_index, question_vectors):
    from rag.arabic import terms

    faiss_ranked = store.FaissSearcher(seeds_index).search(question_vectors[KURSK_AR], 5)
    bm25_ranked = store.BM25Searcher(seeds_index).search(terms(KURSK_AR), 5)
    assert faiss_ranked.pairs() == seeds_index.search(question_vectors[KURSK_AR], 5).pairs()
    assert bm25_ranked.pairs() == seeds_index.bm25_search(terms(KURSK_AR), 5).pairs()


def test_an_index_opened_for_its_texts_only_cannot_be_searched(seeds_bot, seeds_index, question_vectors):
    version, manifest = store.versions.read_manifest(seeds_bot.index_dir)
    texts = store.opening.load_version(seeds_bot.index_dir, version, manifest, search=False)
    assert [a.text for a in texts.articles] == [a.text for a in seeds_index.articles]
    with pytest.raises(StoreError, match="opened for its texts only"):
        texts.search(question_vectors[KURSK_AR], 5)
    with pytest.raises(StoreError, match="opened for its texts only"):
        texts.bm25_search(["كورسك"], 5)


# --- incremental updates -------------------------------------------------------------------

def test_reopening_with_the_same_settings_embeds_nothing(seeds_index_copy, seeds_articles, config, embedder):
    spy = SpyEmbedder(embedder)
    version = os.readlink(seeds_index_copy / "current")
    index, report = update_index(seeds_index_copy, seeds_articles, spy, config)
    assert (report.unchanged, report.added, report.changed, report.removed) == (5, 0, 0, 0)
    assert report.rebuilt_because is None
    assert spy.passages == []
    assert os.readlink(seeds_index_copy / "current") == version
    assert version_dirs(seeds_index_copy) == [version]
    assert len(index) == index.manifest["chunks"]


NEW_ARTICLE = ("مكتبة جديدة في طرابلس\n"
               "افتتحت بلدية طرابلس مكتبة الزيتون العامة التي تضم 4321 كتابا نادرا. "
               "وقال رئيس البلدية إن المكتبة ستفتح أبوابها يوميا للطلاب.\n")


def test_adding_one_article_embeds_only_that_article(seeds_corpus_copy, seeds_index_copy, seeds_index, config,
                                                     embedder):
    (seeds_corpus_copy / "005_library.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    articles = read_corpus(seeds_corpus_copy)
    spy = SpyEmbedder(embedder)
    old_version = os.readlink(seeds_index_copy / "current")
    index, report = update_index(seeds_index_copy, articles, spy, config)

    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 0, 0, 5)
    assert spy.passages and all(text in NEW_ARTICLE for text in spy.passages)
    old_segments = segment_dirs(seeds_index_copy)
    assert [s.name for s in index.segments][:1] == [s.name for s in seeds_index.segments]  # old segment untouched
    for old in seeds_index.articles:  # the other articles' rows and vectors are reused, byte for byte
        assert article_vectors(index, old.id) == article_vectors(seeds_index, old.id)
        assert [(c.start, c.end) for c in map(index.chunk, article_rows(index, old.id))] == \
            [(c.start, c.end) for c in map(seeds_index.chunk, article_rows(seeds_index, old.id))]
    for row in range(len(index)):  # the tables still slice back
        chunk = index.chunk(row)
        assert index.article(chunk.article_id).text[chunk.start:chunk.end] == chunk.text
        assert all(index.article(s.article_id).text[s.start:s.end] == s.text for s in chunk.sentences)
    new_chunks = len(article_rows(index, "005_library.txt"))
    assert len(index) == faiss_total(index) == len(seeds_index) + new_chunks
    assert top_article(index, embedder, "كم كتابا تضم مكتبة الزيتون في طرابلس؟") == "005_library.txt"
    new_version = os.readlink(seeds_index_copy / "current")
    assert new_version != old_version and version_dirs(seeds_index_copy) == [new_version]  # old version pruned
    assert len(old_segments) == 2


def test_changing_one_article_embeds_only_that_article(tiny_index_dir, config, embedder):
    old = open_index(tiny_index_dir, expected_manifest(config, embedder))
    changed = dataclasses.replace(TINY[1], text=TINY[1].text + " وأعلنت الحكومة استيراد 777 ألف طن من القمح.")
    spy = SpyEmbedder(embedder)
    index, report = update_index(tiny_index_dir, [TINY[0], changed, TINY[2]], spy, config)
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 1, 0, 2)
    assert spy.passages and all(text in changed.text for text in spy.passages)
    assert any("777 ألف طن" in text for text in spy.passages)
    assert index.article_hashes()[changed.id] == content_hash(changed) != old.article_hashes()[changed.id]
    assert index.article(changed.id).text == changed.text
    assert any("777 ألف طن" in index.chunk(row).text for row in article_rows(index, changed.id))
    for kept in (TINY[0], TINY[2]):
        assert article_vectors(index, kept.id) == article_vectors(old, kept.id)
    assert all(index.chunk(row).text in changed.text for row in article_rows(index, changed.id))  # old text gone


def test_deleting_one_article_removes_its_chunks(seeds_index_copy, seeds_articles, seeds_index, config, embedder):
    removed_id = "002_2e4104477adbd184.txt"
    spy = SpyEmbedder(embedder)
    index, report = update_index(seeds_index_copy, [a for a in seeds_articles if a.id != removed_id], spy, config)
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 0, 1, 4)
    assert spy.passages == []
    assert removed_id not in index and removed_id not in index.article_hashes()
    assert len(index) == len(seeds_index) - len(article_rows(seeds_index, removed_id))
    assert segment_dirs(seeds_index_copy) == [s.name for s in seeds_index.segments]  # nothing rewritten
    assert {index.chunk(row).article_id for row in range(len(index))} == set(index.article_hashes()) - {removed_id}
    ranked = index.search(embedder.encode_queries([seeds_index.article(removed_id).text[:300]])[0], len(index))
    assert all(index.chunk(int(row)).article_id != removed_id for row in ranked.rows)


def test_two_articles_with_one_id_are_refused(tmp_path, config, embedder):
    with pytest.raises(StoreError, match="share an id"):
        update_index(tmp_path / "index", [TINY[0], dataclasses.replace(TINY[1], id=TINY[0].id)], embedder, config)


# --- rebuilds ----------------------------------------------------------------------------

def test_other_chunk_settings_rebuild_and_say_why(tiny_index_dir, config, embedder, capsys):
    capsys.readouterr()
    other = config.replace(chunk={"chunk_tokens": 100})
    spy = SpyEmbedder(embedder)
    index, report = update_index(tiny_index_dir, TINY, spy, other)
    assert report.rebuilt_because and "chunking" in report.rebuilt_because
    assert "100" in report.rebuilt_because and "160" in report.rebuilt_because
    assert f"Rebuilding the index: {report.rebuilt_because}" in capsys.readouterr().err
    assert (report.added, report.unchanged) == (3, 0)  # everything embedded again
    assert len(spy.passages) >= len(TINY)
    assert index.manifest["chunking"]["chunk_tokens"] == 100
    assert len(version_dirs(tiny_index_dir)) == 1


def test_other_model_fingerprint_is_a_mismatch(seeds_bot, config, embedder):
    expected = {**expected_manifest(config, embedder), "embedding_fingerprint": "0" * 64}
    with pytest.raises(IndexMismatchError, match="embedding_fingerprint"):
        open_index(seeds_bot.index_dir, expected)


def test_missing_index_is_a_store_error(tmp_path, config, embedder):
    with pytest.raises(StoreError, match="no index at .*sanad index"):
        open_index(tmp_path, expected_manifest(config, embedder))


def test_truncated_manifest_is_a_store_error(seeds_index_copy, config, embedder):
    manifest = seeds_index_copy / "current" / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    with pytest.raises(StoreError, match="unreadable.*delete the folder") as error:
        open_index(seeds_index_copy, expected_manifest(config, embedder))
    assert isinstance(error.value.__cause__, json.JSONDecodeError)  # wrapped, not leaked


def test_truncated_manifest_is_rebuilt_with_a_message(tiny_index_dir, config, embedder, capsys):
    capsys.readouterr()
    (tiny_index_dir / "current" / "manifest.json").write_text('{"format_version": 1, "emb')
    index, report = update_index(tiny_index_dir, TINY, embedder, config)
    assert report.rebuilt_because and "unreadable" in report.rebuilt_because
    assert "Rebuilding the index" in capsys.readouterr().err
    assert report.added == 3 and len(index) == faiss_total(index) >= 3
    assert open_index(tiny_index_dir, expected_manifest(config, embedder)).manifest == index.manifest


@pytest.mark.parametrize("content", ["[]", "null", "42"])
def test_manifest_that_is_not_an_object_is_a_store_error(seeds_index_copy, config, embedder, content):
    (seeds_index_copy / "current" / "manifest.json").write_text(content)
    try:
        open_index(seeds_index_copy, expected_manifest(config, embedder))
    except StoreError:
        return
    except Exception as exc:  # noqa: BLE001 - the bug: a raw error instead of StoreError
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    raise AssertionError("opened an index whose manifest is not an object")


def test_damaged_index_file_is_a_store_error(seeds_index_copy, config, embedder):
    segment = json.loads((seeds_index_copy / "current" / "manifest.json").read_text())["segments"][0]["name"]
    (seeds_index_copy / "segments" / segment / "faiss.index").write_bytes(b"not a faiss index")
    with pytest.raises(StoreError, match="damaged"):
        open_index(seeds_index_copy, expected_manifest(config, embedder))


# --- atomic writes ----------------------------------------------------------------------

def test_failed_write_keeps_the_current_version(seeds_index_copy, seeds_articles, config, embedder, question_vectors,
                                                monkeypatch):
    version = os.readlink(seeds_index_copy / "current")
    vector = question_vectors[KURSK_AR]
    before = open_index(seeds_index_copy, expected_manifest(config, embedder)).search(vector, 5)

    def disk_full(postings, folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rag.bm25.Postings.save", disk_full)  # fails after the vectors are written
    new = Article("new.txt", "new.txt", "جديد", "خبر جديد عن افتتاح مكتبة في طرابلس.")
    with pytest.raises(StoreError, match="cannot write the index.*No space left"):
        update_index(seeds_index_copy, seeds_articles + [new], embedder, config)

    assert os.readlink(seeds_index_copy / "current") == version
    assert version_dirs(seeds_index_copy) == [version]  # no .tmp-* left behind
    assert len(segment_dirs(seeds_index_copy)) == 1
    reopened = open_index(seeds_index_copy, expected_manifest(config, embedder))
    assert "new.txt" not in reopened
    after = reopened.search(vector, 5)
    np.testing.assert_array_equal(after.rows, before.rows)
    monkeypatch.undo()
    _, report = update_index(seeds_index_copy, seeds_articles + [new], embedder, config)  # and it recovers
    assert (report.added, report.unchanged) == (1, 5)


def test_failed_faiss_write_is_a_store_error_and_leaves_no_temp_dir(seeds_index_copy, seeds_articles, config,
                                                                    embedder, monkeypatch):
    import faiss

    version = os.readlink(seeds_index_copy / "current")

    def disk_full(index, path):
        raise RuntimeError(f"Error in faiss::FileIOWriter: could not write {path}: No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)
    new = Article("new.txt", "new.txt", "جديد", "خبر جديد عن افتتاح مكتبة في طرابلس.")
    error = None
    try:
        update_index(seeds_index_copy, seeds_articles + [new], embedder, config)
    except Exception as exc:  # noqa: BLE001
        error = exc
    assert os.readlink(seeds_index_copy / "current") == version
    assert isinstance(error, StoreError), repr(error)
    assert version_dirs(seeds_index_copy) == [version]


# --- FAISS kinds -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_agree_with_flat_on_the_seeds(seeds_index, config, question_vectors, kind):
    import faiss

    vectors = seeds_index.chunk_vectors()
    flat = build_faiss(vectors, dataclasses.replace(config.store, index="flat"))
    approximate = build_faiss(vectors, dataclasses.replace(config.store, index=kind))
    assert isinstance(flat, faiss.IndexFlatIP)
    assert isinstance(approximate, faiss.IndexHNSWFlat if kind == "hnsw" else faiss.IndexIVFFlat)
    assert approximate.ntotal == len(vectors)
    queries = np.stack(list(question_vectors.values()))
    _, flat_rows = flat.search(queries, 3)
    _, approximate_rows = approximate.search(queries, 3)
    np.testing.assert_array_equal(approximate_rows[:, 0], flat_rows[:, 0])


@pytest.mark.parametrize("kind, faiss_class", [("hnsw", "IndexHNSWFlat"), ("ivf", "IndexIVFFlat")])
def test_store_index_setting_builds_that_faiss_index(tmp_path, config, embedder, kind, faiss_class):
    import faiss

    settings = config.replace(store={"index": kind})
    index, report = update_index(tmp_path / "index", TINY, embedder, settings)
    reopened = open_index(tmp_path / "index", expected_manifest(settings, embedder))
    for opened in (index, reopened):
        assert isinstance(opened.segments[0].faiss_index, getattr(faiss, faiss_class))
        assert faiss_total(opened) == len(opened) >= len(TINY)
    assert reopened.manifest["store"]["index"] == kind
    if kind == "hnsw":
        assert reopened.segments[0].faiss_index.hnsw.efSearch == settings.store.hnsw_ef_search
    else:
        assert reopened.segments[0].faiss_index.nprobe == settings.store.ivf_nprobe
    assert top_article(reopened, embedder, KURSK_AR) == "kursk.txt"
    assert top_article(reopened, embedder, "كم كتابا في مكتبة الزيتون؟") == "library.txt"
    assert top_article(reopened, embedder, "Why did wheat prices rise in Egypt?") == "wheat.txt"


def test_errors_are_sanad_errors():
    assert issubclass(IndexMismatchError, StoreError) and issubclass(StoreError, SanadError)


# --- segments, tombstones, merges ------------------------------------------------------------

def test_unchanged_ids_are_kept_without_their_texts(tiny_index_dir, config, embedder):
    spy = SpyEmbedder(embedder)
    new = Article("new.txt", "new.txt", "جديد", "خبر جديد عن افتتاح مكتبة في طرابلس.")
    index, report = update_index(tiny_index_dir, [new], spy, config, unchanged=[a.id for a in TINY[:2]])
    assert (report.added, report.unchanged, report.removed) == (1, 2, 1)  # TINY[2] was named by neither
    assert set(index.article_hashes()) == {TINY[0].id, TINY[1].id, "new.txt"}
    assert all(text in new.text for text in spy.passages)
    with pytest.raises(StoreError, match="not in the index"):
        update_index(tiny_index_dir, [], spy, config, unchanged=["never-indexed.txt"])


def test_plan_merges_bounds_segments_per_tier():
    factor, base = store.update.MERGE_FACTOR, store.update.TIER_CHUNKS
    assert store.plan_merges([(10, 10)] * (factor - 1)) == []
    assert store.plan_merges([(10, 10)] * factor) == [list(range(factor))]
    big = [(base * factor, base * factor)] * (factor - 1)
    assert store.plan_merges(big + [(10, 10)]) == []  # a small segment does not drag big ones into a merge
    assert store.plan_merges([(100, 10), (100, 100)]) == [[0]]  # mostly dead: rewritten on its own


def test_merges_expunge_tombstones_and_keep_every_live_chunk(tmp_path, config, embedder, monkeypatch):
    monkeypatch.setattr(store.update, "MERGE_FACTOR", 2)
    index_dir = tmp_path / "index"
    update_index(index_dir, TINY[:1], embedder, config)
    index, report = update_index(index_dir, TINY[:2], embedder, config)  # two tier-0 segments: merged
    assert report.merged == 2 and len(index.segments) == 1 and len(segment_dirs(index_dir)) == 1
    index, report = update_index(index_dir, [TINY[1], TINY[2]], embedder, config)  # TINY[0] dead, TINY[2] added
    assert report.merged == 1  # the half-dead segment is rewritten without the dead article
    assert [entry["dead"] for entry in index.manifest["segments"]] == [None, None]
    assert set(index.article_hashes()) == {TINY[1].id, TINY[2].id}
    assert {index.chunk(row).article_id for row in range(len(index))} == {TINY[1].id, TINY[2].id}
    assert top_article(index, embedder, "كم كتابا في مكتبة الزيتون؟") == "library.txt"
    assert len(index.bm25_search(["كورسك"], 5)) == 0 and index.lexical_coverage(["كورسك"]) == 0.0


def test_a_reader_keeps_its_version_while_an_update_replaces_it(tiny_index_dir, config, embedder, monkeypatch):
    monkeypatch.setattr(store.update, "MERGE_FACTOR", 2)
    before = open_index(tiny_index_dir, expected_manifest(config, embedder))
    chunks = [before.chunk(row) for row in range(len(before))]
    after, _ = update_index(tiny_index_dir, [TINY[0], TINY[1], Article("x.txt", "x.txt", "س", "خبر قصير جدا.")],
                            embedder, config)
    assert not (tiny_index_dir / "segments" / before.segments[0].name).exists()  # merged away and removed
    assert [before.chunk(row) for row in range(len(before))] == chunks  # still readable: the files stay mapped
    assert top_article(before, embedder, "كم كتابا في مكتبة الزيتون؟") == "library.txt"
    assert "library.txt" not in after


@pytest.mark.parametrize("interrupt", ["before the version is written", "before the switch", "before the clean-up"])
def test_an_interrupted_update_leaves_an_openable_index_and_is_cleaned_up(tiny_index_dir, config, embedder,
                                                                          monkeypatch, interrupt):
    class Killed(BaseException):  # what a kill -9 leaves: nothing after this point runs, no handler
        pass

    def kill(*args, **kwargs):
        raise Killed

    def switch_then_kill(*args, **kwargs):
        write_version(*args, **kwargs)
        raise Killed

    write_version = store.update.write_version
    target = {"before the version is written": (store.update, "write_version", kill), "before the switch": (os, "replace", kill),
              "before the clean-up": (store.update, "write_version", switch_then_kill)}[interrupt]
    monkeypatch.setattr(*target)
    new = Article("new.txt", "new.txt", "جديد", "خبر جديد عن افتتاح مكتبة في طرابلس.")
    with pytest.raises(Killed):
        update_index(tiny_index_dir, TINY + [new], embedder, config)
    monkeypatch.undo()
    index = open_index(tiny_index_dir, expected_manifest(config, embedder))  # the old version or the new one
    assert ("new.txt" in index) == (interrupt == "before the clean-up")
    assert all(index.article(index.chunk(r).article_id).text[index.chunk(r).start:index.chunk(r).end]
               == index.chunk(r).text for r in range(len(index)))
    assert not [p for p in tiny_index_dir.iterdir() if p.name.startswith(".tmp-")]  # the open cleaned up
    assert version_dirs(tiny_index_dir) == [os.readlink(tiny_index_dir / "current")]
    assert segment_dirs(tiny_index_dir) == sorted(s.name for s in index.segments)
    _, report = update_index(tiny_index_dir, TINY + [new], embedder, config)
    assert report.added == (0 if interrupt == "before the clean-up" else 1)


# --- updates that cost what changed ---------------------------------------------------

def test_a_change_reuses_every_untouched_segment_and_shares_its_tables(tiny_index_dir, config, embedder, monkeypatch):
    monkeypatch.setattr(store.update, "EXPUNGE_SHARE", 0.9)  # a tombstone, not a rewrite of the segment
    before = open_index(tiny_index_dir, expected_manifest(config, embedder))
    new = Article("x.txt", "x.txt", "خبر", "وصل وفد تجاري إلى ميناء اللاذقية صباح الأحد.")
    spy = SpyEmbedder(embedder)
    added, report = apply_change(tiny_index_dir, store.Change(upsert=(new,)), spy, config, index=before)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 0, 0, len(TINY))
    assert spy.passages and all("اللاذقية" in text for text in spy.passages)
    assert added.parts[0] is before.parts[0]  # opened once: not read again after the switch
    assert sorted(p.name for p in added.path.iterdir()) == ["manifest.json"]  # a version is its manifest
    removed, report = apply_change(tiny_index_dir, store.Change(remove=("kursk.txt",)), spy, config, index=added)
    assert (report.removed, report.unchanged) == (1, len(TINY))
    assert "kursk.txt" not in removed and "x.txt" in removed and removed.article_count == len(TINY)
    assert removed.parts[1] is added.parts[1]  # the new article's segment has no new tombstone
    dead = removed.manifest["segments"][0]["dead"]
    assert dead and (tiny_index_dir / "tables" / dead).is_file()
    assert removed.article_hashes() == {a.id: content_hash(a) for a in TINY[1:] + [new]}
    reopened = open_index(tiny_index_dir, expected_manifest(config, embedder))
    assert reopened.article_hashes() == removed.article_hashes() and len(reopened) == len(removed)
    assert top_article(reopened, embedder, "وفد تجاري في ميناء اللاذقية") == "x.txt"


def test_a_change_to_nothing_keeps_the_version(tiny_index_dir, config, embedder):
    before = open_index(tiny_index_dir, expected_manifest(config, embedder))
    version = os.readlink(tiny_index_dir / "current")
    index, report = apply_change(tiny_index_dir, store.Change(upsert=(TINY[0],), remove=("never.txt",)),
                                 embedder, config, index=before)
    assert index is before and os.readlink(tiny_index_dir / "current") == version
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 0, 0, len(TINY))


def test_files_table_parts_stay_few_and_read_back_whole(tiny_index_dir, config, embedder):
    index, expected = open_index(tiny_index_dir, expected_manifest(config, embedder)), {}
    for number in range(40):
        files = {f"f{number}.txt": [number, number, [f"f{number}.txt"]]}
        if number % 3 == 2:
            files[f"f{number - 1}.txt"] = None  # a file gone
        for path, entry in files.items():
            expected.pop(path, None) if entry is None else expected.update({path: entry})
        index, _ = apply_change(tiny_index_dir, store.Change(files=files), embedder, config, index=index)
        assert store.files_table(tiny_index_dir) == expected
    parts = index.manifest["files"]
    assert len(parts) <= 6 and sum(part["entries"] for part in parts) <= 2 * len(expected) + 6
    named = {part["name"] for part in parts} | {e["dead"] for e in index.manifest["segments"] if e["dead"]}
    assert {p.name for p in (tiny_index_dir / "tables").iterdir()} == named  # nothing else left behind


def test_a_change_to_an_index_built_differently_is_refused(tiny_index_dir, config, embedder):
    other = config.replace(chunk={"chunk_tokens": 96})
    with pytest.raises(IndexMismatchError, match="chunking"):
        apply_change(tiny_index_dir, store.Change(remove=("kursk.txt",)), embedder, other)


def test_articles_are_found_by_id_and_listed_by_position(seeds_index, seeds_articles):
    ids = [a.id for a in seeds_articles]
    assert [seeds_index.article(i).text for i in ids] == [a.text for a in seeds_articles]
    assert seeds_index.locate(ids + ["missing.txt"])[-1] is None and "missing.txt" not in seeds_index
    listed = seeds_index.articles
    assert len(listed) == seeds_index.article_count == len(ids)
    assert [a.id for a in listed[:]] == [listed[i].id for i in range(len(listed))] and listed[-1].id == listed[4].id
    with pytest.raises(IndexError):
        listed[len(listed)]
    assert seeds_index.articles_under("00", 2) == listed[:2]
