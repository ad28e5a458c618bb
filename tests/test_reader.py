"""The span reader (real shipped weights on the real base model): encoding, span search, offsets,
the shared embedding layer, precision, and how the index notices a changed reader."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from rag.errors import ModelError
from rag.reader import Reader, encode, reader_fingerprint, top_spans


@pytest.fixture(scope="session")
def reader(seeds_bot):
    return seeds_bot.answerer.reader


def test_top_spans_are_the_best_non_overlapping_spans_within_the_length_limit():
    start = np.array([0.0, 5.0, 0.0, 0.0, 4.0, 0.0])
    end = np.array([0.0, 0.0, 5.0, 0.0, 0.0, 3.0])
    spans = top_spans(start, end, first=1, last=5, max_tokens=3, count=3)
    assert spans[0] == (10.0, 1, 2)
    assert all(j - i < 3 for _, i, j in spans)
    assert all(b < i or a > j for k, (_, i, j) in enumerate(spans) for _, a, b in spans[:k])
    assert [s for s, _, _ in spans] == sorted((s for s, _, _ in spans), reverse=True)


def test_a_long_passage_is_read_in_overlapping_windows_whose_offsets_slice_the_passage(reader):
    passage = " ".join(f"جملة رقم {i} عن الجنود في كورسك." for i in range(120))
    windows = encode(reader._tokenizer, ["كم عدد الجنود؟"], [passage], max_tokens=128, stride=32, question_tokens=64)
    assert len(windows) > 3 and all(len(w.input_ids) <= 128 for w in windows)
    covered = set()
    for w in windows:
        for token in range(w.context_start, w.context_end + 1):
            a, b = w.offsets[token]
            assert 0 <= a <= b <= len(passage)
            covered.update(range(a, b))
    assert covered >= {i for i, ch in enumerate(passage) if not ch.isspace()}


def test_a_very_long_question_is_trimmed_so_the_passage_still_fits(reader):
    question = "كم عدد الجنود " * 200
    windows = encode(reader._tokenizer, [question], ["نص قصير عن كورسك."], max_tokens=256, stride=96, question_tokens=64)
    assert len(windows) == 1 and windows[0].context_end > windows[0].context_start


def test_spans_are_exact_article_offsets(seeds_bot, reader):
    question = "من هو المتحدث باسم الكرملين؟"
    hits = seeds_bot.retrieve(question)
    readings = reader.read(question, hits)
    assert [r.hit for r in readings] == hits
    for reading in readings:
        assert 0 < len(reading.spans) <= 3 and np.isfinite(reading.answer_logit)
        for span in reading.spans:
            article = seeds_bot.index.article(span.article_id)
            assert article.text[span.start:span.end] == span.text
            assert reading.hit.chunk.start <= span.start < span.end <= reading.hit.chunk.end


def test_the_reader_shares_the_embedders_embedding_layer(seeds_bot, reader):
    assert reader._module.encoder.embeddings is seeds_bot.embedder.model[0].auto_model.embeddings
    assert not any(p.is_meta for p in reader._module.parameters())


def test_bfloat16_reads_like_float32(seeds_bot, reader):
    """The default precision on CPUs with native bfloat16 gives the float32 answer."""
    bfloat16, exact = (Reader(seeds_bot.embedder, precision=name) for name in ("bfloat16", "float32"))
    assert exact.precision == "float32" and reader.precision in ("bfloat16", "float32")
    for question in ["من هو المتحدث باسم الكرملين؟", "How many North Korean troops are in Kursk?"]:
        hits = seeds_bot.retrieve(question)
        default, exact_readings = bfloat16.read(question, hits), exact.read(question, hits)
        best = lambda readings: max(readings, key=lambda r: r.answer_logit)  # noqa: E731
        assert best(default).spans[0].text == best(exact_readings).spans[0].text
        assert np.allclose([r.answer_logit for r in default], [r.answer_logit for r in exact_readings], atol=0.5)


def test_the_int8_reader_quantizes_only_its_own_layers_and_reads_exact_spans(seeds_bot, reader):
    """An option, not the default (it moves answers: `sanad bench --only precision`): the transformer
    layers' linear weights become int8; the embeddings stay the embedder's own float32 module."""
    import torch

    int8 = Reader(seeds_bot.embedder, precision="int8")
    linears = [m for m in int8._module.encoder.encoder.modules() if type(m).__name__ == "Linear"]
    assert len(linears) == 12 * 6 and all("quantized" in type(m).__module__ for m in linears)  # all 72 quantized
    assert int8._module.encoder.embeddings is seeds_bot.embedder.model[0].auto_model.embeddings
    assert isinstance(int8._module.span, torch.nn.Linear) and int8._module.span.weight.dtype == torch.float32
    assert all(type(m) is torch.nn.Linear for m in reader._module.encoder.encoder.modules() if type(m).__name__ == "Linear")
    question = "How many North Korean troops are in Kursk?"
    for reading in int8.read(question, seeds_bot.retrieve(question)):
        assert np.isfinite(reading.answer_logit) and reading.spans
        for span in reading.spans:
            assert seeds_bot.index.article(span.article_id).text[span.start:span.end] == span.text


def test_an_unknown_precision_is_a_clear_error(seeds_bot):
    from rag.config import load_config
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="answer.precision.*'fp8'"):
        load_config(env={"SANAD_ANSWER_PRECISION": "fp8"})
    with pytest.raises(ModelError, match="'fp8'"):
        Reader(seeds_bot.embedder, precision="fp8")


def test_the_index_records_the_reader_and_rebuilds_when_it_changes(seeds_index_copy, seeds_index, embedder, config):
    from rag.errors import IndexMismatchError
    from rag.indexing import manifest_for
    from rag.store import open_index

    assert seeds_index.manifest["answer_model"] == reader_fingerprint()
    expected = manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)
    with pytest.raises(IndexMismatchError, match="answer_model"):
        open_index(seeds_index_copy, {**expected, "answer_model": "another reader"})


def test_a_damaged_reader_folder_is_a_clear_model_error(tmp_path, embedder):
    from rag.reader import READER_DIR

    shutil.copytree(READER_DIR, tmp_path / "reader")
    (tmp_path / "reader" / "reader.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="reader"):
        Reader(embedder, tmp_path / "reader")
    (tmp_path / "reader" / "reader.json").write_text(json.dumps({"gate": {}}), encoding="utf-8")
    (tmp_path / "reader" / "reader.safetensors").unlink()
    with pytest.raises(ModelError, match="reader"):
        Reader(embedder, tmp_path / "reader")


def test_reader_settings_are_read_once_and_every_one_is_required(tmp_path):
    """What the answer decides with comes from reader.json, never from a default that disagrees with it."""
    from rag.reader import CONFIG_FILE, READER_DIR, ReaderSettings

    shipped = json.loads((READER_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    settings = ReaderSettings.read(READER_DIR)
    assert (settings.rival_margin, settings.rival_logit_margin, settings.second_quote_margin) == (
        shipped["rival_margin"], shipped["rival_logit_margin"], shipped["second_quote_margin"])
    assert settings.claim_weights == shipped["claim_weights"] and settings.layers == shipped.get("layers", 12)
    del shipped["rival_margin"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(shipped), encoding="utf-8")
    with pytest.raises(ModelError, match=re.escape(str(tmp_path / CONFIG_FILE)) + ".*rival_margin"):
        ReaderSettings.read(tmp_path)


def test_a_span_grows_to_whole_words_and_sheds_edge_punctuation():
    """Subword tokens can start inside a word ("لثلاث"); the span shown and checked is the whole word."""
    from types import SimpleNamespace

    from rag.reader import _span

    chunk = SimpleNamespace(article_id="a.txt", start=100, text="تدوم الشهادة لثلاث سنوات، لكن")
    inside = chunk.text.index("ثلاث")
    span = _span(chunk, inside, chunk.text.index("،") + 1, 1.0)
    assert span.text == "لثلاث سنوات" and span.start == 100 + inside - 1
    assert chunk.text[span.start - 100:span.end - 100] == span.text
