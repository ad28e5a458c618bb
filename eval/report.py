"""How an evaluation report is shown: Markdown tables (also printed) and the confidence plot.

Formatting only; every figure is computed in `eval.run` and `eval.metrics`.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

LISTED = 25  # questions shown per list in report.md (all are in report.json)
SHOWN_CHARS = 160


def render_markdown(report: dict) -> str:
    """The whole report.md: verdict, metric tables, then the questions worth reading."""
    metrics = report["metrics"]
    lines = [f"# Sanad eval: {report['suite']}", "",
             f"Corpus `{report['corpus']}`, model `{report['model']}`, answer mode `{report['answer_mode']}`, "
             f"abstention threshold {_threshold_cell(report['abstain_threshold'])}, {metrics['questions']} questions"
             + (f" (limit {report['limit']})" if report["limit"] else "") + ".", ""]
    verdict = "FAIL" if report["failures"] else "PASS"
    lines += [f"**{verdict}** against `{report['thresholds_file']}`", *[f"- {f}" for f in report["failures"]], ""]
    lines += (_paragraph_tables(metrics) if report["suite"] in ("xquad", "arquad")
              else _seeds_tables(metrics, report["results"]))
    lines += ["## Questions", ""]
    lines += _question_list("Answered but no key in the answer",
                            [r for r in report["results"] if r["answerable"] and not r["abstained"] and not r["key_matched"]])
    lines += _question_list("Answered although unanswerable",
                            [r for r in report["results"] if not r["answerable"] and not r["abstained"]])
    lines += _question_list("Abstained although answerable", [r for r in report["results"] if r["answerable"] and r["abstained"]])
    lines += _question_list("Citations that do not support their sentence",
                            [r for r in report["results"] if _below_one(r["citation_recall"]) or _below_one(r["citation_precision"])])
    return "\n".join(lines) + "\n"


def _seeds_tables(metrics: dict, results: list[dict]) -> list[str]:
    languages = [key for key, value in metrics.items() if isinstance(value, dict) and key != "llm"]
    lines = ["## Metrics", "", "| metric | all | " + " | ".join(languages) + " |",
             "|---|---:|" + "---:|" * len(languages)]
    for name, value in metrics.items():
        if not isinstance(value, dict):
            lines.append(f"| {name} | {_cell(value)} | " + " | ".join(_cell(metrics[lang].get(name)) for lang in languages) + " |")
    by_tag = defaultdict(list)
    for result in results:
        for tag in result["tags"]:
            by_tag[tag].append(result)
    lines += ["", "## By tag", "", "| tag | questions | answer accuracy (answerable) | abstained (unanswerable) |",
              "|---|---:|---:|---:|"]
    for tag, rows in sorted(by_tag.items()):
        answerable = [r for r in rows if r["answerable"]]
        unanswerable = [r for r in rows if not r["answerable"]]
        accuracy = sum(r["key_matched"] and not r["abstained"] for r in answerable) / len(answerable) if answerable else None
        abstained = sum(r["abstained"] for r in unanswerable) / len(unanswerable) if unanswerable else None
        lines.append(f"| {tag} | {len(rows)} | {_cell(accuracy)} | {_cell(abstained)} |")
    if "llm" in metrics:  # `sanad eval --mode llm`: what the model wrote and what the verifier kept
        llm = metrics["llm"]
        lines += ["", "## LLM mode", "", "| figure | value |", "|---|---:|"]
        lines += [f"| {name} | {_cell(value) if not isinstance(value, list) else (', '.join(value) or 'none')} |"
                  for name, value in llm.items()]
    return lines + [""]


def _paragraph_tables(metrics: dict) -> list[str]:
    lines = ["## Retrieval (gold paragraph in the top chunks)", "", "| lang | half | mode | R@1 | R@5 | MRR |",
             "|---|---|---|---:|---:|---:|"]
    for lang, halves in metrics["retrieval"].items():
        for half, modes in halves.items():
            for mode, values in modes.items():
                lines.append(f"| {lang} | {half} | {mode} | {values['R@1']} | {values['R@5']} | {values['MRR']} |")
    columns = ("questions", "answer_accuracy", "short_answer_rate", "short_answer_em", "short_answer_f1",
               "gold_paragraph_f1", "false_abstention_rate", "cites_gold_article", "citation_recall", "groundedness",
               "exact_quote_rate", "answer_words_p50", "latency_p50_ms")
    lines += ["", "## Answers", "", "| lang | half | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for lang in metrics["retrieval"]:  # the languages asked
        for half, values in metrics[lang].items():
            lines.append(f"| {lang} | {half} | " + " | ".join(_cell(values.get(c)) for c in columns) + " |")
    if "absent_half" in metrics:
        lines += ["", "## Absent half (every other paragraph indexed)", "",
                  "| lang | half | present: answered | present: answer contains gold | absent: abstained |",
                  "|---|---|---:|---:|---:|"]
        for lang, halves in metrics["absent_half"].items():
            for half, values in halves.items():
                lines.append(f"| {lang} | {half} | {_cell(values['present_answered'])} | "
                             f"{_cell(values['present_correct'])} | {_cell(values['absent_abstained'])} |")
    return lines + [""]


def _question_list(title: str, rows: list[dict]) -> list[str]:
    lines = [f"### {title} ({len(rows)})", ""]
    for row in rows[:LISTED]:
        text = " ".join(row["text"].split())
        lines.append(f"- `{row['id']}` ({row['lang']}, confidence {row['confidence']:.3f}): "
                     f"{text[:SHOWN_CHARS]}{'…' if len(text) > SHOWN_CHARS else ''}")
    if len(rows) > LISTED:
        lines.append(f"- … {len(rows) - LISTED} more in report.json")
    return lines + [""]


def _below_one(value) -> bool:
    return value is not None and value < 1


def _threshold_cell(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{language} {threshold:.3f}" for language, threshold in value.items())
    return _cell(value)


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def plot_confidence(groups: dict[str, dict[str, list[float]]], threshold, path: Path, title: str) -> Path:
    """One panel per question language: histograms of `Answer.confidence` for answerable and unanswerable
    questions, each normalized to its own count, with that language's abstention threshold as a line.

    The gate works when the answerable mass sits right of the line and the unanswerable mass left of it;
    the legend says which share of each kind is on its correct side.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    every = [v for kinds in groups.values() for values in kinds.values() for v in values]
    bins = np.linspace(min([0.0, *every]), max([1.0, *every]), 26)
    figure, panels = plt.subplots(1, max(len(groups), 1), figsize=(6 * max(len(groups), 1), 4.2), dpi=110,
                                  sharey=True, squeeze=False)
    for axes, (language, kinds) in zip(panels[0], sorted(groups.items())):
        line = threshold.get(language) if isinstance(threshold, dict) else threshold
        for kind, values in sorted(kinds.items()):
            label = f"{kind} (n={len(values)})"
            if line is not None:
                right_side = [v >= line for v in values] if kind == "answerable" else [v < line for v in values]
                label += f", {np.mean(right_side):.0%} on its side"
            axes.hist(values, bins=bins, weights=np.full(len(values), 1 / len(values)),
                      alpha=0.55, label=label)
        if line is not None:
            axes.axvline(line, color="black", linestyle="--", label=f"abstention threshold {line:.3g}")
        axes.set_title(f"{title}: questions in {language}")
        axes.set_xlabel("Answer.confidence (the score the abstention gate compares)")
        axes.legend(fontsize="small", loc="upper left")
    panels[0][0].set_ylabel("share of the questions of that kind")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
