"""Sanad: grounded question answering over Arabic news, with exact citations.

    import rag
    answer = rag.ChatBot().ask("كم عدد الجنود الكوريين الشماليين في كورسك؟")
    print(answer.text)
    for c in answer.citations:
        print(c.n, c.source, c.quote)
"""
from rag.chatbot import ChatBot, ask
from rag.config import SanadConfig, load_config
from rag.errors import (
    ConfigError, CorpusError, IndexMismatchError, LLMError, ModelError, QuestionError, SanadError, StoreError,
)
from rag.types import Answer, Article, Chunk, Citation, Hit, Sentence
from rag.version import __version__

__all__ = [
    "Answer", "Article", "ChatBot", "Chunk", "Citation", "ConfigError", "CorpusError", "Hit",
    "IndexMismatchError", "LLMError", "ModelError", "QuestionError", "SanadConfig", "SanadError",
    "Sentence", "StoreError", "__version__", "ask", "load_config",
]
