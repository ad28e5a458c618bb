"""Errors a user can cause, each with a message that says what to do.

    SanadError
    ├── ConfigError          a setting has a value outside the allowed ones (.setting, .value)
    ├── CorpusError          a corpus folder or file cannot be read (.file, .reason)
    ├── QuestionError        the question is empty, too long or has no words
    ├── ModelError           the embedding model cannot be built or loaded
    ├── LLMError             the optional LLM server failed
    └── StoreError           the index on disk cannot be read or written
        └── IndexMismatchError  the index was built with another model or settings

Callers read the fields, never take the message apart. "No answer" is not an error: see `Answer.abstained`.
"""
from __future__ import annotations


class SanadError(Exception):
    """Base class: the CLI prints the message and exits 2, the UI shows it."""


class ConfigError(SanadError):
    """``setting``: the setting, option or variable at fault (``chunk.encoding``, ``SANAD_CHUNK_TOKENS``,
    ``top_k``), None when no single one is; ``value``: the value it was given (None when none was)."""

    def __init__(self, message: str, setting: str | None = None, value=None):
        super().__init__(message)
        self.setting, self.value = setting, value


class CorpusError(SanadError):
    """``file``: the file (or document id) that cannot be read or added, None for a whole folder or batch;
    ``reason``: what is wrong with it, without its name. The message is ``"{file}: {reason}"``, or the
    reason alone."""

    def __init__(self, reason: str, file: str | None = None):
        super().__init__(f"{file}: {reason}" if file is not None else reason)
        self.file, self.reason = file, reason


class QuestionError(SanadError):
    pass


class ModelError(SanadError):
    pass


class LLMError(SanadError):
    pass


class StoreError(SanadError):
    pass


class IndexMismatchError(StoreError):
    pass
