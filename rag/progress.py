"""Progress while an index is built: the (done, total, what) callback, and the terminal bars the
CLI and the eval suites show."""
from __future__ import annotations

import sys
from typing import Callable

Progress = Callable[[int, int, str], None]  # (done, total, what), e.g. (512, 2048, "embedding")


def progress_bar() -> Progress:
    """tqdm bars on stderr, one per stage ("embedding", ...), driven by `Progress` callbacks."""
    from tqdm import tqdm

    bars = {}

    def update(done: int, total: int, what: str) -> None:
        if what not in bars:
            bars[what] = tqdm(total=total, desc=what, unit="text", file=sys.stderr, leave=False)
        bar = bars[what]
        bar.total, bar.n = total, done
        bar.refresh()

    return update
