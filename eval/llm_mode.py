"""``sanad eval --suite seeds --mode llm``: what a real model writes, what the verifier keeps, and
whether any answer got worse than the extractive one.

With ``--llm local`` the suite starts Sanad's local server (`rag.local_llm`, ``--llm-model`` picks
the model); otherwise it uses the server of ``SANAD_LLM_BASE_URL`` / ``SANAD_LLM_MODEL``. Each gold
question is asked in LLM mode and, for comparison, extractively by the same bot. `generate` logs one
record per reply (``sanad_llm``: the sentences kept and dropped, and whether the reply was used);
`Replies` collects them.
"""
from __future__ import annotations

import contextlib
import logging

from eval import metrics as m


class Replies(logging.Handler):
    """The ``sanad_llm`` records `rag.llm.generate` logs, in order."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "sanad_llm"):
            self.records.append(record.sanad_llm)

    @contextlib.contextmanager
    def listening(self):
        logger = logging.getLogger("rag.llm")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)

    def take(self) -> dict | None:
        """The record of the last reply since the previous call (None: the model was not asked)."""
        records, self.records = self.records, []
        return records[-1] if records else None


@contextlib.contextmanager
def llm_config(config, local: str | None):
    """``config`` in LLM mode, against the local server of model ``local`` (started here) or the one configured."""
    from rag.errors import ConfigError

    if local:
        from rag.local_llm import serving

        with serving(config, local) as llm_config:
            yield llm_config
        return
    if not config.llm.base_url:
        raise ConfigError("--mode llm needs a server: --llm local, or SANAD_LLM_BASE_URL and SANAD_LLM_MODEL")
    yield config.replace(answer={"mode": "llm"})


def row(gold, answer, extractive, reply: dict | None, latency_ms: float) -> dict:
    """One question: what the model wrote, what was kept, and both answers' correctness."""
    correct = lambda a: bool(gold.answerable and not a.abstained and m.any_key_matches(gold.answers, a.text))  # noqa: E731
    return {"id": gold.id, "lang": gold.lang, "answerable": gold.answerable, "asked_model": reply is not None,
            "error": (reply or {}).get("error"), "kept": (reply or {}).get("kept", []),
            "dropped": (reply or {}).get("dropped", []), "shown": answer.mode, "llm_correct": correct(answer),
            "extractive_correct": correct(extractive), "abstained": answer.abstained, "latency_ms": round(latency_ms, 1),
            "text": answer.text, "extractive_text": extractive.text}


def summarize(rows: list[dict]) -> dict:
    """Sentences written, kept and dropped; replies used; answers made worse or better than extractive."""
    asked = [r for r in rows if r["asked_model"]]
    kept, dropped = sum(len(r["kept"]) for r in asked), sum(len(r["dropped"]) for r in asked)
    return {
        "questions": len(rows), "asked_model": len(asked), "server_errors": sum(bool(r["error"]) for r in asked),
        "sentences_written": kept + dropped, "sentences_kept": kept, "sentences_dropped": dropped,
        "kept_rate": m.ratio(kept, kept + dropped),
        "replies_shown": sum(r["shown"] == "llm" for r in rows),
        "made_worse": [r["id"] for r in rows if r["extractive_correct"] and not r["llm_correct"]],
        "made_better": [r["id"] for r in rows if r["llm_correct"] and not r["extractive_correct"]],
        "latency_p50_ms": m.percentile([r["latency_ms"] for r in asked], 50),
        "latency_p95_ms": m.percentile([r["latency_ms"] for r in asked], 95),
    }
