"""Training and dev examples for the span reader (`python -m eval.train_reader`).

Sources (``../shared/datasets/qa-train/``, see its README, and `SOURCES`): AAQAD (Arabic, with real
unanswerable questions), the Arabic-SQuAD subset, TyDi GoldP (information-seeking questions in English,
Bengali, Finnish, Indonesian, Korean, Russian, Swahili and Telugu), JaQuAD, DRCD and CMRC 2018
(crowd-written, Japanese and Chinese); plus XQuAD's *fit* half (Arabic and English questions over the
Arabic paragraphs; the report half is never read here) and the fit half of the seed gold set. Every
split is by article, never by question. The other languages teach reading (many more people's
questions than the Arabic sets hold); the abstention gate is calibrated for Arabic and English only.

Unanswerable examples come from three places, because abstaining is what the reader must learn best:

* AAQAD's own unanswerable questions;
* *other passages*: an answerable question paired with the passage of the same article that shares
  the most words with it but does not hold the answer (what retrieval hands the reader most of the time);
* *swapped questions*: an answerable question whose key word (the rarest question word that the passage
  contains) or figure is replaced by one from another article's questions that the passage does not
  contain: "كم عدد الجنود الكوريين في كورسك" becomes a question about some other actor, which the
  passage no longer answers.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from eval import SEEDS_GOLD, half_of
from rag.arabic import STOPWORDS, is_arabic, normalize, terms
from rag.config import REPO_ROOT

QA_TRAIN = REPO_ROOT.parent / "shared" / "datasets" / "qa-train"
XQUAD = REPO_ROOT.parent / "shared" / "benchmarks" / "xquad"
SEEDS = REPO_ROOT / "seeds"
DEV_SHARE = 6  # percent of the articles of each training file held out as dev
XQUAD_DEV_SHARE = 25  # percent of XQuAD's fit-half articles held out as dev (the report half is never used)
_EDGE = " \t\n.,،؛;:!?؟()[]{}\"'«»“”‘’-–—"  # stripped from both ends of a gold span ("(2003)،" -> "2003")


@dataclass(frozen=True)
class QAExample:
    """One question over one passage; ``answers`` are (start, end) offsets in ``context``, empty when
    the passage does not answer it."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[int, int], ...]
    language: str  # of the question: "ar", "en", or another language of `SOURCES`
    source: str  # a `SOURCES` name, "xquad" or "seeds", plus "+other" / "+swap" / "+offtopic" for made negatives
    title: str  # the article: the unit of every split

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def split_of(title: str, salt: str, share: int) -> str:
    """"dev" for ``share`` percent of the titles, fixed by a hash, else "train"."""
    value = int(hashlib.sha1(f"{salt}:{title}".encode()).hexdigest(), 16) % 100
    return "dev" if value < share else "train"


def clean_span(context: str, start: int, text: str) -> tuple[int, int] | None:
    """The gold span without surrounding blanks and punctuation; None when nothing is left."""
    end = start + len(text)
    if context[start:end] != text:
        found = context.find(text)
        if found < 0:
            return None
        start, end = found, found + len(text)
    while start < end and context[start] in _EDGE:
        start += 1
    while end > start and context[end - 1] in _EDGE:
        end -= 1
    return (start, end) if start < end else None


def read_squad(path: Path, source: str, language: str) -> list[QAExample]:
    """SQuAD-format JSON -> examples (answer spans cleaned, duplicates dropped)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    examples = []
    for article in data:
        title = article.get("title", "")
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                spans = () if qa.get("is_impossible") else tuple(dict.fromkeys(
                    span for a in qa["answers"] if (span := clean_span(context, a["answer_start"], a["text"]))))
                if not qa.get("is_impossible") and not spans:
                    continue  # an answer that cannot be located teaches nothing
                examples.append(QAExample(qa["id"], qa["question"].strip(), context, spans, language, source, title))
    return examples


def read_xquad(folder: Path = XQUAD) -> dict[str, list[QAExample]]:
    """XQuAD's fit half only, Arabic and English questions over the Arabic paragraphs: {"train", "dev"}."""
    from eval.xquad import load

    records, questions = load(folder)
    split: dict[str, list[QAExample]] = {"train": [], "dev": []}
    for q in questions:
        if q.half != "fit":
            continue
        context = records[q.paragraph - 1]["text"]
        span = clean_span(context, q.answer_start, q.answers[0])
        if span is None:
            continue
        part = split_of(q.article, "xquad", XQUAD_DEV_SHARE)
        for language, text in (("ar", q.question_ar), ("en", q.question_en)):
            split[part].append(QAExample(f"xquad-{q.id}-{language}", text, context, (span,), language, "xquad", q.article))
    return split


