"""The soak suite's fixed CI sample: 300 questions (an even share from each QA-train and XQuAD
file) over the paragraphs they are about, asked with the default settings. Nothing may raise and
every citation must slice back; ``make soak`` runs every question over every paragraph."""
from __future__ import annotations

import pytest

from eval.soak import SOURCES, load, run, sample

SAMPLE = 300


@pytest.fixture(scope="module")
def soak_sample(config, embedder, tmp_path_factory) -> dict:
    if not all(folder.is_dir() for folder in SOURCES):
        pytest.skip(f"the soak data is missing: {', '.join(str(s) for s in SOURCES)}")
    return run(tmp_path_factory.mktemp("soak"), SAMPLE, config=config, progress=False)


def test_the_sample_is_fixed_and_takes_an_even_share_of_each_file():
    if not all(folder.is_dir() for folder in SOURCES):
        pytest.skip("the soak data is missing")
    _, questions = load()
    chosen = sample(questions, SAMPLE)
    assert chosen == sample(list(reversed(questions)), SAMPLE)
    files = {q.file for q in questions}
    assert len(chosen) == SAMPLE and {q.file for q in chosen} == files
    assert max(sum(q.file == f for q in chosen) for f in files) - min(sum(q.file == f for q in chosen) for f in files) <= 1


def test_soak_sample_asks_every_question_without_an_exception_and_every_citation_is_exact(soak_sample):
    assert soak_sample["questions"] == SAMPLE
    assert soak_sample["failures"] == []
    assert soak_sample["answered"] == SAMPLE and soak_sample["citations"] > 0
