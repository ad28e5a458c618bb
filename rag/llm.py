"""The optional generative mode: an LLM writes the answer from numbered sources, and every
sentence it writes is checked against the passages it cites before anyone sees it.

    hits      -> sources: the sentences of the retrieved chunks, numbered [1]..[N]
                 (a sentence that reads as an instruction to the model is withheld)
    prompt    -> prompts/system_{ar,en}.txt and prompts/user_{ar,en}.txt, in the question's language
    llm.chat  -> text with [n] markers
    verify    -> per sentence (citing 1-3 sources): its numbers and all its content words occur in them,
                 and it negates only what they negate
    agree     -> the kept sentences state the reader's short answer
    Answer(mode="llm"): the kept sentences, markers renumbered, one citation per cited source

`generate` returns None, and the caller keeps the extractive answer, when the server fails, too
little of the reply survives, or what survives does not state the reader's answer. Any llama-index
LLM works (``ChatBot(llm=...)``); `from_config` builds llama-index's OpenAI-like client for the
server named by ``SANAD_LLM_BASE_URL`` and ``SANAD_LLM_MODEL`` (Ollama, vLLM, llama.cpp server).
"""
from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlsplit

import numpy as np

from rag.arabic import is_arabic, normalize, read_numbers, split_sentences, terms
from rag.config import EmbedConfig, SanadConfig, shipped
from rag.errors import ConfigError
from rag.types import Answer, Citation, Hit, Sentence

PROMPTS = shipped("prompts")
CONTEXT_WINDOW = 8192  # what llama-index assumes of the server; the prompt is ~24 sentences
MAX_PROMPT_SENTENCES = 24  # numbered source sentences in the prompt (top_k=5 chunks hold about 20)
MIN_COVERAGE = 1.0  # share of a sentence's content words that its cited passages must contain: all of them
MAX_CITED = 3  # a sentence resting on more sources than this cannot be checked against them, and is dropped
# A sentence in another language than its sources (an English answer from Arabic articles) cannot be
# matched word for word: the e5 cosine of the two passage vectors stands in. On the seed articles,
# faithful English renderings of a source score 0.83-0.90 against it, unrelated claims 0.70-0.80.
MIN_SIMILARITY = 0.82
MIN_KEPT = 0.5  # below this share of verified sentences the whole reply is discarded

log = logging.getLogger(__name__)
_DIGIT = "0-9\u0660-\u0669\u06f0-\u06f9"
_MARKER = re.compile(rf"\[\s*([{_DIGIT}]+(?:\s*[,،]\s*[{_DIGIT}]+)*)\s*\]")
_LEADING_MARKERS = re.compile(rf"^(?:\s*{_MARKER.pattern})+")
# Text that addresses the model rather than the reader (matched on normalized text): "ignore all
# previous instructions", "تجاهل التعليمات السابقة". News that reports ignored rules does not match.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b(?: \w+){0,3}? (?:previous|prior|above|earlier|preceding|your|all)\b"
    r"(?: \w+){0,2}? (?:instructions?|prompts?|rules|directions)\b|\bsystem prompt\b"
    r"|(?:تجاهل|اهمل)\w*\s+(?:\w+\s+){0,3}?(?:ال)?(?:تعليمات|اوامر|توجيهات)\s+(?:\w+\s+)?(?:السابقه|اعلاه)"
    r"|موجه النظام")


# Negation in either language (matched on normalized text): Arabic particles and English "not"/"no"/"never"/"n't".
_NEGATION = re.compile(r"(?:^|\s)(?:ال)?(?:لا|لم|لن|ليس|ليست|لست|غير|not|no|never|neither|nor|none)(?=\s|$)|n't\b")


@dataclass(frozen=True)
class Source:
    """A numbered sentence of the prompt: its row in the index's sentence table and its chunk's score."""

    n: int
    row: int
    sentence: Sentence
    score: float


def from_config(config: SanadConfig):
    """llama-index's OpenAI-like client for ``config.llm``, or None when no server is set."""
    settings = config.llm
    if not settings.base_url:
        return None
    if not settings.model:
        raise ConfigError(f"llm.base_url is {settings.base_url!r} but llm.model is not set; set SANAD_LLM_MODEL to "
                          "a model the server serves (for Ollama, e.g. qwen2.5:7b-instruct)",
                          setting="llm.model", value=settings.model)
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(model=settings.model, api_base=api_base(settings.base_url), api_key=settings.api_key,
                      is_chat_model=True, context_window=CONTEXT_WINDOW, timeout=settings.timeout_s,
                      temperature=0.0, max_retries=1, max_tokens=settings.max_tokens)


