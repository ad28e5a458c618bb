"""The soak suite's fixed CI sample: 300 questions (an even share from each QA-train and XQuAD
file) over the paragraphs they are about, asked with the default settings. Nothing may raise and
every citation must slice back; ``make soak`` runs every question over every paragraph."""
from __future__ import annotations

import json

import pytest

from eval.soak import SOURCES, load, run, sample, setup_key

SAMPLE = 300


@pytest.fixture(scope="module")
def soak_out(tmp_path_factory):
    return tmp_path_factory.mktemp("soak")


@pytest.fixture(scope="module")
def soak_sample(config, embedder, soak_out) -> dict:
    if not all(folder.is_dir() for folder in SOURCES):
        pytest.skip(f"the soak data is missing: {', '.join(str(s) for s in SOURCES)}")
    return run(soak_out, SAMPLE, config=config, progress=False)


def test_the_sample_is_fixed_and_takes_an_even_share_of_each_file():
    if not all(folder.is_dir() for folder in SOURCES):
        pytest.skip("the soak data is missing")
    _, questions = load()
    chosen = sample(questions, SAMPLE)
    assert chosen == sample(list(reversed(questions)), SAMPLE)
    files = {q.file for q in questions}
    assert len(chosen) == SAMPLE and {q.file for q in chosen} == files
    assert max(sum(q.file == f for q in chosen) for f in files) - min(sum(q.file == f for q in chosen) for f in files) <= 1


@pytest.mark.slow
def test_soak_sample_asks_every_question_without_an_exception_and_every_citation_is_exact(soak_sample):
    assert soak_sample["questions"] == SAMPLE
    assert soak_sample["failures"] == []
    assert soak_sample["answered"] == SAMPLE and soak_sample["citations"] > 0


@pytest.mark.slow
def test_a_killed_soak_resumes_and_asks_only_what_is_left(soak_sample, soak_out, config):
    """A kill mid-write leaves a cut line: that question and the ones after it are asked again,
    the rest come from the journal, and the figures are those of the whole run."""
    journal = soak_out / f"asked-{SAMPLE}.jsonl"
    lines = journal.read_text(encoding="utf-8").splitlines()
    assert len(lines) == SAMPLE
    journal.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:20], encoding="utf-8")
    resumed = run(soak_out, SAMPLE, config=config, progress=False)
    assert resumed["resumed"] == SAMPLE - 3
    assert {k: resumed[k] for k in ("questions", "answered", "abstained", "citations", "failures")} == \
        {k: soak_sample[k] for k in ("questions", "answered", "abstained", "citations", "failures")}
    records = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.startswith("{") and line.endswith("}")]
    assert len({r["key"] for r in records}) == SAMPLE


def test_a_journal_from_another_setup_is_not_resumed(seeds_bot):
    import dataclasses

    from eval.soak import _journal

    config = seeds_bot.config
    key = setup_key(config, seeds_bot.index, seeds_bot.embedder)
    for other in (dataclasses.replace(config, retrieve=dataclasses.replace(config.retrieve, top_k=config.retrieve.top_k - 1)),
                  dataclasses.replace(config, answer=dataclasses.replace(config.answer, mode="llm"))):
        assert setup_key(other, seeds_bot.index, seeds_bot.embedder) != key
    text = json.dumps({"setup": "another", "key": "a/1"}) + "\n" + json.dumps({"setup": key, "key": "a/2"}) + "\n"
    assert list(_journal(text, key, {"a/1", "a/2"})) == ["a/2"]
