"""The terminal progress bar the CLI and the eval suites show while an index is built."""
from __future__ import annotations

import sys


def progress_bar():
    """tqdm bars on stderr, one per stage ("embedding", ...), driven by the store's (done, total, what) callbacks."""
    from tqdm import tqdm

    bars = {}

    def update(done: int, total: int, what: str) -> None:
        if what not in bars:
            bars[what] = tqdm(total=total, desc=what, unit="text", file=sys.stderr, leave=False)
        bar = bars[what]
        bar.total, bar.n = total, done
        bar.refresh()

    return update
