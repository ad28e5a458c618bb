"""XQuAD as a Sanad benchmark: the 240 Arabic paragraphs become a corpus, the questions a gold set.

The Arabic and English files are parallel (same question ids), so every question is
asked twice against the same Arabic paragraphs: in Arabic, and in English (cross-lingual).
The split by article (``half``) lets the answer layer fit on one half and report on the other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eval import half_of
from rag.config import REPO_ROOT

DEFAULT_DIR = REPO_ROOT.parent / "shared" / "benchmarks" / "xquad"


@dataclass(frozen=True)
class XQuADQuestion:
    id: str
    question_ar: str
    question_en: str
    answers: tuple[str, ...]  # Arabic gold spans
    paragraph: int  # record number in the corpus file (1-based), so article id "xquad.jsonl#<n>"
    article: str  # XQuAD article title: the unit of the fit/report split
    answer_start: int

    @property
    def article_id(self) -> str:
        return f"xquad.jsonl#{self.paragraph}"

    @property
    def half(self) -> str:
        """"fit" or "report", fixed per XQuAD article so no paragraph is in both halves."""
        return half_of(self.article)


def load(folder: Path | None = None) -> tuple[list[dict], list[XQuADQuestion]]:
    """(paragraph records, questions) from ``xquad.ar.json`` and ``xquad.en.json``."""
    folder = Path(folder or DEFAULT_DIR)
    try:
        arabic = json.loads((folder / "xquad.ar.json").read_text(encoding="utf-8"))
        english = json.loads((folder / "xquad.en.json").read_text(encoding="utf-8"))
    except OSError as exc:
        from rag.errors import CorpusError

        raise CorpusError(f"XQuAD not found in {folder}: {exc.strerror}; pass --xquad DIR") from exc
    english_questions = {qa["id"]: qa["question"] for article in english["data"]
                         for paragraph in article["paragraphs"] for qa in paragraph["qas"]}
    records, questions = [], []
    for article in arabic["data"]:
        for paragraph in article["paragraphs"]:
            records.append({"title": article["title"].replace("_", " "), "text": paragraph["context"]})
            for qa in paragraph["qas"]:
                questions.append(XQuADQuestion(
                    id=qa["id"], question_ar=qa["question"], question_en=english_questions[qa["id"]],
                    answers=tuple(dict.fromkeys(a["text"] for a in qa["answers"])),
                    paragraph=len(records), article=article["title"], answer_start=qa["answers"][0]["answer_start"]))
    return records, questions


def write_corpus(records: list[dict], folder: Path) -> Path:
    """The paragraphs as one JSONL file in ``folder`` (rewritten only when it changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "xquad.jsonl"
    content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not path.exists() or path.read_text(encoding="utf-8") != content:
        path.write_text(content, encoding="utf-8")
    return folder
