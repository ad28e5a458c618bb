"""Learn the answer layer's weights (``rag/answer_model.json``) from data instead of hand-tuning them.

Sentence model: a conditional logit (softmax over each question's candidate sentences) on
`rag.evidence.FEATURES`, which fits exactly what the answer needs, the best sentence first;
a sentence is positive when it contains the gold answer. Data: XQuAD's *fit* half (split by article; the report half is
never seen here), Arabic and English questions against the 240 Arabic paragraphs.

Abstention gate: logistic regression on `GATE_FEATURES`. Positives: fit-half questions whose
best sentence holds the answer. Negatives, all truly unanswerable: the same questions with
their gold paragraph removed from the corpus (on-topic but absent), and the same questions
asked of the seed articles (off-topic). The threshold maximizes balanced accuracy.

    python -m eval.fit_answer            # ~5 minutes on 2 cores; prints the fitted weights
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from rag.arabic import normalize
from rag.evidence import FEATURES, GATE_FEATURES, MODEL_FILE, Model, analyse, candidates, gate_features, score
from rag.types import Hit

OUT = Path("eval/out/fit")
GOLD = Path(__file__).with_name("datasets") / "seeds_qa.jsonl"


def _contains(sentence: str, answers) -> bool:
    text = normalize(sentence)
    return any(normalize(answer).strip() and normalize(answer).strip() in text for answer in answers)


def _hits_without(bot, query: str, vector, excluded: str | None, top_k: int) -> list[Hit]:
    hits = bot.retrieve(query, top_k=top_k * 4 if excluded else top_k, query_vector=vector)
    kept = [h for h in hits if h.chunk.article_id != excluded][:top_k]
    return [Hit(h.chunk, h.score, rank, h.retriever) for rank, h in enumerate(kept)]


def collect(bot, seeds_bot, questions) -> dict:
    """Feature rows for the sentence model and the gate."""
    top_k = bot.config.retrieve.top_k
    rows, labels, groups, gate_rows = [], [], [], []
    for lang in ("ar", "en"):
        texts = [q.question_ar if lang == "ar" else q.question_en for q in questions]
        vectors = bot.embedder.encode_queries(texts)
        for number, (q, text, vector) in enumerate(zip(questions, texts, vectors)):
            parsed = analyse(text)
            for excluded in (None, q.article_id):
                hits = _hits_without(bot, text, vector, excluded, top_k)
                found = candidates(parsed, vector, hits, bot.index)
                if excluded is None:
                    for c in found:
                        rows.append(c.features)
                        labels.append(float(c.sentence.article_id == q.article_id and _contains(c.sentence.text, q.answers)))
                        groups.append((lang, number))
                gate_rows.append((lang, parsed.answer_type, found, excluded is None, q.answers, {q.article_id}))
            off_topic = seeds_bot.retrieve(text, top_k=top_k, query_vector=vector)
            gate_rows.append((lang, parsed.answer_type, candidates(parsed, vector, off_topic, seeds_bot.index), False,
                              (), set()))
    return {"X": np.array(rows), "y": np.array(labels), "groups": groups, "gate": gate_rows}


def seeds_half(entry: dict, by_id: dict) -> str:
    """"fit" or "report" for a gold-set question, fixed by the id of its first turn (chains stay together)."""
    while entry.get("follows"):
        entry = by_id[entry["follows"]]
    return "fit" if int(hashlib.sha1(entry["id"].encode()).hexdigest(), 16) % 2 == 0 else "report"


def collect_seeds(bot, entries: list[dict], data: dict, weight: int) -> None:
    """Add the fit half of the project's own gold set (in-domain news, real unanswerables) to ``data``.

    Its rows are repeated ``weight`` times: a few hundred in-domain questions against thousands from XQuAD.
    """
    from eval.metrics import any_key_matches

    by_id = {e["id"]: e for e in entries}
    top_k = bot.config.retrieve.top_k
    offset = len(set(data["groups"]))
    for number, entry in enumerate(e for e in entries if seeds_half(e, by_id) == "fit"):
        previous = by_id[entry["follows"]]["question"] if entry.get("follows") else None
        history = [(previous, "")] if previous else None
        query = bot.answerer.retrieval_query(entry["question"], history)
        vector = bot.embedder.encode_queries([query])[0]
        parsed = analyse(entry["question"], previous)
        found = candidates(parsed, vector, bot.retrieve(query, top_k=top_k, query_vector=vector), bot.index)
        lang = parsed.language
        gold_articles = set(entry["articles"])
        for copy in range(weight):
            for c in found:
                data["X"] = np.vstack([data["X"], [c.features]])
                label = entry["answerable"] and c.sentence.article_id in gold_articles and \
                    any_key_matches(entry["answers"], c.sentence.text)
                data["y"] = np.append(data["y"], float(label))
                data["groups"].append(("seeds", lang, copy, offset + number))
            data["gate"].append((lang, parsed.answer_type, found, entry["answerable"], tuple(entry["answers"]),
                                 gold_articles))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 3000, rate: float = 0.5) -> np.ndarray:
    """Plain batch gradient descent on the log loss (bias first); classes weighted to balance."""
    X1 = np.hstack([np.ones((len(X), 1)), X])
    weights = np.zeros(X1.shape[1])
    positive = max(y.mean(), 1e-6)
    sample = np.where(y > 0, 0.5 / positive, 0.5 / max(1 - positive, 1e-6))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(X1 @ weights)))
        gradient = X1.T @ ((p - y) * sample) / len(y) + l2 * np.r_[0, weights[1:]]
        weights -= rate * gradient
    return weights


def fit_listwise(Z: np.ndarray, y: np.ndarray, groups: np.ndarray, l2: float = 1e-3, steps: int = 2000,
                 rate: float = 0.5) -> np.ndarray:
    """Maximize, per question, the softmax probability mass on its positive sentences."""
    count = int(groups.max()) + 1
    weights = np.zeros(Z.shape[1])
    has_positive = np.zeros(count)
    np.add.at(has_positive, groups, y)
    usable = (has_positive[groups] > 0).astype(float)
    for _ in range(steps):
        scores = Z @ weights
        exp = np.exp(scores - scores.max())
        total = np.zeros(count)
        np.add.at(total, groups, exp)
        p = exp / total[groups]
        positive = exp * y
        positive_total = np.zeros(count)
        np.add.at(positive_total, groups, positive)
        q = np.where(y > 0, positive / np.maximum(positive_total[groups], 1e-30), 0.0)
        gradient = (((p - q) * usable)[:, None] * Z).sum(axis=0) / max(1, int((has_positive > 0).sum())) + l2 * weights
        weights -= rate * gradient
    return weights


def fit(data: dict) -> dict:
    X, y = data["X"], data["y"]
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
    keys = {key: i for i, key in enumerate(dict.fromkeys(data["groups"]))}
    groups = np.array([keys[key] for key in data["groups"]])
    sentence_weights = fit_listwise((X - mean) / scale, y, groups)
    model = Model(mean, scale, sentence_weights, {}, {})

    gate_weights, thresholds, balanced_accuracy, counts = {}, {}, {}, {}
    for language in ("ar", "en"):
        gate_X, gate_y = [], []
        for lang, answer_type, found, answerable, answers, gold in data["gate"]:
            if lang != language:
                continue
            scored = score(found, model)
            correct = answerable and bool(scored) and _correct(scored[0], answers, gold)
            if answerable and not correct:
                continue  # a retrieval or ranking miss: neither a clean positive nor a true negative
            gate_X.append(gate_features(scored, answer_type))
            gate_y.append(float(correct))
        gate_X, gate_y = np.array(gate_X), np.array(gate_y)
        weights = fit_logistic(gate_X, gate_y)
        probabilities = 1 / (1 + np.exp(-(weights[0] + gate_X @ weights[1:])))
        best_threshold, best = 0.5, -1.0
        for threshold in np.linspace(0.05, 0.95, 91):
            balanced = ((probabilities >= threshold)[gate_y == 1].mean() + (probabilities < threshold)[gate_y == 0].mean()) / 2
            if balanced > best:
                best_threshold, best = float(threshold), float(balanced)
        gate_weights[language] = weights.round(6).tolist()
        thresholds[language] = round(best_threshold, 3)
        balanced_accuracy[language] = round(best, 4)
        counts[language] = [int(len(gate_y)), int(gate_y.sum())]
    return {
        "features": list(FEATURES), "gate_features": list(GATE_FEATURES),
        "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
        "sentence_weights": sentence_weights.round(6).tolist(), "gate_weights": gate_weights,
        "gate_thresholds": thresholds,
        "fitted_on": {"data": "XQuAD fit half (by article), ar + en questions; gate negatives: gold paragraph "
                              "removed, and questions asked of the seed articles",
                      "sentences": int(len(y)), "positives": int(y.sum()),
                      "gate_examples_and_positives": counts, "gate_balanced_accuracy": balanced_accuracy,
                      "top1_sentence_contains_answer": _top1_rate(data, model), "date": time.strftime("%Y-%m-%d")},
    }


def _correct(candidate, answers, gold_articles) -> bool:
    from eval.metrics import any_key_matches

    return candidate.sentence.article_id in gold_articles and (
        _contains(candidate.sentence.text, answers) or any_key_matches(answers, candidate.sentence.text))


def _top1_rate(data: dict, model: Model) -> float:
    """Share of questions whose highest-scoring sentence contains the answer (fit data)."""
    best: dict = {}
    for features, label, group in zip(data["X"], data["y"], data["groups"]):
        probability = model.sentence_score(tuple(features))
        if group not in best or probability > best[group][0]:
            best[group] = (probability, label)
    return round(float(np.mean([label for _, label in best.values()])), 4)


def main() -> None:
    from eval import xquad
    from rag.chatbot import ChatBot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model", type=Path, default=MODEL_FILE)
    parser.add_argument("--seeds-weight", type=int, default=3, help="copies of each in-domain gold question")
    parser.add_argument("--dump", type=Path, default=None, help="also pickle the feature rows here")
    parser.add_argument("--index", type=Path, default=None, help="reuse an XQuAD index folder")
    args = parser.parse_args()
    records, questions = xquad.load()
    fit_half = [q for q in questions if q.half == "fit"]
    corpus = xquad.write_corpus(records, args.out / "xquad_corpus")
    bot = ChatBot(corpus=corpus, index_dir=args.index or args.out / "xquad_index")
    seeds_bot = ChatBot(index_dir=args.out / "seeds_index")
    started = time.perf_counter()
    data = collect(bot, seeds_bot, fit_half)
    entries = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    collect_seeds(seeds_bot, entries, data, weight=args.seeds_weight)
    if args.dump:
        import pickle

        args.dump.write_bytes(pickle.dumps(data))
    result = fit(data)
    args.model.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["fitted_on"], indent=1), f"\n{len(fit_half)} questions, {time.perf_counter() - started:.0f} s")
    print(dict(zip(FEATURES, result["sentence_weights"])))
    for language, weights in result["gate_weights"].items():
        print(language, dict(zip(("bias",) + GATE_FEATURES, weights)), "threshold", result["gate_thresholds"][language])


if __name__ == "__main__":
    main()
