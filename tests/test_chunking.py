"""rag/chunking.py: sentence-aligned chunks within a token budget, with overlap and exact offsets."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rag.chunking import chunk_article, token_counter
from rag.config import REPO_ROOT, ChunkConfig
from rag.types import Article

count = token_counter("o200k_base")

SETTINGS = [ChunkConfig(), ChunkConfig(chunk_tokens=64, overlap_tokens=16),
            ChunkConfig(chunk_tokens=300, overlap_tokens=0)]


def article(text: str) -> Article:
    return Article(id="a.txt", source="a.txt", title="t", text=text)


def assert_offsets(article: Article, chunks) -> None:
    for chunk in chunks:
        assert article.text[chunk.start:chunk.end] == chunk.text
        assert chunk.article_id == article.id
        assert chunk.sentences, chunk
        assert (chunk.sentences[0].start, chunk.sentences[-1].end) == (chunk.start, chunk.end)
        for sentence in chunk.sentences:
            assert article.text[sentence.start:sentence.end] == sentence.text
            assert sentence.article_id == article.id


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "64-16", "300-0"])
def test_offsets_slice_back_for_every_chunk_and_sentence(seeds_articles, settings):
    for seed in seeds_articles:
        assert_offsets(seed, chunk_article(seed, settings))


def test_seed_chunks_fit_the_default_budget(seeds_articles):
    settings = ChunkConfig()
    for seed in seeds_articles:
        chunks = chunk_article(seed, settings)
        assert len(chunks) > 1
        assert max(count(chunk.text) for chunk in chunks) <= settings.chunk_tokens


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "64-16", "300-0"])
def test_sentences_of_a_chunk_fit_the_budget(seeds_articles, settings):
    for seed in seeds_articles:
        for chunk in chunk_article(seed, settings):
            assert sum(count(s.text) for s in chunk.sentences) <= settings.chunk_tokens


def test_separators_between_sentences_count_against_the_budget():
    text = "\n\n\n".join(["المصدر: وكالات"] * 12)  # 5 tokens per sentence, 1 per separator
    settings = ChunkConfig(chunk_tokens=16, overlap_tokens=0)
    assert max(count(chunk.text) for chunk in chunk_article(article(text), settings)) <= 16


@pytest.mark.parametrize("budget", [16, 72])
def test_seed_002_chunks_fit_small_budgets(seeds_articles, budget):
    seed = next(a for a in seeds_articles if a.id.startswith("002"))
    settings = ChunkConfig(chunk_tokens=budget, overlap_tokens=budget // 4)
    assert max(count(chunk.text) for chunk in chunk_article(seed, settings)) <= budget


def test_sentences_cover_the_text_in_order(seeds_articles):
    """Without overlap, chunks are disjoint and in order, and no word falls between them."""
    for seed in seeds_articles:
        chunks = chunk_article(seed, ChunkConfig(overlap_tokens=0))
        spans = [(s.start, s.end) for chunk in chunks for s in chunk.sentences]
        previous_end = 0
        for start, end in spans:
            assert previous_end <= start < end
            assert not any(ch.isalnum() for ch in seed.text[previous_end:start])
            previous_end = end
        assert not any(ch.isalnum() for ch in seed.text[previous_end:])
        assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))


def test_overlap_carries_trailing_sentences_into_the_next_chunk(seeds_articles):
    settings = ChunkConfig(chunk_tokens=160, overlap_tokens=40)
    shared_pairs = 0
    for seed in seeds_articles:
        chunks = chunk_article(seed, settings)
        for previous, following in zip(chunks, chunks[1:]):
            shared = [s for s in following.sentences if s in previous.sentences]
            assert list(following.sentences[:len(shared)]) == shared  # a prefix of the next chunk...
            if shared:
                assert list(previous.sentences[-len(shared):]) == shared  # ...and a suffix of the previous
                assert len(shared) < len(previous.sentences)
                assert sum(count(s.text) for s in shared) <= settings.overlap_tokens
                shared_pairs += 1
            assert following.end > previous.end  # always some new text
    assert shared_pairs >= 5


def test_no_overlap_when_overlap_tokens_is_zero(seeds_articles):
    for seed in seeds_articles:
        chunks = chunk_article(seed, ChunkConfig(chunk_tokens=160, overlap_tokens=0))
        for previous, following in zip(chunks, chunks[1:]):
            assert not set(previous.sentences) & set(following.sentences)
            assert following.start >= previous.end


def test_overlap_makes_more_text_per_article(seeds_articles):
    for seed in seeds_articles:
        with_overlap = chunk_article(seed, ChunkConfig(chunk_tokens=100, overlap_tokens=40))
        without = chunk_article(seed, ChunkConfig(chunk_tokens=100, overlap_tokens=0))
        assert sum(len(c.text) for c in with_overlap) > sum(len(c.text) for c in without)


def test_text_without_punctuation_is_cut_at_spaces():
    text = " ".join(["الجنود", "الكوريون", "في", "كورسك", "يقاتلون", "إلى", "جانب", "روسيا"] * 60)
    settings = ChunkConfig(chunk_tokens=50, overlap_tokens=10)
    chunks = chunk_article(article(text), settings)
    assert len(chunks) >= count(text) // 50
    assert max(count(chunk.text) for chunk in chunks) <= 50
    assert_offsets(article(text), chunks)
    pieces = sorted({(s.start, s.end) for chunk in chunks for s in chunk.sentences})
    assert len(pieces) > 1
    assert all(text[start - 1] == " " for start, _ in pieces[1:])  # cut at spaces, never inside a word
    assert all(end == len(text) or text[end] == " " for _, end in pieces)
    assert " ".join(text[start:end] for start, end in pieces) == text  # nothing lost, nothing repeated


def test_a_sentence_longer_than_the_budget_is_split_and_its_neighbours_kept():
    long_sentence = " ".join(f"كلمة{n}" for n in range(400)) + "."
    text = f"جملة قصيرة قبل. {long_sentence} جملة قصيرة بعد."
    settings = ChunkConfig(chunk_tokens=60, overlap_tokens=0)
    chunks = chunk_article(article(text), settings)
    assert count(long_sentence) > 60
    assert max(count(chunk.text) for chunk in chunks) <= 60
    assert_offsets(article(text), chunks)
    assert chunks[0].text.startswith("جملة قصيرة قبل.")
    assert chunks[-1].text.endswith("جملة قصيرة بعد.")


def test_pieces_of_an_over_long_sentence_are_trimmed():
    text = "  ".join(f"كلمة{n}" for n in range(300))
    chunks = chunk_article(article(text), ChunkConfig(chunk_tokens=30, overlap_tokens=0))
    assert all(s.text == s.text.strip() for chunk in chunks for s in chunk.sentences)


def test_arabic_comma_does_not_cut_a_chunk_sentence():
    text = "قالت الوزارة، في بيان، إن القوات انسحبت. ثم عادت."
    chunks = chunk_article(article(text), ChunkConfig())
    assert [s.text for s in chunks[0].sentences] == ["قالت الوزارة، في بيان، إن القوات انسحبت.", "ثم عادت."]


def test_short_article_is_one_chunk():
    text = "عنوان\nنص قصير جدا."
    chunks = chunk_article(article(text), ChunkConfig())
    assert [(c.start, c.end, c.text) for c in chunks] == [(0, len(text), text)]
    assert chunks[0].id == -1  # rows are numbered by the store


def test_article_without_words_has_no_chunks():
    assert chunk_article(article("\n— ... ؟\n"), ChunkConfig()) == []


def test_o200k_counts_arabic_with_fewer_tokens_than_cl100k(seeds_articles):
    o200k, cl100k = token_counter("o200k_base"), token_counter("cl100k_base")
    for seed in seeds_articles:
        assert o200k(seed.text) < cl100k(seed.text)
    total_o200k = sum(o200k(s.text) for s in seeds_articles)
    total_cl100k = sum(cl100k(s.text) for s in seeds_articles)
    assert total_cl100k / total_o200k > 2.0


def test_encodings_load_without_network():
    """Both encodings come from llama-index-core's files: a process with no way out still counts."""
    code = ("from rag.chunking import token_counter as t;"
            "print(t('o200k_base')('كوريا الشمالية'), t('cl100k_base')('كوريا الشمالية'))")
    env = {key: value for key, value in os.environ.items() if key != "TIKTOKEN_CACHE_DIR"}
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="",
               PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    o200k, cl100k = (int(n) for n in out.stdout.split())
    assert 0 < o200k < cl100k
