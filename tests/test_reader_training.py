"""The reader's retrieval groups (`eval.reader_groups`: distractors from the hybrid retriever, with the
real embedder) and the loss that normalizes span scores across a group's chunks
(`eval.train_reader.shared_span_loss`)."""
from __future__ import annotations

import random

import pytest

from eval.reader_data import QAExample
from eval.reader_groups import build_groups
from rag.arabic import normalize

TOPICS = [
    ("كورسك", "أرسلت كوريا الشمالية أكثر من 11 ألف جندي إلى منطقة كورسك الروسية وفق تقديرات سيول.",
     "كم عدد الجنود الكوريين في كورسك؟", "11 ألف"),
    ("الطاقة", "ارتفعت أسعار الغاز في أوروبا بنسبة 30 في المئة خلال الشتاء بسبب نقص الإمدادات.",
     "بكم ارتفعت أسعار الغاز في أوروبا؟", "30 في المئة"),
    ("القمح", "صدرت أوكرانيا 40 مليون طن من القمح عبر البحر الأسود في الموسم الماضي.",
     "كم طنا من القمح صدرت أوكرانيا؟", "40 مليون طن"),
    ("الانتخابات", "فاز الحزب الحاكم بـ 120 مقعدا في البرلمان بعد انتخابات شهدت إقبالا ضعيفا.",
     "كم مقعدا فاز به الحزب الحاكم؟", "120 مقعدا"),
    ("الزلزال", "ضرب زلزال بقوة 6.8 درجات جنوب البلاد وأدى إلى انهيار عشرات المباني القديمة.",
     "ما قوة الزلزال الذي ضرب جنوب البلاد؟", "6.8 درجات"),
]


def _examples() -> list[QAExample]:
    examples = []
    for n, (title, fact, question, answer) in enumerate(TOPICS):
        filler = " ".join(f"وقال مسؤول في ملف {title} إن الوضع يتطلب متابعة دقيقة في المرحلة رقم {k}." for k in range(12))
        context = f"{filler} {fact} {filler}"
        start = context.index(answer)
        examples.append(QAExample(f"q{n}", question, context, ((start, start + len(answer)),), "ar", "news", title))
    examples.append(QAExample("none", "من هو رئيس بلدية كورسك؟", examples[0].context, (), "ar", "news", TOPICS[0][0]))
    examples.append(QAExample("made", "سؤال مصنوع", examples[1].context, (), "ar", "news+swap", TOPICS[1][0]))
    return examples


def test_a_group_holds_the_answering_chunk_and_distractors_from_the_same_corpus(embedder):
    examples = _examples()
    groups = build_groups(examples, random.Random(1), embedder, distractors=3, absent_share=0.0)
    assert {g.id for g in groups} == {e.id for e in examples if "+" not in e.source}  # made negatives are left out
    corpus = " ".join(e.context for e in examples)
    for group, example in zip(sorted(groups, key=lambda g: g.id), sorted(examples[:-1], key=lambda e: e.id)):
        assert len(group.passages) == 4 and all(p in corpus for p in group.passages)
        if example.answerable:
            answer = example.context[example.answers[0][0]:example.answers[0][1]]
            holding = [i for i, spans in enumerate(group.answers) if spans]
            assert len(holding) == 1
            start, end = group.answers[holding[0]][0]
            assert group.passages[holding[0]][start:end] == answer
            assert sum(normalize(answer) in normalize(p) for p in group.passages) == 1  # no distractor holds it too
        else:
            assert not group.answerable


def test_absent_groups_have_every_chunk_holding_the_answer_taken_out(embedder):
    examples = _examples()
    groups = build_groups(examples, random.Random(1), embedder, distractors=3, absent_share=1.0)
    answers = {e.id: normalize(e.context[e.answers[0][0]:e.answers[0][1]]) for e in examples if e.answerable}
    absent = [g for g in groups if g.source.endswith("+absent")]
    assert {g.id for g in absent} == set(answers)
    for group in absent:
        assert not group.answerable and len(group.passages) == 4
        assert not any(answers[group.id] in normalize(p) for p in group.passages)


def test_the_shared_loss_is_one_softmax_over_all_of_a_groups_windows():
    torch = pytest.importorskip("torch")
    from eval.train_reader import Window, shared_span_loss
    from rag.reader import Encoded

    def window(group: int, start: int, end: int) -> Window:
        return Window(group, Encoded(0, (0,) * 4, 1, 3, ((0, 0),) * 4), start, end)

    batch = [window(0, 0, 0), window(0, 2, 3), window(1, 0, 0)]  # group 1 has no answer: no span loss
    start = torch.tensor([[-1e4, 1.0, 2.0, 0.5], [-1e4, 0.0, 3.0, 1.0], [-1e4, 5.0, 5.0, 5.0]], requires_grad=True)
    end = torch.tensor([[-1e4, 0.0, 0.0, 0.0], [-1e4, 0.0, 1.0, 2.0], [-1e4, 1.0, 1.0, 1.0]], requires_grad=True)
    loss = shared_span_loss(start, end, batch)
    expected = (torch.logsumexp(start[:2].reshape(-1), 0) - start[1, 2] + torch.logsumexp(end[:2].reshape(-1), 0) - end[1, 3]) / 2
    assert torch.isclose(loss, expected)
    loss.backward()
    assert start.grad[1, 2] < 0 and start.grad[0, 2] > 0  # the gold token is pushed up, the other window's down
    assert torch.all(start.grad[2] == 0)
    assert float(shared_span_loss(start, end, [batch[2]]).detach()) == 0.0
