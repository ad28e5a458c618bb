"""Sentence-aligned chunks sized in tiktoken tokens, with overlap and exact offsets.

Chunks never cut a sentence (unless one sentence alone is over budget, when it is
cut at spaces), so the answer layer can quote whole sentences from any chunk.
tiktoken's ``o200k_base`` counts Arabic ~2.5x more compactly than ``cl100k_base``;
llama-index-core ships both files, so sizing works offline.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from rag.arabic import split_sentences
from rag.config import ChunkConfig
from rag.types import Article, Chunk, Sentence


def _point_tiktoken_at_llama_index_cache() -> None:
    """Use the encodings llama-index-core ships instead of downloading them."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    spec = importlib.util.find_spec("llama_index.core")
    for location in (spec.submodule_search_locations or []) if spec else []:
        cache = Path(location) / "_static" / "tiktoken_cache"
        if cache.is_dir():
            os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
            return


@functools.lru_cache(maxsize=4)
def token_counter(encoding: str):
    """``str -> int`` counting tokens with the named tiktoken encoding."""
    _point_tiktoken_at_llama_index_cache()
    import tiktoken

    encoder = tiktoken.get_encoding(encoding)
    return lambda text: len(encoder.encode_ordinary(text))


def chunk_article(article: Article, config: ChunkConfig) -> list[Chunk]:
    """Pack the article's sentences into chunks of at most ``config.chunk_tokens`` tokens.

    Consecutive chunks share trailing sentences worth up to ``config.overlap_tokens``
    so a fact that straddles a boundary is whole in one chunk.
    """
    count = token_counter(config.encoding)
    sentences = [piece for span in split_sentences(article.text)
                 for piece in _fit(article.text, span, config.chunk_tokens, count)]
    # Each sentence is counted with the white space before it, so a chunk's budget covers its separators.
    sizes = [count(article.text[(sentences[i - 1][1] if i else start):end]) for i, (start, end) in enumerate(sentences)]
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, size in enumerate(sizes):
        if current and used + size > config.chunk_tokens:
            groups.append(current)
            current = _overlap(current, sizes, config.overlap_tokens, room=config.chunk_tokens - size)
            used = sum(sizes[i] for i in current)
        current.append(index)
        used += size
    if current:
        groups.append(current)
    return [_make_chunk(article, [sentences[i] for i in part]) for group in groups
            for part in _within_budget(article.text, sentences, group, config.chunk_tokens, count)]


def _within_budget(text: str, sentences, group: list[int], budget: int, count) -> list[list[int]]:
    """``group`` halved until each part fits: sizes are summed per sentence, but tokens can merge
    across a boundary with no space (pieces cut from one long word), so a sum can undercount."""
    if len(group) == 1 or count(text[sentences[group[0]][0]:sentences[group[-1]][1]]) <= budget:
        return [group]
    half = len(group) // 2
    return _within_budget(text, sentences, group[:half], budget, count) + \
        _within_budget(text, sentences, group[half:], budget, count)


def _overlap(previous: list[int], sizes: list[int], budget: int, room: int) -> list[int]:
    """The tail of ``previous`` that fits both the overlap budget and the room left."""
    tail, used = [], 0
    for index in reversed(previous[1:]):  # never carry the whole previous chunk
        if used + sizes[index] > min(budget, room):
            break
        tail.insert(0, index)
        used += sizes[index]
    return tail


def _fit(text: str, span: tuple[int, int], budget: int, count) -> list[tuple[int, int]]:
    """Cut an over-long sentence at spaces into pieces of at most ``budget`` tokens."""
    start, end = span
    if count(text[start:end]) <= budget:
        return [span]
    pieces, piece_start, last_space = [], start, None
    position = start
    while position < end:
        space = text.find(" ", position + 1, end)
        stop = end if space == -1 else space
        if count(text[piece_start:stop]) > budget and last_space is not None:
            pieces.append((piece_start, last_space))
            piece_start = last_space + 1
        last_space = stop
        position = stop
    pieces.append((piece_start, end))
    trimmed = []
    for a, b in pieces:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            trimmed.extend(_cut(text, a, b, budget, count))
    return trimmed


def _cut(text: str, start: int, end: int, budget: int, count) -> list[tuple[int, int]]:
    """A piece with no space to cut at (a run of 3,000 letters) is cut into equal character slices."""
    tokens = count(text[start:end])
    if tokens <= budget or end - start == 1:
        return [(start, end)]
    parts = -(-tokens // budget) + 1
    step = -(-(end - start) // parts)
    # Tokens are not spread evenly over the characters, so a slice still over budget is cut again.
    return [piece for a in range(start, end, step) for piece in _cut(text, a, min(a + step, end), budget, count)]


def _make_chunk(article: Article, spans: list[tuple[int, int]]) -> Chunk:
    start, end = spans[0][0], spans[-1][1]
    sentences = tuple(Sentence(article.id, a, b, article.text[a:b]) for a, b in spans)
    return Chunk(id=-1, article_id=article.id, start=start, end=end, text=article.text[start:end], sentences=sentences)