def xquad_paragraphs(folder: Path = XQUAD) -> dict[str, list[str]]:
    """XQuAD fit-half paragraphs by article, for "other passage" negatives."""
    from eval.xquad import load

    records, questions = load(folder)
    by_title: dict[str, list[str]] = {}
    for q in questions:
        if q.half == "fit":
            paragraphs = by_title.setdefault(q.article, [])
            if records[q.paragraph - 1]["text"] not in paragraphs:
                paragraphs.append(records[q.paragraph - 1]["text"])
    return by_title


# --- the seed gold set's fit half ------------------------------------------------------------

def seeds_half(entry: dict, by_id: dict) -> str:
    """"fit" or "report" for a seed gold question, fixed by the id of its first turn (chains stay together)."""
    while entry.get("follows"):
        entry = by_id[entry["follows"]]
    return half_of(entry["id"])


def read_seeds(gold: Path = SEEDS_GOLD, corpus: Path = SEEDS) -> list[QAExample]:
    """The fit half of the seed gold set over the seed articles' chunks.

    Answerable: every chunk holding a support sentence, with the longest answer key found in it.
    Unanswerable: the four chunks sharing the most words with the question. A follow-up is read
    with the question before it, as the chatbot reads it.
    """
    from rag.chunking import chunk_article
    from rag.config import ChunkConfig
    from rag.ingest import read_corpus

    entries = [json.loads(line) for line in Path(gold).read_text(encoding="utf-8").splitlines() if line.strip()]
    by_id = {e["id"]: e for e in entries}
    chunks = [(article, chunk) for article in read_corpus(corpus) for chunk in chunk_article(article, ChunkConfig())]
    examples = []
    for entry in entries:
        if seeds_half(entry, by_id) != "fit":
            continue
        question = entry["question"]
        if entry.get("follows"):
            question = f"{by_id[entry['follows']]['question']} {question}"
        if entry["answerable"]:
            for number, (article, chunk) in enumerate(chunks):
                support = [s for s in entry["support"] if s in chunk.text]
                if article.source not in entry["articles"] or not support:
                    continue
                spans = tuple(span for s in support if (span := _key_span(chunk.text, s, entry["answers"])))
                if spans:
                    examples.append(QAExample(f"seeds-{entry['id']}-{number}", question, chunk.text, spans[:1],
                                              entry["lang"], "seeds", "seeds"))
        else:
            wanted = set(terms(question))
            ranked = sorted(chunks, key=lambda pair: -len(wanted & set(terms(pair[1].text))))
            for number, (_, chunk) in enumerate(ranked[:4]):
                examples.append(QAExample(f"seeds-{entry['id']}-{number}", question, chunk.text, (), entry["lang"],
                                          "seeds", "seeds"))
    return examples


def _key_span(text: str, sentence: str, keys) -> tuple[int, int] | None:
    """The longest answer key written literally inside ``sentence`` (offsets in ``text``)."""
    at = text.find(sentence)
    for key in sorted(keys, key=len, reverse=True):
        found = sentence.find(key)
        if key.strip() and found >= 0:
            return at + found, at + found + len(key)
    return None


# --- made negatives -----------------------------------------------------------------------------

def other_passage_negatives(examples: list[QAExample], paragraphs: dict[str, list[str]], share: float,
                            rng: random.Random) -> list[QAExample]:
    """For ``share`` of the answerable examples: the same question over the most similar passage of its
    article (``paragraphs`` keyed "source/title") that does not contain the answer."""
    normalized: dict[str, str] = {}  # an article's paragraphs are compared with each of its questions
    words: dict[str, set[str]] = {}
    made = []
    for example in examples:
        if not example.answerable or rng.random() >= share:
            continue
        answers = {normalize(example.context[s:e]) for s, e in example.answers}
        wanted = set(terms(example.question))
        candidates = paragraphs.get(f"{example.source.split('+')[0]}/{example.title}", ())
        for p in candidates:
            if p not in normalized:
                normalized[p], words[p] = normalize(p), set(terms(p))
        others = [p for p in candidates if p != example.context and not any(a in normalized[p] for a in answers)]
        if not others:
            continue
        best = max(others, key=lambda p: (len(wanted & words[p]), rng.random()))
        made.append(replace(example, id=example.id + "+other", context=best, answers=(), source=example.source + "+other"))
    return made


_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_PROCLITIC = re.compile(r"^(?:و|ف|ب|ك|ل)?(?:ال)?")


def _core(word: str) -> str:
    """A normalized word without its article and one-letter proclitics: "والكوريين" -> "كوريين"."""
    norm = normalize(word)
    core = _PROCLITIC.sub("", norm) if not norm.isascii() else norm
    return core if len(core) >= 3 else norm


