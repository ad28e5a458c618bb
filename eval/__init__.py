"""Sanad's evaluation: ``sanad eval`` (run.py), the benchmarks, the reader's training and calibration,
and the soak, load and fault runs. What several of them share is defined here."""
from __future__ import annotations

import hashlib
from pathlib import Path

SEEDS_GOLD = Path(__file__).resolve().parent / "datasets" / "seeds_qa.jsonl"  # the seed articles' gold questions


def half_of(key: str) -> str:
    """"fit" or "report", fixed by a hash of ``key`` (an XQuAD article's title, the id of a seed question's
    first turn): whatever is tuned on the fit half is reported on the other."""
    return "fit" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 0 else "report"
