"""Errors a user can cause, each with a message that says what to do.

    SanadError
    ├── ConfigError          a setting has a value outside the allowed ones
    ├── CorpusError          a corpus folder or file cannot be read (names the file)
    ├── QuestionError        the question is empty, too long or has no words
    ├── ModelError           the embedding model cannot be built or loaded
    ├── LLMError             the optional LLM server failed
    └── StoreError           the index on disk cannot be read or written
        └── IndexMismatchError  the index was built with another model or settings

"No answer" is not an error: see `Answer.abstained`.
"""


class SanadError(Exception):
    """Base class: the CLI prints the message and exits 2, the UI shows it."""


class ConfigError(SanadError):
    pass


class CorpusError(SanadError):
    pass


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