def _shape(word: str) -> tuple:
    """What a replacement must share with the word it replaces, so the question stays grammatical."""
    if word.isascii():
        return ("en", word[:1].isupper(), word.isdigit())
    norm = normalize(word)
    ending = next((e for e in ("يين", "يون", "يه", "ي") if norm.endswith(e)), "")  # nisba: plural, feminine, masculine
    return ("ar", norm.startswith(("ال", "وال", "بال", "لل")), ending)


def _key_words(question: str) -> list[re.Match]:
    """Content words of a question that could name what it is about."""
    found = []
    for match in _TOKEN.finditer(question):
        word = match.group()
        if normalize(word) in STOPWORDS or len(_core(word)) < 3:
            continue
        if word.isascii() and not (word[:1].isupper() or word.isdigit()) and match.start() > 0:
            continue  # English: names and figures only
        found.append(match)
    return found


RARE = 10  # a key word occurs in at most this many questions: mostly names, places, nisbas and figures


def _names_actor(word: str) -> bool:
    """A nationality or affiliation ("الكوريين", "الروسي", "Iranian"), or a capitalized name: a swap of one
    makes the question about another actor, however common the word."""
    if word.isascii():
        return word[:1].isupper() and not word.isdigit()
    return _shape(word)[2] in ("ي", "يين", "يون") and len(_core(word)) >= 4  # feminine "-ية" is mostly abstract nouns


def swap_negatives(examples: list[QAExample], share: float, rng: random.Random,
                   actors: bool = False) -> list[QAExample]:
    """For ``share`` of the answerable examples: the question with its key word or figure replaced by one
    the passage does not contain (taken from another article's questions), so the passage no longer answers.

    Rare words are swapped for rare words: they are mostly names and figures, and a swap of a common
    word would often leave the question answerable or make it nonsense. With ``actors``, a question naming
    a nationality or a name swaps that one, whatever its frequency, for another from the same kind:
    "وزير الدفاع الكوري" becomes "وزير الدفاع الروسي", a question the passage about the first does not answer."""
    frequency = Counter(_core(m.group()) for e in examples for m in _key_words(e.question))
    rare: dict[tuple, list[tuple[str, str]]] = {}
    named: dict[tuple, list[tuple[str, str]]] = {}
    for e in examples:
        for match in _key_words(e.question):
            word = match.group()
            if frequency[_core(word)] <= RARE:
                rare.setdefault(_shape(word), []).append((word, e.title))
            if actors and _names_actor(word):
                named.setdefault(_shape(word), []).append((word, e.title))
    made = []
    for example in examples:
        if not example.answerable or rng.random() >= share:
            continue
        context = normalize(example.context)
        answers = " ".join(normalize(example.context[s:e]) for s, e in example.answers)
        keys = [m for m in _key_words(example.question)
                if (_core(m.group()) in context or (example.language == "en" and not example.context.isascii()))
                and _core(m.group()) not in answers]
        actor_keys = [m for m in keys if _names_actor(m.group())] if actors else []
        if actor_keys:
            key, pool = rng.choice(actor_keys), named
        else:
            keys = [m for m in keys if frequency[_core(m.group())] <= RARE]
            if not keys:
                continue
            key, pool = min(keys, key=lambda m: (frequency[_core(m.group())], rng.random())), rare
        choices = pool.get(_shape(key.group()), [])
        for _ in range(20):
            if not choices:
                break
            word, title = rng.choice(choices)
            if title != example.title and _core(word) not in context and _core(word) != _core(key.group()):
                question = example.question[:key.start()] + word + example.question[key.end():]
                made.append(replace(example, id=example.id + "+swap", question=question, answers=(),
                                    source=example.source + "+swap"))
                break
    return made


def cross_language_negatives(questions: list[QAExample], passages: list[QAExample], share: float,
                             rng: random.Random) -> list[QAExample]:
    """English questions over unrelated Arabic passages (an English question about something else)."""
    made = []
    for example in questions:
        if rng.random() < share:
            other = rng.choice(passages)
            made.append(replace(example, id=example.id + "+offtopic", context=other.context, answers=(),
                                source=example.source + "+offtopic", title=example.title))
    return made


# --- everything together -----------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One training file: the source name (also the salt of its dev split) and its question language."""

    file: str
    name: str
    language: str


SOURCES = (
    Source("aaqad.ar.json", "aaqad", "ar"),
    Source("arabic-squad-subset.ar.json", "asquad", "ar"),
    Source("tydiqa-goldp-train.en.json", "tydi", "en"),
    Source("tydiqa-goldp-dev.en.json", "tydi", "en"),
    *(Source(f"tydiqa-goldp.{language}.json", "tydi", language) for language in ("bn", "fi", "id", "ko", "ru", "sw", "te")),
    Source("jaquad.ja.json", "jaquad", "ja"),
    Source("drcd.zh.json", "drcd", "zh"),
    Source("cmrc2018.zh.json", "cmrc", "zh"),
)
GATED = ("ar", "en")  # question languages the gate is calibrated for; made negatives beyond "other passage" are theirs


