"""rag/hashing.py: an article's content hash decides whether it is embedded again."""
from __future__ import annotations

import dataclasses

from rag.hashing import content_hash


def test_content_hash_follows_text_title_date_and_url(seeds_articles):
    article = seeds_articles[0]
    original = content_hash(article)
    assert content_hash(dataclasses.replace(article)) == original
    for change in ({"text": article.text + " "}, {"title": article.title + "!"}, {"date": "2024-01-01"},
                   {"url": "https://example.org"}):
        assert content_hash(dataclasses.replace(article, **change)) != original, change


def test_content_hash_differs_between_seeds(seeds_articles):
    assert len({content_hash(a) for a in seeds_articles}) == len(seeds_articles)
