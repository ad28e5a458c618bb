"""Calibrate the shipped reader's abstention gate and answer settings on dev data, in the retrieval setting.

    python -m eval.calibrate_reader            # ~10-20 min on 2 cores; rewrites rag/reader_model/reader.json

The gate is the reader's answerability logit of the best retrieved chunk, turned into a probability by
Platt scaling and compared with a threshold, both per question language. They are fitted here on
questions the reader never trained on, asked the way users ask them (the default ChatBot: hybrid
retrieval, top 5 chunks):

* XQuAD's dev articles (the part of the *fit* half `eval.reader_data` holds out; the report half is never
  read), Arabic and English questions over the 240 Arabic paragraphs. Answerable as asked; unanswerable
  with their gold paragraph taken out of the retrieved chunks (on-topic, absent), and asked of the seed
  articles (off-topic).
* AAQAD's dev articles (Arabic), with their own unanswerable questions, over the dev paragraphs.
* The seed gold set's fit half (in-domain news, hand-checked unanswerables), over the seed articles.
* ArQuAD dev's fit half (natural Arabic questions by language experts; its articles split in two by
  `eval.half_of`, the report half never read here), over all 393 paragraphs, answerable as asked and
  unanswerable with the gold paragraph taken out, as for XQuAD.

The threshold maximizes the mean over these sources of the balanced accuracy (answerable answered,
unanswerable abstained). Then, on the same dev data: ``claim_weights`` (which chunk's span is the short
answer, scored from the chunk's answerability logit, the span's score, and the retriever's rank and fused
score of the chunk: a softmax regression towards the claims with the best F1, or the logit plus a span
weight from a grid, whichever gives the higher short-answer F1 on the answerable questions);
``second_quote_margin`` (a second quote when
another sentence's span scores within this many logits of the best) is the largest that keeps the
median answer at most `MAX_WORDS` words, and ``rival_margin`` / ``rival_logit_margin`` (how far below the
best span's score and the best chunk's answerability another article's figure may be and still be shown
beside it) the pair that best separates the seed fit half's conflict questions (a figure asked without
naming whose, given differently by two or more articles) from its other figure questions. Last,
``cascade`` (adaptive reading: how many chunks to read first, and how sure their best claim must be
to stop there) as `fit_cascade` chooses it, so that stopping early changes almost no dev answer.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval import metrics as m
from eval.reader_data import DEV_SHARE, GATED, QA_TRAIN, SEEDS_GOLD, read_squad, seeds_half, split_of
from rag.reader import CONFIG_FILE, READER_DIR, Gate, Reader, ReaderSettings
from rag.types import Hit

OUT = Path("eval/out/calibration")
MAX_WORDS = 40  # median answer length the second quote may grow answers to
SECOND_MARGINS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)  # 0.0: a second quote only on a tie
RIVAL_MARGINS = (1.0, 2.0, 3.0, 4.0, 6.0, 10.0)  # span score below the best's
RIVAL_LOGIT_MARGINS = (0.5, 1.0, 2.0, 4.0, 8.0)  # answerability logit below the best's
SPAN_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)  # best claim: answerability logit + weight * span score
CASCADE_FIRST = (1, 2)  # chunks read before deciding whether to read on
STOP_PROBABILITIES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
MAX_MOVE = 0.005  # how far adaptive reading may move any dev figure of any source and language (the issue allows 0.01)


@dataclass(frozen=True)
class Asked:
    """One dev question as asked: its source, language, whether it is answerable, and its answer keys."""

    source: str
    language: str
    question: str
    answerable: bool
    keys: tuple[str, ...]
    bot: str  # which corpus: "xquad", "aaqad", "seeds"
    exclude: str | None = None  # an article taken out of the retrieved chunks
    history: tuple = ()
    tags: tuple[str, ...] = ()
    articles: frozenset[str] = frozenset()


class MemoReader:
    """The bot's reader, remembering each (question, chunks) reading so settings can be compared cheaply."""

    def __init__(self, reader):
        self.reader, self.memo = reader, {}
        self.gates, self.settings = reader.gates, reader.settings

    gate = Reader.gate  # the same lookup, over the same gates

    def read(self, question, hits):
        # chunk ids restart at 0 in each bot's index, so the key names the chunks by article and offset
        key = (question, tuple((h.chunk.article_id, h.chunk.start) for h in hits))
        if key not in self.memo:
            self.memo[key] = self.reader.read(question, hits)
        return self.memo[key]