@dataclass(frozen=True)
class DataSettings:
    other_share: float = 0.5  # answerable Arabic/English examples that also get an "other passage" negative
    other_share_more: float = 0.25  # ... the same for the other languages (answerability is learnt mostly in Arabic)
    swap_share: float = 0.25  # ... and a swapped-question negative (Arabic and English)
    offtopic_share: float = 0.15  # English questions also asked of an unrelated Arabic passage
    in_domain_repeat: int = 2  # XQuAD-fit and seed examples are seen this many times per epoch
    swap_actors: bool = False  # also swap nationalities and names (the second training phase)
    sample: float = 1.0  # share of the examples of each training file taken, times the source's share below
    shares: tuple[tuple[str, float], ...] = ()  # per source name, e.g. (("aaqad", 0.5),); 1.0 where absent
    dev_limit: int | None = None  # dev examples kept per source and language (periodic dev reports), None: all
    seed: int = 13

    def share(self, source: str) -> float:
        return self.sample * dict(self.shares).get(source, 1.0)


def build(settings: DataSettings = DataSettings(), limit: int | None = None) -> dict[str, list[QAExample]]:
    """{"train": [...], "dev": [...]}: every source, split by article, with the made negatives."""
    rng = random.Random(settings.seed)
    split: dict[str, list[QAExample]] = {"train": [], "dev": []}
    paragraphs: dict[str, list[str]] = {}
    for source in SOURCES:
        share = settings.share(source.name)
        for example in read_squad(QA_TRAIN / source.file, source.name, source.language)[:limit]:
            part = split_of(example.title, source.name, DEV_SHARE)
            if part == "dev" or share >= 1.0 or rng.random() < share:
                split[part].append(example)
            title_paragraphs = paragraphs.setdefault(f"{source.name}/{example.title}", [])
            if example.context not in title_paragraphs:
                title_paragraphs.append(example.context)
    paragraphs.update({f"xquad/{title}": texts for title, texts in xquad_paragraphs().items()})
    xquad = read_xquad()
    for part in ("train", "dev"):
        split[part] += xquad[part][:limit]
    split["train"] += read_seeds()
    if settings.dev_limit is not None:
        split["dev"] = _per_key(split["dev"], settings.dev_limit, random.Random(settings.seed))
    result = {}
    for part, examples in split.items():
        gated = [e for e in examples if e.language in GATED]
        more = [e for e in examples if e.language not in GATED]
        made = other_passage_negatives(gated, paragraphs, settings.other_share, rng)
        made += other_passage_negatives(more, paragraphs, settings.other_share_more, rng)
        made += swap_negatives(gated, settings.swap_share, rng, actors=settings.swap_actors)
        arabic = [e for e in examples if e.language == "ar"]
        made += cross_language_negatives([e for e in examples if e.language == "en"], arabic, settings.offtopic_share, rng)
        everything = examples + made
        if part == "train":
            in_domain = [e for e in everything if e.source.split("+")[0] in ("xquad", "seeds")]
            everything += in_domain * (settings.in_domain_repeat - 1)
        result[part] = everything
    return result


def _per_key(examples: list[QAExample], limit: int, rng: random.Random) -> list[QAExample]:
    """At most ``limit`` examples per (source, language), drawn by whole articles so none is cut in two."""
    kept = []
    for key in sorted({(e.source, e.language) for e in examples}):
        part = [e for e in examples if (e.source, e.language) == key]
        titles = sorted({e.title for e in part})
        rng.shuffle(titles)
        taken: list[QAExample] = []
        for title in titles:
            if len(taken) >= limit:
                break
            taken += [e for e in part if e.title == title]
        kept += taken
    return kept


def arquad_examples() -> list[QAExample]:
    """ArQuAD dev as gold-passage examples: for scoring checkpoints only, never for training."""
    from eval.arquad import load

    records, questions = load()
    examples = []
    for q in questions:
        context = records[q.paragraph - 1]["text"]
        span = clean_span(context, q.answer_start, q.answer)
        if span:
            examples.append(QAExample(f"arquad-{q.id}", q.question, context, (span,), "ar", "arquad", q.article))
    return examples


def describe(examples: list[QAExample]) -> dict[str, int]:
    """Counts by source and language, for the training log."""
    return dict(sorted(Counter(f"{e.source}/{e.language}/{'ans' if e.answerable else 'none'}" for e in examples).items()))


def question_language(text: str) -> str:
    return "ar" if is_arabic(text) else "en"
