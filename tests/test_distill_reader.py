"""The distilled reader (`eval.distill_reader`): the student built from the teacher's layers, the loss
that is zero only where they agree, and a student exported by the command read by `rag.reader.Reader`
as ``answer.reader = "fast"`` reads it. No training loop: `make test` never trains."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from eval.distill_reader import build_student, distillation_loss, export_student, load_teacher, teacher_layers  # noqa: E402
from rag.arabic import read_numbers  # noqa: E402
from rag.errors import ConfigError, ModelError  # noqa: E402
from rag.reader import CONFIG_FILE, READER_DIR, WEIGHTS_FILE, Reader, reader_fingerprint, reader_folder  # noqa: E402
from tests.test_answer import assert_exact  # noqa: E402


def tiny_teacher(layers: int = 4):
    from transformers import BertConfig, BertModel

    from rag.reader import build_module

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    teacher = build_module(BertModel(config, add_pooling_layer=False))
    teacher.requires_grad_(False)  # as `load_teacher` leaves it
    return teacher.eval()


@pytest.mark.parametrize("count, expected", [(6, [0, 2, 4, 6, 8, 10]), (4, [0, 3, 6, 9]), (2, [0, 6]), (12, list(range(12)))])
def test_the_student_starts_from_evenly_spaced_teacher_layers(count, expected):
    assert teacher_layers(count) == expected
    with pytest.raises(ValueError):
        teacher_layers(13)


def test_a_student_has_the_requested_layers_copied_from_the_teachers():
    teacher = tiny_teacher(layers=4)
    student = build_student(teacher, 2)
    assert len(student.encoder.encoder.layer) == student.encoder.config.num_hidden_layers == 2
    for mine, theirs in zip(student.encoder.encoder.layer, [teacher.encoder.encoder.layer[i] for i in (0, 2)]):
        assert mine is not theirs
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert not torch.equal(student.encoder.encoder.layer[1].output.dense.weight, teacher.encoder.encoder.layer[1].output.dense.weight)
    for head in ("span", "answerable"):
        assert torch.equal(getattr(student, head).weight, getattr(teacher, head).weight)
        assert getattr(student, head).weight is not getattr(teacher, head).weight
    assert student.encoder.embeddings is teacher.encoder.embeddings  # shared and frozen
    assert not any(p.requires_grad for p in student.encoder.embeddings.parameters())
    assert all(p.requires_grad for name, p in student.named_parameters() if not name.startswith("encoder.embeddings."))
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher stays frozen
    ids, attention = torch.tensor([[1, 5, 7, 2]]), torch.ones(1, 4, dtype=torch.long)
    start, end, answerable = student(ids, attention)
    assert start.shape == end.shape == (1, 4) and answerable.shape == (1,)


def test_the_distillation_loss_is_zero_only_where_student_and_teacher_agree():
    torch.manual_seed(1)
    allowed = torch.zeros(3, 8, dtype=torch.bool)
    allowed[:, 0] = True
    allowed[:, 3:7] = True
    teacher = (torch.randn(3, 8) * 3, torch.randn(3, 8) * 3, torch.randn(3) * 4)
    assert float(distillation_loss(teacher, teacher, allowed)) == pytest.approx(0.0, abs=1e-6)
    outside = tuple(t.clone() for t in teacher)
    outside[0][:, 1:3] += 5.0  # tokens the reader never points at (the question) do not count
    assert float(distillation_loss(outside, teacher, allowed)) == pytest.approx(0.0, abs=1e-6)
    for changed in range(3):
        student = tuple(t + 0.5 * torch.randn_like(t) if k == changed else t for k, t in enumerate(teacher))
        assert float(distillation_loss(student, teacher, allowed, temperature=2.0)) > 1e-4
    student = tuple(t.clone().requires_grad_() for t in teacher)
    distillation_loss((student[0] + 1.0 * (torch.arange(8) == 4), *student[1:]), teacher, allowed).backward()
    assert student[0].grad[:, 4].gt(0).all()  # the token the student overrates is pushed down


@pytest.fixture(scope="module")
def fast_root(tmp_path_factory, config):
    """A 2-layer student of the shipped reader, untrained, exported by the command into ``ROOT/reader_model_fast``."""
    from eval.train_reader import load_base

    root = tmp_path_factory.mktemp("readers")
    encoder, _, _, fingerprint = load_base(config.cache_dir)
    encoder.embeddings.requires_grad_(False)
    student = build_student(load_teacher(READER_DIR, encoder), 2)
    export_student(student, root / "reader_model_fast", READER_DIR, fingerprint, {"step": 0})
    return root


def test_an_exported_student_is_read_by_the_reader_as_the_fast_one(fast_root, seeds_bot):
    folder = reader_folder("fast", root=fast_root)
    settings = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    assert settings["layers"] == 2 and settings["teacher"]["fingerprint"] == reader_fingerprint(READER_DIR)
    reader = Reader(seeds_bot.embedder, folder)
    assert reader.layers == 2 and len(reader._module.encoder.encoder.layer) == 2
    assert reader._module.encoder.embeddings is seeds_bot.embedder.model[0].auto_model.embeddings
    assert reader.gates == seeds_bot.answerer.reader.gates  # the teacher's gate, until calibrated
    assert reader.fingerprint != seeds_bot.answerer.reader.fingerprint
    question = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
    hits = seeds_bot.retrieve(question)
    readings = reader.read(question, hits)
    assert [r.hit for r in readings] == hits
    for reading in readings:
        assert reading.spans
        for span in reading.spans:
            assert seeds_bot.index.article(span.article_id).text[span.start:span.end] == span.text


def test_the_shipped_reader_has_twelve_layers(seeds_bot):
    reader = seeds_bot.answerer.reader
    assert reader.layers == 12 and len(reader._module.encoder.encoder.layer) == 12
    assert reader_folder("default") == READER_DIR


def test_a_missing_fast_reader_is_a_model_error_naming_its_folder(tmp_path):
    with pytest.raises(ModelError, match=str(tmp_path / "reader_model_fast")):
        reader_folder("fast", root=tmp_path)
    with pytest.raises(ConfigError, match="answer.reader must be one of default, fast; got 'tiny'"):
        reader_folder("tiny")


def test_the_index_records_the_chosen_readers_fingerprint(config, embedder):
    from rag.indexing import manifest_for

    fast = config.replace(answer={"reader": "fast"})
    assert manifest_for(config, embedder.model_id, embedder.fingerprint, embedder.dim)["answer_model"] == reader_fingerprint()
    manifest = manifest_for(fast, embedder.model_id, embedder.fingerprint, embedder.dim)
    assert manifest["answer_model"] == reader_fingerprint(reader_folder("fast")) != reader_fingerprint()


def test_the_shipped_fast_reader_is_a_calibrated_student_of_the_shipped_reader_that_cites_exactly(config, seeds_bot):
    """``answer.reader = "fast"``: the 6-layer student in rag/reader_model_fast/, distilled from the reader
    that ships and given its own gate by `eval.calibrate_reader` (a student's logits are not the teacher's)."""
    from rag.answer import Answerer

    folder = reader_folder("fast")
    settings = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    assert settings["layers"] == 6 and settings["teacher"]["fingerprint"] == reader_fingerprint(READER_DIR)
    assert settings["calibration"]["command"] == "python -m eval.calibrate_reader"
    assert (folder / WEIGHTS_FILE).stat().st_size <= 45e6
    reader = Reader(seeds_bot.embedder, folder)
    assert reader.layers == 6 and reader.gates != seeds_bot.answerer.reader.gates
    answerer = Answerer(config.replace(answer={"reader": "fast"}), reader)
    question = "كم عدد الجنود الكوريين الشماليين في كورسك؟"
    answer = answerer.answer(question, reader.read(question, seeds_bot.retrieve(question)), seeds_bot.index)
    assert not answer.abstained and answer.citations
    assert_exact(seeds_bot, answer)
    assert any(number.value in (8000, 11000, 12000) for span in answer.spans for number in read_numbers(span.text))
