"""ArQuAD dev (natural Arabic questions written by language experts) for choosing, never for training.

Its licence allows internal research and evaluation only: it is read from ``../shared/benchmarks/arquad/``
at run time and converted in memory; nothing of it is copied into the repository or a package, and no
training command reads it except to score dev checkpoints. Rows listed in ``skip-ids.txt`` are left out
(answers that cannot be placed, passages shared with other public evaluation sets): 1,565 questions over
393 paragraphs of 133 articles remain.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from rag.config import REPO_ROOT
from rag.types import Article

DEFAULT_DIR = REPO_ROOT.parent / "shared" / "benchmarks" / "arquad"
CSV_FILE = "ArQuAD-dev.csv"
SKIP_FILE = "skip-ids.txt"
ARTICLE_ID = "arquad#{}"  # a paragraph's article id in the index, by record number


@dataclass(frozen=True)
class ArQuADQuestion:
    id: str
    question: str
    answer: str
    answer_start: int  # in the paragraph's text
    paragraph: int  # record number (1-based) among the distinct paragraphs, in file order
    article: str  # the title: rows sharing it are one article

    @property
    def answer_end(self) -> int:
        return self.answer_start + len(self.answer)

    @property
    def half(self) -> str:
        """"fit" (what `eval.calibrate_reader` fits the gate and answer settings on) or "report", by article."""
        from eval import half_of

        return half_of(f"arquad:{self.article}")

    @property
    def article_id(self) -> str:
        return ARTICLE_ID.format(self.paragraph)


def load(folder: Path | None = None) -> tuple[list[dict], list[ArQuADQuestion]]:
    """(paragraph records {"title", "text"}, questions), read as cp1256 as the dataset's README says."""
    folder = Path(folder or DEFAULT_DIR)
    try:
        raw = (folder / CSV_FILE).read_bytes().decode("cp1256")
        skip = set((folder / SKIP_FILE).read_text(encoding="utf-8").split())
    except OSError as exc:
        from rag.errors import CorpusError

        raise CorpusError(f"ArQuAD dev not found in {folder}: {exc.strerror}; pass --arquad DIR") from exc
    records: list[dict] = []
    numbers: dict[str, int] = {}
    questions = []
    for row in csv.DictReader(io.StringIO(raw, newline="")):
        if row["id"] in skip:
            continue
        context, start, answer = row["context"], int(row["answer_start"]), row["text"]
        if context[start:start + len(answer)] != answer:
            continue  # skip-ids.txt lists every such row; a newer file may hold others
        if context not in numbers:
            records.append({"title": row["title"], "text": context})
            numbers[context] = len(records)
        questions.append(ArQuADQuestion(row["id"], row["question"].strip(), answer, start, numbers[context], row["title"]))
    return records, questions


def articles(records: list[dict]) -> list[Article]:
    """The paragraphs as in-memory articles, so an index is built from them without writing the text to a file."""
    return [Article(id=ARTICLE_ID.format(number), source=f"ArQuAD-dev#{number}", title=record["title"], text=record["text"])
            for number, record in enumerate(records, start=1)]