def dev_questions(seeds_bot) -> list[Asked]:
    from eval import arquad, xquad
    from eval.reader_data import XQUAD_DEV_SHARE

    asked = []
    for q in xquad.load()[1]:
        if q.half != "fit" or split_of(q.article, "xquad", XQUAD_DEV_SHARE) != "dev":
            continue
        for language, text in (("ar", q.question_ar), ("en", q.question_en)):
            asked.append(Asked("xquad", language, text, True, q.answers, "xquad", articles=frozenset({q.article_id})))
            asked.append(Asked("xquad", language, text, False, (), "xquad", exclude=q.article_id))
            asked.append(Asked("xquad", language, text, False, (), "seeds"))
    paragraphs: dict[str, int] = {}  # numbered as `aaqad_dev_corpus` writes them
    for e in read_squad(QA_TRAIN / "aaqad.ar.json", "aaqad", "ar"):
        if split_of(e.title, "aaqad", DEV_SHARE) == "dev":
            number = paragraphs.setdefault(e.context, len(paragraphs) + 1)
            asked.append(Asked("aaqad", "ar", e.question, e.answerable, tuple(e.context[s:t] for s, t in e.answers), "aaqad",
                               articles=frozenset({f"aaqad-dev.jsonl#{number}"})))
    for q in arquad.load()[1]:
        if q.half == "fit":
            asked.append(Asked("arquad", "ar", q.question, True, (q.answer,), "arquad", articles=frozenset({q.article_id})))
            asked.append(Asked("arquad", "ar", q.question, False, (), "arquad", exclude=q.article_id))
    entries = [json.loads(line) for line in SEEDS_GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_id = {e["id"]: e for e in entries}
    ids = {name: article.id for article in seeds_bot.articles for name in (article.id, article.source)}
    for e in entries:
        if seeds_half(e, by_id) == "fit":
            history = ((by_id[e["follows"]]["question"], ""),) if e.get("follows") else ()
            asked.append(Asked("seeds", e["lang"], e["question"], e["answerable"], tuple(e["answers"]), "seeds",
                               history=history, tags=tuple(e.get("tags", ())),
                               articles=frozenset(ids.get(a, a) for a in e["articles"])))
    return asked


def aaqad_dev_corpus(folder: Path) -> Path:
    """AAQAD's dev paragraphs as one JSONL corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    seen, lines = set(), []
    for e in read_squad(QA_TRAIN / "aaqad.ar.json", "aaqad", "ar"):
        if split_of(e.title, "aaqad", DEV_SHARE) == "dev" and e.context not in seen:
            seen.add(e.context)
            lines.append(json.dumps({"title": e.title, "text": e.context}, ensure_ascii=False))
    path = folder / "aaqad-dev.jsonl"
    content = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != content:
        path.write_text(content, encoding="utf-8")
    return folder


def hits_for(bot, asked: Asked) -> list[Hit]:
    """The chunks the ChatBot would read, less the excluded article's."""
    query = bot.answerer.retrieval_query(asked.question, list(asked.history) or None)
    top_k = bot.config.retrieve.top_k
    hits = bot.retrieve(query, top_k=top_k * 4 if asked.exclude else top_k)
    kept = [h for h in hits if h.chunk.article_id != asked.exclude][:top_k]
    return [Hit(h.chunk, h.score, rank, h.retriever) for rank, h in enumerate(kept)]


def gold_recall(bots, asked: list[Asked], depths=(1, 5, 20)) -> dict:
    """Per source and language, the share of answerable questions whose gold article is among the top
    N retrieved chunks: what the reader can find at most when it reads N chunks."""
    found: dict[str, list[int | None]] = {}
    for a in asked:
        if a.answerable and a.articles and not a.exclude and a.bot == a.source:
            bot = bots[a.bot]
            hits = bot.retrieve(bot.answerer.retrieval_query(a.question, list(a.history) or None), top_k=max(depths))
            ranks = [rank for rank, h in enumerate(hits, start=1) if h.chunk.article_id in a.articles]
            found.setdefault(f"{a.source}/{a.language}", []).append(ranks[0] if ranks else None)
    return {key: {f"R@{n}": m.mean([r is not None and r <= n for r in ranks]) for n in depths} | {"questions": len(ranks)}
            for key, ranks in sorted(found.items())}


def fit_claim_weights(rows, bots, memo, steps: int = 3000, rate: float = 0.5, l2: float = 1e-3) -> dict[str, float]:
    """Weights of `rag.answer.Claim.features` from a softmax regression over each answerable question's
    claims (one per retrieved chunk), towards the claims whose span has the question's best token F1."""
    from rag.answer import claims_of

    questions = []
    for r in rows:
        a = r["asked"]
        query = bots[a.bot].answerer.retrieval_query(a.question, list(a.history) or None)
        claims = claims_of(memo.read(query, r["hits"]), memo.gate(a.language))
        f1 = np.array([m.token_f1(c.span.text, a.keys) for c in claims])
        if len(claims) > 1 and f1.max() > 0:
            names = list(claims[0].features())
            questions.append((np.array([[c.features()[n] for n in names] for c in claims]), f1 == f1.max()))
    if not questions:
        return {"logit": 1.0}
    scale = np.std(np.concatenate([x for x, _ in questions]), axis=0) + 1e-6  # features on one scale while fitting
    weights = np.zeros(len(names))
    for _ in range(steps):
        gradient = l2 * weights
        for x, best in questions:
            z = (x / scale) @ weights
            p = np.exp(z - z.max())
            p /= p.sum()
            gradient += (x / scale).T @ (p - best / best.sum()) / len(questions)
        weights -= rate * gradient
    return {name: round(float(w / s), 5) for name, w, s in zip(names, weights, scale)}


def platt(logits: np.ndarray, labels: np.ndarray, steps: int = 4000, rate: float = 0.1) -> tuple[float, float]:
    """(scale, bias) of sigmoid(scale * logit + bias) fitted by logistic regression (gradient descent)."""
    scale, bias = 1.0, 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(scale * logits + bias)))
        scale -= rate * float(np.mean((p - labels) * logits))
        bias -= rate * float(np.mean(p - labels))
    return scale, bias