def api_base(base_url: str) -> str:
    """The URL the OpenAI client appends ``/chat/completions`` to; a bare host gets ``/v1``."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"llm.base_url must be an http(s) URL such as http://localhost:11434/v1, got {base_url!r}",
                          setting="llm.base_url", value=base_url)
    url = base_url.strip().rstrip("/")
    return url + "/v1" if parts.path in ("", "/") else url


def generate(llm, question: str, extractive: Answer, hits: list[Hit], index,
             config: SanadConfig, embedder=None) -> Answer | None:
    """The LLM's answer with only its verified sentences, or None to keep ``extractive``. Never raises
    for what the server does or says."""
    sources = collect_sources(hits, index)
    if not sources:
        return None
    prompt_messages = messages(question, sources, index, extractive.language)
    try:
        reply = llm.chat(prompt_messages).message.content or ""
    except Exception as exc:  # noqa: BLE001 - any client or server failure means "keep the extractive answer"
        log.warning("the LLM server failed (%s: %s); answering extractively", type(exc).__name__, exc,
                    extra={"sanad_llm": {"kept": [], "dropped": [], "used": False, "error": type(exc).__name__}})
        return None
    kept, dropped, content, newline = [], [], 0, False  # kept: (sentence, cited numbers, starts a new line)
    for sentence, cited, line_break in _reply_sentences(reply):
        newline = newline or line_break  # a dropped sentence's line break stays
        plain = _MARKER.sub("", sentence).strip()
        if not terms(plain) and not read_numbers(plain):
            continue  # nothing to check (a stray marker or bullet)
        content += 1
        valid = 0 < len(set(cited)) <= MAX_CITED and all(1 <= n <= len(sources) for n in cited)
        if valid and _supported(plain, [sources[n - 1] for n in cited], embedder or _embedder(config.embed, config.cache_dir)):
            kept.append((sentence, cited, newline))
            newline = False
        else:
            dropped.append(sentence)
    used = bool(kept) and len(kept) >= MIN_KEPT * content and agrees(" ".join(s for s, _, _ in kept), extractive)
    # One record per reply, for operators and for `sanad eval --mode llm` (which collects ``sanad_llm``).
    log.info("kept %d of %d LLM sentences%s; dropped: %s", len(kept), content,
             "" if used else ", answering extractively (too few kept, or the reader's answer not among them)",
             dropped, extra={"sanad_llm": {"kept": [s for s, _, _ in kept], "dropped": dropped, "used": used}})
    if not used:
        return None
    order = list(dict.fromkeys(n for _, cited, _ in kept for n in cited))  # old number -> new, by first use
    renumber = {old: new for new, old in enumerate(order, start=1)}
    text = ""
    for sentence, _, newline in kept:
        text += ("\n" if newline else " ") if text else ""
        text += _MARKER.sub(lambda m: "".join(f"[{renumber[n]}]" for n in dict.fromkeys(_numbers(m))), sentence)
    citations = [_citation(renumber[old], sources[old - 1], index) for old in order]
    return Answer(text=text, abstained=False, citations=citations, short_answer=extractive.short_answer,
                  language=extractive.language, mode="llm", confidence=extractive.confidence,
                  conflict=extractive.conflict)


def agrees(text: str, extractive: Answer) -> bool:
    """Whether ``text`` states the extractive answer's short answer (its words, or for a figure its value
    in any writing): the model may explain the reader's answer, never replace it with another."""
    if not extractive.spans:
        return True
    best = extractive.spans[0].text
    values = {number.value for number in read_numbers(best)}
    if values:
        return bool(values & {number.value for number in read_numbers(text)})
    return normalize(best) in normalize(text)


def verify(sentence: str, cited_passages: Sequence[str], similarity: float | None = None) -> bool:
    """Whether ``sentence`` (markers removed) says only what ``cited_passages`` say: each of its numbers
    occurs in them ("٨ آلاف" = "8,000" = "ثمانية آلاف") and they hold ``MIN_COVERAGE`` of its content
    words. A sentence in another language than its passages passes on ``similarity`` instead."""
    if not cited_passages:
        return False
    values = [number.value for passage in cited_passages for number in read_numbers(passage)]
    for number in read_numbers(sentence):
        if not any(math.isclose(number.value, value, rel_tol=1e-9) for value in values):
            return False
    if _negated(sentence) and not any(_negated(passage) for passage in cited_passages):
        return False  # "لا يتمركز ..." from "يتمركز ...": negation words are stopwords, invisible to coverage
    if not same_language(sentence, cited_passages):
        return similarity is not None and similarity >= MIN_SIMILARITY
    return coverage(sentence, cited_passages) >= MIN_COVERAGE


