"""Fitting adaptive reading (`eval.calibrate_reader.fit_cascade`) on real seed questions with the real
reader: every (first, stop probability) pair is tried, the chunks it reads follow from how many
questions stop early, and the pair chosen (if any) keeps every dev figure within `MAX_MOVE` while
reading the fewest chunks."""
from __future__ import annotations

import json

import pytest

from eval import SEEDS_GOLD
from eval.calibrate_reader import (CASCADE_FIRST, MAX_MOVE, STOP_PROBABILITIES, Asked, MemoReader, fit_cascade,
                                   hits_for)
from rag.answer import Answerer
from rag.reader import CONFIG_FILE


@pytest.fixture(scope="module")
def fitted(seeds_bot, config):
    entries = [json.loads(line) for line in SEEDS_GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    asked = [Asked("seeds", e["lang"], e["question"], e["answerable"], tuple(e["answers"]), "seeds")
             for e in entries if not e.get("follows")][:24]
    rows = [{"asked": a, "hits": hits_for(seeds_bot, a), "answerable": a.answerable, "source": "seeds"} for a in asked]
    memo = MemoReader(seeds_bot.reader)
    settings = json.loads((seeds_bot.reader.folder / CONFIG_FILE).read_text(encoding="utf-8"))
    return fit_cascade(rows, {"seeds": seeds_bot}, Answerer(config, memo), settings), rows


def test_every_pair_is_tried_and_stopping_early_reads_fewer_chunks(fitted):
    (_, report), rows = fitted
    assert len(report["trials"]) == len(CASCADE_FIRST) * len(STOP_PROBABILITIES)
    every = report["chunks_read_without"]
    assert every == pytest.approx(sum(len(r["hits"]) for r in rows) / len(rows), abs=1e-3)
    for trial in report["trials"].values():
        expected = trial["stopped"] * trial["first"] + (1 - trial["stopped"]) * every
        assert trial["chunks_read"] == pytest.approx(expected, abs=0.01)
        assert trial["text_differs"] >= trial["short_answer_or_abstention_changed"] - 1e-9
    by_first = {first: [report["trials"][f"{first}/{p}"]["stopped"] for p in STOP_PROBABILITIES] for first in CASCADE_FIRST}
    assert all(a >= b for stopped in by_first.values() for a, b in zip(stopped, stopped[1:]))  # surer: fewer stop


def test_the_chosen_pair_keeps_the_figures_and_reads_the_fewest_chunks(fitted):
    (cascade, report), _ = fitted
    fitting = [t for t in report["trials"].values() if t["largest_move"] <= MAX_MOVE]
    if cascade is None:
        assert fitting == []
    else:
        chosen = report["trials"][f"{cascade['first']}/{cascade['stop_probability']}"]
        assert chosen["largest_move"] <= MAX_MOVE
        assert chosen["chunks_read"] == min(t["chunks_read"] for t in fitting)