def balanced(rows, threshold: float) -> float:
    """Mean over sources of (answered share of answerable + abstained share of unanswerable) / 2."""
    scores = []
    for source in sorted({r["source"] for r in rows}):
        part = [r for r in rows if r["source"] == source]
        pos = [r["probability"] >= threshold for r in part if r["answerable"]]
        neg = [r["probability"] < threshold for r in part if not r["answerable"]]
        if pos and neg:
            scores.append((np.mean(pos) + np.mean(neg)) / 2)
    return float(np.mean(scores)) if scores else 0.0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.calibrate_reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--reader", type=Path, default=READER_DIR, help="folder whose reader.json is rewritten")
    parser.add_argument("--limit", type=int, default=None, help="questions per source (a smoke run)")
    args = parser.parse_args(argv)
    from eval import arquad, xquad
    from rag.progress import progress_bar
    from rag.chatbot import ChatBot
    from rag.config import load_config

    started = time.time()
    config = load_config().replace(answer={"abstain": False})
    args.out.mkdir(parents=True, exist_ok=True)
    bots = {"seeds": ChatBot(config=config, index_dir=args.out / "index-seeds", progress=progress_bar())}
    bots["xquad"] = ChatBot(corpus=xquad.write_corpus(xquad.load()[0], args.out / "xquad_corpus"), config=config,
                            index_dir=args.out / "index-xquad", progress=progress_bar())
    bots["aaqad"] = ChatBot(corpus=aaqad_dev_corpus(args.out / "aaqad_corpus"), config=config,
                            index_dir=args.out / "index-aaqad", progress=progress_bar())
    bots["arquad"] = ChatBot(articles=arquad.articles(arquad.load()[0]), config=config,
                             index_dir=args.out / "index-arquad", progress=progress_bar())
    memo = MemoReader(bots["seeds"].answerer.reader)
    for bot in bots.values():
        bot.answerer.reader = memo
    asked = dev_questions(bots["seeds"])
    if args.limit:
        asked = [a for s in ("xquad", "aaqad", "seeds", "arquad") for a in [x for x in asked if x.source == s][:args.limit]]
    print(f"{len(asked)} dev questions", file=sys.stderr)

    from tqdm import tqdm

    rows = []
    for a in tqdm(asked, desc="reading", unit="q", file=sys.stderr):
        bot = bots[a.bot]
        hits = hits_for(bot, a)
        readings = memo.read(bot.answerer.retrieval_query(a.question, list(a.history) or None), hits)
        logit = max((r.answer_logit for r in readings), default=-30.0)
        rows.append({"asked": a, "hits": hits, "logit": logit, "source": a.source, "answerable": a.answerable})

    settings = json.loads((memo.reader.folder / CONFIG_FILE).read_text(encoding="utf-8"))  # rewritten below
    report = {"questions": len(rows), "gate": {}}
    gates = {}
    for language in GATED:
        part = [r for r in rows if r["asked"].language == language]
        logits = np.array([r["logit"] for r in part])
        labels = np.array([float(r["answerable"]) for r in part])
        scale, bias = platt(logits, labels)
        for r in part:
            r["probability"] = float(1.0 / (1.0 + np.exp(-(scale * r["logit"] + bias))))
        grid = sorted({round(p, 4) for p in (r["probability"] for r in part)})
        threshold = max(grid, key=lambda t: (balanced(part, t), -abs(t - 0.5))) if grid else 0.5
        gates[language] = {"scale": round(scale, 5), "bias": round(bias, 5), "threshold": round(threshold, 4)}
        report["gate"][language] = {**gates[language], "balanced_accuracy": round(balanced(part, threshold), 4),
                                    "by_source": _by_source(part, threshold)}
    settings["gate"] = gates
    memo.gates = {language: Gate(**gate) for language, gate in gates.items()}

    def answers(setting: dict, selected) -> list:
        memo.settings = ReaderSettings.from_dict({**settings, **setting})
        result = []
        for r in selected:
            a = r["asked"]
            answer = bots[a.bot].answerer.extract(a.question, r["hits"], bots[a.bot].index, list(a.history) or None)
            result.append((r, answer))
        return result

    answerable = [r for r in rows if r["answerable"]]
    candidates = {f"span {w}": {"logit": 1.0, "span": w} for w in SPAN_WEIGHTS}
    candidates["fitted"] = fit_claim_weights(answerable, bots, memo)
    weight_trials = {}
    for name, weights in candidates.items():
        got = answers({"claim_weights": weights}, answerable)
        weight_trials[name] = {"weights": weights,
                               "short_answer_f1": m.mean([m.token_f1(ans.short_answer or "", r["asked"].keys) for r, ans in got])}
    chosen_weights = max(weight_trials.values(), key=lambda t: t["short_answer_f1"] or 0)["weights"]
    settings.pop("span_weight", None)  # the one-feature setting of older calibrations
    settings["claim_weights"] = chosen_weights
    report["claim_weights"] = {"chosen": chosen_weights, "trials": weight_trials}

    answerable = [r for r in answerable if r["asked"].source in ("xquad", "seeds")]
    trials = {}
    for margin in SECOND_MARGINS:
        got = answers({"claim_weights": chosen_weights, "second_quote_margin": margin}, answerable)
        trials[margin] = {"contains": m.mean([m.any_key_matches(r["asked"].keys, ans.text) for r, ans in got]),
                          "words_p50": m.percentile([len(ans.text.split()) for _, ans in got], 50)}
    fitting = [k for k, v in trials.items() if v["words_p50"] is not None and v["words_p50"] <= MAX_WORDS] or [0.0]
    settings["second_quote_margin"] = max(fitting, key=lambda k: (trials[k]["contains"] or 0, -k))
    report["second_quote_margin"] = {"chosen": settings["second_quote_margin"], "trials": trials}

    figures = [r for r in rows if r["asked"].source == "seeds" and r["answerable"] and "number" in r["asked"].tags]
    rival_trials = {}
    for margin in RIVAL_MARGINS:
        for logit_margin in RIVAL_LOGIT_MARGINS:
            got = answers({"claim_weights": chosen_weights, "second_quote_margin": settings["second_quote_margin"],
                           "rival_margin": margin, "rival_logit_margin": logit_margin}, figures)
            # a conflict question asks for the figure without saying whose (its gold spans are in 2+ articles);
            # one that names the source ("according to Blinken") wants that source's figure alone
            disputed = [len(r["asked"].articles) > 1 and "conflict" in r["asked"].tags for r, _ in got]
            conflict = [ans.conflict and {c.article_id for c in ans.citations} >= r["asked"].articles
                        for (r, ans), d in zip(got, disputed) if d]
            single = [not ans.conflict for (r, ans), d in zip(got, disputed) if not d]
            rival_trials[f"{margin}/{logit_margin}"] = {"conflicts_shown": m.mean(conflict), "single_kept": m.mean(single),
                                                        "margins": (margin, logit_margin)}
    chosen = max(rival_trials.values(), key=lambda t: ((t["conflicts_shown"] or 0) + (t["single_kept"] or 0),
                                                       -t["margins"][0] - t["margins"][1]))
    settings["rival_margin"], settings["rival_logit_margin"] = chosen["margins"]
    report["rival_margin"] = {"chosen": chosen["margins"], "trials": rival_trials}
    memo.settings = ReaderSettings.from_dict(settings)
    from rag.answer import Answerer

    answerer = Answerer(load_config(), memo)  # the gate on, as users get it
    settings["cascade"], report["cascade"] = fit_cascade(rows, bots, answerer, settings)
    memo.settings = ReaderSettings.from_dict(settings)
    report["dev"] = _as_users_get_it(rows, bots, answerer)
    report["retrieval"] = gold_recall(bots, asked)
    settings["calibration"] = {"command": "python -m eval.calibrate_reader", "questions": len(rows),
                               "minutes": round((time.time() - started) / 60, 1)}
    path = args.reader / CONFIG_FILE
    path.write_text(json.dumps(settings, ensure_ascii=False, indent=1), encoding="utf-8")
    (args.out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    print(f"wrote {path} and {args.out / 'report.json'} in {(time.time() - started) / 60:.1f} min")


def fit_cascade(rows, bots, answerer, settings: dict) -> tuple[dict | None, dict]:
    """Adaptive reading's ``cascade`` (`rag.reader.Cascade`): of the (first, stop probability) pairs
    whose dev figures (gate on; per source and language: answer contains gold, short-answer F1,
    unanswerable abstained, as `_as_users_get_it` measures them) all stay within `MAX_MOVE` of reading
    every chunk, the one that reads the fewest chunks; None when none does. The answers that change at
    all (short answer, abstention, or any of the text) are counted beside. An answer stopped early is
    what `rag.answer.Answerer` makes of the first chunks' readings (the same readings: each chunk is read
    on its own)."""
    memo = answerer.reader
    asked = []
    for r in rows:
        a = r["asked"]
        query = bots[a.bot].answerer.retrieval_query(a.question, list(a.history) or None)
        readings = memo.read(query, r["hits"])
        index = bots[a.bot].index
        asked.append((r, readings, index, answerer.answer(a.question, readings, index)))
    every = _figures([(r, full) for r, _, _, full in asked])
    trials = {}
    for first in CASCADE_FIRST:
        for stop in STOP_PROBABILITIES:
            memo.settings = ReaderSettings.from_dict({**settings, "cascade": {"first": first, "stop_probability": stop}})
            got, stopped, changed, differs, chunks = [], [], [], [], []
            for r, readings, index, full in asked:
                a = r["asked"]
                early = len(readings) > first and answerer.settled(a.question, readings[:first])
                answer = answerer.answer(a.question, readings[:first], index) if early else full
                got.append((r, answer))
                stopped.append(early)
                changed.append((answer.abstained, answer.short_answer) != (full.abstained, full.short_answer))
                differs.append(answer.text != full.text)
                chunks.append(first if early else len(readings))
            figures = _figures(got)
            move = max((abs((figures[group][name] or 0) - (value or 0)) for group, values in every.items()
                        for name, value in values.items() if name != "questions"), default=0.0)
            trials[f"{first}/{stop}"] = {"first": first, "stop_probability": stop, "stopped": m.mean(stopped),
                                         "largest_move": round(move, 4), "short_answer_or_abstention_changed": m.mean(changed),
                                         "text_differs": m.mean(differs), "chunks_read": m.mean(chunks)}
    fitting = [t for t in trials.values() if t["largest_move"] <= MAX_MOVE]
    chosen = min(fitting, key=lambda t: (t["chunks_read"], -t["stop_probability"]), default=None)
    cascade = {"first": chosen["first"], "stop_probability": chosen["stop_probability"]} if chosen else None
    return cascade, {"chosen": cascade, "chunks_read_without": m.mean([len(r) for _, r, _, _ in asked]), "trials": trials}


def _as_users_get_it(rows, bots, answerer) -> dict:
    """With the fitted gate on and the chosen settings, per source and language: how often an answerable
    question's answer contains a gold key, its short-answer F1, and how often an unanswerable one is
    abstained on (the dev figures two readers are compared by)."""
    return _figures([(r, answerer.extract(r["asked"].question, r["hits"], bots[r["asked"].bot].index,
                                          list(r["asked"].history) or None)) for r in rows])


def _figures(answered) -> dict:
    """The dev figures of (row, answer) pairs, per source and language (`_as_users_get_it`)."""
    groups: dict[str, dict[str, list]] = {}
    for r, answer in answered:
        a = r["asked"]
        kind = "/absent" if a.exclude else "/offtopic" if a.bot != a.source else ""
        group = groups.setdefault(f"{a.source}{kind}/{a.language}",
                                  {"contains": [], "f1": [], "abstained": []})
        if a.answerable:
            group["contains"].append(not answer.abstained and m.any_key_matches(a.keys, answer.text))
            group["f1"].append(m.token_f1(answer.short_answer or "", a.keys) if not answer.abstained else 0.0)
        else:
            group["abstained"].append(answer.abstained)
    return {key: {"answer_contains_gold": m.mean(g["contains"]), "short_answer_f1": m.mean(g["f1"]),
                  "abstained_unanswerable": m.mean(g["abstained"]), "questions": len(g["contains"]) + len(g["abstained"])}
            for key, g in sorted(groups.items())}


def _by_source(rows, threshold: float) -> dict:
    result = {}
    for source in sorted({r["source"] for r in rows}):
        part = [r for r in rows if r["source"] == source]
        pos = [r["probability"] >= threshold for r in part if r["answerable"]]
        neg = [r["probability"] < threshold for r in part if not r["answerable"]]
        result[source] = {"answered_answerable": m.mean(pos), "abstained_unanswerable": m.mean(neg),
                          "answerable": len(pos), "unanswerable": len(neg)}
    return result


if __name__ == "__main__":
    main()
