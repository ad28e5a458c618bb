"""Faults while indexing: `sanad index` killed with SIGKILL, and leftovers of a killed writer.

The kill test is the reduced form of ``python -m eval.faults`` (a trial of each kind: killed
while starting, while embedding, while writing a version, right after the switch to the new
version, at a random moment), on a smaller folder. Every trial must reopen as the old or the new version, and the next open must remove
the leftovers and complete the new version.
"""
from __future__ import annotations

import os

import pytest

from eval.faults import KINDS, leftovers, run_trials
from rag.indexing import update_index


@pytest.mark.slow
def test_sanad_index_killed_at_any_point_leaves_the_old_or_the_new_version(embedder, config, tmp_path):
    trials = run_trials(len(KINDS), 60, tmp_path, embedder, config, log=lambda line: None)
    assert [t.kind for t in trials] == list(KINDS)
    assert all(t.reopened_as in ("old", "new") for t in trials)
    assert any(not t.finished_first for t in trials)  # at least one kill landed mid-run
    assert {t.reopened_as for t in trials if not t.finished_first} == {"old", "new"}


def test_leftovers_of_a_killed_writer_are_removed_on_the_next_open(seeds_index_copy, seeds_articles, embedder, config):
    current = os.readlink(seeds_index_copy / "current")
    half_written = seeds_index_copy / ".tmp-v-0123456789ab"
    half_written.mkdir()
    (half_written / "chunks.npy").write_bytes(b"\x93NUMPY")
    orphan = seeds_index_copy / "v-ba9876543210"  # renamed in, killed before `current` moved
    orphan.mkdir()
    (seeds_index_copy / ".link-v-ba9876543210").symlink_to("v-ba9876543210")
    assert set(leftovers(seeds_index_copy)) == {half_written.name, orphan.name, ".link-v-ba9876543210"}
    index, report = update_index(seeds_index_copy, seeds_articles, embedder, config)
    assert report.unchanged == len(seeds_articles) and report.added == 0
    assert leftovers(seeds_index_copy) == () and os.readlink(seeds_index_copy / "current") == current
    assert len(index) > 0
