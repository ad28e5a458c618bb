"""rag/config.py: defaults, then a TOML file, then SANAD_* variables; bad values are ConfigErrors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rag.config import DEFAULT_MODEL, SanadConfig, load_config
from rag.errors import ConfigError, SanadError


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sanad.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid():
    config = load_config(env={})
    assert config == SanadConfig(cache_dir=config.cache_dir)
    assert config.embed.model == DEFAULT_MODEL
    assert (config.chunk.encoding, config.chunk.chunk_tokens, config.chunk.overlap_tokens) == ("o200k_base", 160, 40)
    assert config.store.index == "flat"
    assert config.retrieve.hybrid is True and config.retrieve.top_k <= config.retrieve.candidates
    assert config.answer.mode == "extractive" and config.answer.reader == "default"


def test_config_is_frozen():
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.chunk.chunk_tokens = 10


def test_os_environ_is_read_unless_env_is_given(monkeypatch):
    monkeypatch.setenv("SANAD_CHUNK_TOKENS", "200")
    assert load_config(env={}).chunk.chunk_tokens == 160
    assert load_config().chunk.chunk_tokens == 200


@pytest.mark.parametrize("variable, value, section, field, expected", [
    ("SANAD_EMBED_MODEL", "/models/labse", "embed", "model", "/models/labse"),
    ("SANAD_CHUNK_TOKENS", "200", "chunk", "chunk_tokens", 200),
    ("SANAD_CHUNK_CHUNK_TOKENS", "120", "chunk", "chunk_tokens", 120),
    ("SANAD_STORE_INDEX", "hnsw", "store", "index", "hnsw"),
    ("SANAD_INDEX", "ivf", "store", "index", "ivf"),
    ("SANAD_RETRIEVE_HYBRID", "false", "retrieve", "hybrid", False),
    ("SANAD_RETRIEVE_HYBRID", "yes", "retrieve", "hybrid", True),
    ("SANAD_LLM_TIMEOUT_S", "2.5", "llm", "timeout_s", 2.5),
    ("SANAD_LLM_BASE_URL", "http://localhost:11434/v1", "llm", "base_url", "http://localhost:11434/v1"),
    ("SANAD_EMBED_QUERY_PROMPT", "query: ", "embed", "query_prompt", "query: "),
    ("SANAD_ANSWER_READER", "fast", "answer", "reader", "fast"),
])
def test_environment_overrides(variable, value, section, field, expected):
    config = load_config(env={variable: value})
    assert getattr(getattr(config, section), field) == expected
    assert type(getattr(getattr(config, section), field)) is type(expected)


def test_cache_dir_from_the_environment(tmp_path):
    assert load_config(env={"SANAD_CACHE_DIR": str(tmp_path)}).cache_dir == tmp_path


@pytest.mark.parametrize("variable, value, message", [
    ("SANAD_CHUNK_TOKENS", "abc", "SANAD_CHUNK_TOKENS='abc' is not a valid int"),
    ("SANAD_CHUNK_TOKENS", "", "SANAD_CHUNK_TOKENS='' is not a valid int"),
    ("SANAD_CHUNK_TOKENS", "5", "chunk_tokens must be between 16 and 500.*got 5"),
    ("SANAD_CHUNK_TOKENS", "5000", "chunk_tokens must be between 16 and 500.*got 5000"),
    ("SANAD_CHUNK_OVERLAP_TOKENS", "160", r"overlap_tokens must be in \[0, chunk_tokens\), got 160"),
    ("SANAD_CHUNK_OVERLAP_TOKENS", "-1", "overlap_tokens"),
    ("SANAD_STORE_INDEX", "annoy", "store.index must be one of flat, hnsw, ivf; got 'annoy'"),
    ("SANAD_STORE_INDEX", "HNSW", "store.index must be one of"),
    ("SANAD_ANSWER_MODE", "generative", "answer.mode must be one of extractive, llm"),
    ("SANAD_ANSWER_READER", "tiny", "answer.reader must be one of default, fast; got 'tiny'"),
    ("SANAD_ANSWER_READ_K", "0", "answer.read_k must be a positive integer, got 0"),
    ("SANAD_RETRIEVE_HYBRID", "maybe", "SANAD_RETRIEVE_HYBRID='maybe' is not a valid bool"),
    ("SANAD_RETRIEVE_TOP_K", "0", "top_k must be >= 1"),
    ("SANAD_RETRIEVE_TOP_K", "50", "top_k must be >= 1 and <= candidates, got 50/30"),
    ("SANAD_LLM_TIMEOUT_S", "soon", "is not a valid float"),
])
def test_bad_environment_values_are_config_errors(variable, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(env={variable: value})
    assert isinstance(error.value, SanadError)


@pytest.mark.parametrize("variable, value, setting, given", [
    ("SANAD_CHUNK_TOKENS", "abc", "SANAD_CHUNK_TOKENS", "abc"),  # not even an int: the variable and its text
    ("SANAD_CHUNK_TOKENS", "5", "chunk.chunk_tokens", 5),
    ("SANAD_STORE_INDEX", "annoy", "store.index", "annoy"),
    ("SANAD_RETRIEVE_TOP_K", "50", "retrieve.top_k", 50),
    ("SANAD_ANSWER_READER", "Fast", "answer.reader", "Fast"),
    ("SANAD_ANSWER_READ_K", "-1", "answer.read_k", -1),
])
def test_a_config_error_names_the_setting_and_the_value_given(variable, value, setting, given):
    with pytest.raises(ConfigError) as error:
        load_config(env={variable: value})
    assert (error.value.setting, error.value.value) == (setting, given)


def test_toml_file(tmp_path):
    path = toml(tmp_path, '[chunk]\nchunk_tokens = 200\noverlap_tokens = 20\n\n[store]\nindex = "hnsw"\n\n'
                          '[retrieve]\ntop_k = 3\n')
    config = load_config(path, env={})
    assert (config.chunk.chunk_tokens, config.chunk.overlap_tokens) == (200, 20)
    assert config.store.index == "hnsw"
    assert config.retrieve.top_k == 3
    assert config.embed == load_config(env={}).embed  # untouched sections keep their defaults


def test_toml_cache_dir(tmp_path):
    config = load_config(toml(tmp_path, f'cache_dir = "{tmp_path / "cache"}"\n'), env={})
    assert config.cache_dir == tmp_path / "cache"


def test_environment_beats_the_file(tmp_path):
    path = toml(tmp_path, '[chunk]\nchunk_tokens = 200\n[store]\nindex = "hnsw"\n')
    config = load_config(path, env={"SANAD_CHUNK_TOKENS": "100"})
    assert (config.chunk.chunk_tokens, config.store.index) == (100, "hnsw")


def test_config_file_from_the_environment(tmp_path):
    path = toml(tmp_path, '[store]\nindex = "ivf"\n')
    assert load_config(env={"SANAD_CONFIG": str(path)}).store.index == "ivf"


def test_unknown_section_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown config section 'chunking'; allowed: embed, chunk, store"):
        load_config(toml(tmp_path, "[chunking]\nchunk_tokens = 200\n"), env={})


def test_unknown_setting_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting.*tokens"):
        load_config(toml(tmp_path, "[chunk]\ntokens = 200\n"), env={})


def test_bad_value_in_the_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="store.index must be one of flat, hnsw, ivf; got 'faiss'"):
        load_config(toml(tmp_path, '[store]\nindex = "faiss"\n'), env={})


def test_malformed_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*sanad.toml"):
        load_config(toml(tmp_path, "[chunk\nchunk_tokens = 200\n"), env={})


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*nope.toml"):
        load_config(tmp_path / "nope.toml", env={})


@pytest.mark.parametrize("text", ['[chunk]\nchunk_tokens = "200"\n', '[retrieve]\ntop_k = "5"\n'])
def test_wrong_type_in_the_file_is_a_config_error(tmp_path, text):
    try:
        load_config(toml(tmp_path, text), env={})
    except ConfigError:
        return
    except Exception as exc:  # noqa: BLE001 - the bug: TypeError escapes
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    raise AssertionError("a string was accepted for a number")


def test_empty_model_variable_is_the_default_or_an_error():
    try:
        model = load_config(env={"SANAD_EMBED_MODEL": ""}).embed.model
    except ConfigError:
        return
    assert model == DEFAULT_MODEL


@pytest.mark.parametrize("variable, value", [("SANAD_CHUNK_ENCODING", "o300k_base"), ("SANAD_EMBED_BATCH_SIZE", "0")])
def test_unusable_values_are_refused_when_read(variable, value):
    try:
        load_config(env={variable: value})
    except ConfigError:
        return
    raise AssertionError(f"{variable}={value!r} was accepted")


def test_replace_changes_one_field_and_validates():
    config = load_config(env={})
    hnsw = config.replace(store={"index": "hnsw"})
    assert hnsw.store.index == "hnsw" and config.store.index == "flat"
    assert hnsw.store.hnsw_m == config.store.hnsw_m and hnsw.chunk == config.chunk
    with pytest.raises(ConfigError, match="store.index"):
        config.replace(store={"index": "annoy"})


def test_the_readme_lists_every_setting_with_its_default_and_nothing_else():
    """The README's configuration table cannot drift from `rag/config.py`."""
    import dataclasses
    import re

    from rag.config import _ALIASES, REPO_ROOT, SanadConfig

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration", 1)[1]
    table = section[section.index("| variable"):].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        name_cell, default_cell, _ = (cell.strip() for cell in line.strip("|").split("|", 2))
        name = re.match(r"`(SANAD_\w+)`", name_cell).group(1)
        rows[name] = (default_cell, set(re.findall(r"alias `(SANAD_\w+)`", name_cell)))
    expected = {}
    for section in dataclasses.fields(SanadConfig):
        if section.name == "cache_dir":
            continue
        for f in dataclasses.fields(section.default_factory):
            default = f.default
            shown = "unset" if default is None else f"`{str(default).lower() if isinstance(default, bool) else default}`"
            aliases = {alias for alias, target in _ALIASES.items() if target == (section.name, f.name)}
            expected[f"SANAD_{section.name}_{f.name}".upper()] = (shown, aliases - {f"SANAD_{section.name}_{f.name}".upper()})
    assert {name: rows[name] for name in expected if name in rows} == expected
    assert set(rows) - set(expected) == {"SANAD_CACHE_DIR", "SANAD_CONFIG"}
