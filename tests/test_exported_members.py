"""`rag.__all__` lists exactly the public names of the package (as httpx's test of the same name)."""
from __future__ import annotations

import inspect
import types

import rag
import rag.errors

EXPECTED = {
    "Answer", "Article", "ChatBot", "Chunk", "Citation", "ConfigError", "CorpusError", "Hit",
    "IndexMismatchError", "LLMError", "ModelError", "QuestionError", "SanadConfig", "SanadError",
    "Sentence", "StoreError", "__version__", "ask", "load_config",
}


def test_all_imports_are_exported():
    public = {name for name, value in vars(rag).items()
              if (not name.startswith("_") or name == "__version__") and not isinstance(value, types.ModuleType)}
    assert sorted(rag.__all__) == sorted(public)


def test_all_is_the_documented_surface():
    assert set(rag.__all__) == EXPECTED
    assert len(rag.__all__) == len(set(rag.__all__))
    assert rag.__all__ == sorted(rag.__all__)


def test_every_exported_name_exists():
    for name in rag.__all__:
        assert getattr(rag, name) is not None, name
        value = getattr(rag, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("rag."), (name, value.__module__)


def test_every_error_is_exported_and_is_a_sanad_error():
    errors = {name for name, value in vars(rag.errors).items()
              if inspect.isclass(value) and issubclass(value, Exception)}
    assert errors <= set(rag.__all__)
    assert all(issubclass(getattr(rag, name), rag.SanadError) for name in errors)


def test_version_matches_the_package_metadata():
    from importlib.metadata import version

    assert rag.__version__ == version("sanad")