def coverage(sentence: str, passages: Sequence[str]) -> float:
    """Share of the sentence's content words (stemmed, numbers left to `verify`) found in the passages;
    a word may differ from the passage's by a leading conjunction ("وأكدت" / "أكدت", "فقال" / "وقال")."""
    wanted = set(terms(_without_numbers(sentence)))
    if not wanted:
        return 1.0
    present = {_bare(term) for term in terms(" ".join(_without_numbers(p) for p in passages))}
    return sum(_bare(term) in present for term in wanted) / len(wanted)


def _negated(text: str) -> bool:
    return bool(_NEGATION.search(normalize(text)))


def _bare(term: str) -> str:
    return term[1:] if len(term) > 3 and term[0] in "وف" else term


def same_language(sentence: str, passages: Sequence[str]) -> bool:
    return is_arabic(sentence) == is_arabic(" ".join(passages))


def is_instruction(text: str) -> bool:
    """Whether article text addresses the model ("ignore previous instructions and ..."): such a
    sentence is data no answer should rest on, so it is never numbered as a source."""
    return bool(_INSTRUCTION.search(normalize(text)))


def collect_sources(hits: list[Hit], index) -> list[Source]:
    """The distinct sentences of the hits in rank order, numbered from 1."""
    sources, seen = [], set()
    for hit in hits:
        for row in index.sentence_rows(hit.chunk.id):
            if row in seen or len(sources) == MAX_PROMPT_SENTENCES:
                continue
            seen.add(row)
            sentence = index.sentence(row)
            if is_instruction(sentence.text):
                log.warning("withheld from the LLM a sentence of %s that reads as an instruction", sentence.article_id)
                continue
            sources.append(Source(len(sources) + 1, row, sentence, hit.score))
    return sources


def messages(question: str, sources: list[Source], index, language: str) -> list:
    """The system and user messages in the question's language, the sources as ``[n] (title) text``."""
    from llama_index.core.llms import ChatMessage

    lines = []
    for source in sources:
        article = index.article(source.sentence.article_id)
        title = " ".join(article.title.split())
        title = article.source if not title or is_instruction(title) else title
        lines.append(f"[{source.n}] ({title}) {source.sentence.text}")
    values = {"sources": "\n".join(lines), "question": question}
    user = re.sub(r"\{(sources|question)\}", lambda m: values[m.group(1)], prompt(f"user_{language}"))
    return [ChatMessage(role="system", content=prompt(f"system_{language}")), ChatMessage(role="user", content=user)]


def prompt(name: str) -> str:
    """A prompt file from ``prompts/`` (read on every call, so edits apply without a restart)."""
    path = PROMPTS / f"{name}.txt"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the prompt file {path}: {exc}") from exc


def _reply_sentences(reply: str) -> list[tuple[str, list[int], bool]]:
    """(sentence with its markers, cited numbers, whether a line break precedes it). Markers that open
    a fragment ("... كورسك. [2] وقال ...") belong to the sentence before."""
    pieces, cursor, newline = [], 0, False
    for start, end in split_sentences(reply):
        newline = newline or "\n" in reply[cursor:start]
        cursor, text = end, reply[start:end]
        lead = _LEADING_MARKERS.match(text)
        if lead and pieces:
            pieces[-1][0] += " " + lead.group().strip()
            text = text[lead.end():].strip()
        if text:
            pieces.append([text, newline])
            newline = False
    return [(text, list(dict.fromkeys(n for m in _MARKER.finditer(text) for n in _numbers(m))), newline)
            for text, newline in pieces]


def _numbers(marker: re.Match) -> list[int]:
    return [int(normalize(n)) for n in re.split(r"\s*[,،]\s*", marker.group(1).strip())]


def _without_numbers(text: str) -> str:
    for number in reversed(read_numbers(text)):
        text = text[:number.start] + " " + text[number.end:]
    return text


def _supported(sentence: str, cited: list[Source], embedder) -> bool:
    passages = [source.sentence.text for source in cited]
    if same_language(sentence, passages):
        return verify(sentence, passages)
    return verify(sentence, passages, _similarity(sentence, passages, embedder))


def _similarity(sentence: str, passages: list[str], embedder) -> float:
    """Best cosine between the sentence and its cited sentences, all embedded as passages."""
    vectors = embedder.encode_passages([sentence] + passages)
    return float(np.max(vectors[1:] @ vectors[0]))


@functools.lru_cache(maxsize=2)
def _embedder(embed: EmbedConfig, cache_dir):
    from rag.embeddings import Embedder  # the model itself is shared with the ChatBot's (cached per folder)

    return Embedder(embed, cache_dir)


def _citation(n: int, source: Source, index) -> Citation:
    sentence = source.sentence
    return Citation.of(n, index.article(sentence.article_id), sentence.start, sentence.end, source.score)
