"""Distil the span reader (`rag/reader.py`) into a student with fewer layers, on CPU, resumably.

    python -m eval.distill_reader --teacher rag/reader_model --out eval/out/fast --layers 6   # resumes if killed
    python -m eval.distill_reader --out eval/out/fast --export rag/reader_model_fast --average 3   # ship it
    SANAD_ANSWER_READER=fast python -m eval.calibrate_reader --reader rag/reader_model_fast        # its own gate

The reader is four fifths of an answer's time, and its time is its transformer layers'. The student is
the teacher with ``--layers`` of its 12 layers (`teacher_layers`: 0, 2, 4, ... for 6), the same heads and
the same shared, frozen embeddings, so it ships and loads as the teacher does (``"layers"`` in its
reader.json; ``answer.reader = "fast"`` reads ``rag/reader_model_fast/``).

It learns the teacher's outputs, not the gold labels (`distillation_loss`): the start and end
distributions (KL divergence at a temperature, over the passage tokens and the first token, the tokens
the reader is trained to point at) and the answerability logit (squared error, so the logit keeps the
scale the gate was calibrated on). With no labels needed, every question of `eval.reader_data`'s
training split is used, its made negatives too, over its own passage and, for ``--chunk-share`` of them,
over a chunk of another paragraph of the same source (`distill_examples`): what retrieval hands the
reader most of the time. All are read in the windows the reader reads at run time (`rag.reader.encode`
through `eval.train_reader.windows`: 256 tokens, 96 apart, at most 64 question tokens). The teacher's
outputs are computed batch by batch in bfloat16 inference mode, about a fifth of a step's time (the
student's forward, backward and update are the rest): each window is read once per epoch, so a cache of
the teacher's logits would save that fifth only from the second epoch on, for ~1 KB a window on disk.

Checkpoints, resuming, batches and exports are `eval.train_reader`'s. Every ``--dev-steps`` steps and
at the end the student is exported to ``OUT/step-N/`` and scored (``OUT/dev-step-N.json``) on the held-out
dev split and ArQuAD dev: gold-passage F1 as `eval.train_reader` reports it, and its agreement with the
teacher (same best span, and how well its answerability logit separates what the teacher's gate lets
through from what it stops). A student's reader.json carries the teacher's gate and answer settings
until `eval.calibrate_reader` refits them for it.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from eval.reader_data import DataSettings, QAExample, arquad_examples, build, describe
from eval.train_reader import (NEG, auc, batches, mean_of, source_share, collate, dev_report, export, export_average,
                               load_base, predict, save_checkpoint, windows)
from rag.reader import CONFIG_FILE, LAYERS, READER_DIR, WEIGHTS_FILE, Gate, build_module, precision

OUT = Path("eval/out/fast")


# --- the student ------------------------------------------------------------------------------------

def teacher_layers(count: int, total: int = LAYERS) -> list[int]:
    """Which of the teacher's ``total`` layers start the student's ``count``: evenly spaced from the
    first, so every other one for 6 of 12 (0, 2, ..., 10), as DistilBERT (Sanh et al. 2019) took one
    layer of two. Spread out, each copied layer starts from a representation close to the one it was
    trained on (its input is the output of the layer below, which two layers of the teacher changed only
    a little more than one), and the student keeps layers from every depth; the first layer, the one on
    the shared embeddings, keeps exactly the input it was trained on."""
    if not 1 <= count <= total:
        raise ValueError(f"a student has between 1 and {total} layers; got {count}")
    return [i * total // count for i in range(count)]


def load_teacher(folder: Path, encoder):
    """The reader in ``folder`` (exported weights on ``encoder``, the base model) in inference mode."""
    from safetensors.torch import load_file

    layers = int(json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8")).get("layers", LAYERS))
    del encoder.encoder.layer[layers:]  # a teacher that is itself a student
    encoder.config.num_hidden_layers = layers
    teacher = build_module(encoder)
    state = {name: tensor.float() for name, tensor in load_file(str(Path(folder) / WEIGHTS_FILE)).items()}
    missing, unexpected = teacher.load_state_dict(state, strict=False)
    stray = [name for name in missing if not name.startswith("encoder.embeddings.")] + list(unexpected)
    if stray:
        sys.exit(f"the reader weights in {folder} do not fit the base model: {stray[:3]}")
    teacher.requires_grad_(False)
    return teacher.eval()


def build_student(teacher, layers: int):
    """A `build_module` network with ``layers`` transformer layers, copies of the teacher's
    `teacher_layers`, copies of its two heads, and the teacher's embedding module itself (shared and
    frozen, as the reader shares the embedder's at run time)."""
    import torch
    from transformers import BertModel

    picked = teacher_layers(layers, len(teacher.encoder.encoder.layer))
    config = copy.deepcopy(teacher.encoder.config)
    config.num_hidden_layers = layers
    with torch.device("meta"):  # every weight is replaced below
        encoder = BertModel(config, add_pooling_layer=False)
    encoder.embeddings = teacher.encoder.embeddings
    encoder.encoder.layer = torch.nn.ModuleList(copy.deepcopy(teacher.encoder.encoder.layer[i]) for i in picked)
    student = build_module(encoder)
    student.span.load_state_dict(teacher.span.state_dict())
    student.answerable.load_state_dict(teacher.answerable.state_dict())
    student.requires_grad_(True)
    encoder.embeddings.requires_grad_(False)
    if any(p.is_meta for p in student.parameters()):
        raise RuntimeError("a student weight was left uninitialised")
    return student


def distillation_loss(student, teacher, allowed, temperature: float = 2.0, answer_weight: float = 1.0):
    """The student's distance from the teacher, zero where they agree: for the start and the end, the KL
    divergence of the student's distribution from the teacher's, both softened by ``temperature`` and
    over the ``allowed`` tokens only (the passage and the first token), times temperature squared (so its
    gradients keep their size whatever the temperature, Hinton et al. 2015); plus ``answer_weight``
    times the squared difference of the answerability logits.

    ``student`` and ``teacher``: (start logits, end logits, answerability logit), as the module returns them.
    """
    from torch.nn import functional

    span = 0.0
    for mine, theirs in zip(student[:2], teacher[:2]):
        mine = functional.log_softmax(mine.masked_fill(~allowed, NEG) / temperature, dim=-1)
        theirs = functional.log_softmax(theirs.masked_fill(~allowed, NEG) / temperature, dim=-1)
        span = span + functional.kl_div(mine, theirs, reduction="batchmean", log_target=True)
    answerable = functional.mse_loss(student[2], teacher[2])
    return temperature ** 2 * span / 2 + answer_weight * answerable


# --- data -------------------------------------------------------------------------------------------

def _key(example: QAExample) -> str:
    return f"{example.source.split('+')[0]}/{example.language}"


def distill_examples(train: list[QAExample], chunk_share: float, rng: random.Random) -> list[QAExample]:
    """Every training question (diacritics stripped, as the reader reads questions) over its own passage,
    and for ``chunk_share`` of them also over one chunk (`rag.chunking`, as Sanad cuts articles) of another
    paragraph of the same source and question language. Labels are left as they are: the teacher gives them."""
    from rag.arabic import strip_diacritics
    from rag.chunking import chunk_article
    from rag.config import ChunkConfig
    from rag.types import Article

    paragraphs: dict[str, dict[str, None]] = {}
    for example in train:
        paragraphs.setdefault(_key(example), {})[example.context] = None
    pools = {key: list(texts) for key, texts in paragraphs.items()}
    chunks: dict[str, list[str]] = {}
    result = []
    for example in train:
        question = strip_diacritics(example.question)
        result.append(replace(example, question=question))
        pool = pools[_key(example)]
        if len(pool) < 2 or rng.random() >= chunk_share:
            continue
        other = rng.choice([p for p in rng.sample(pool, 2) if p != example.context])
        if other not in chunks:
            chunks[other] = [c.text for c in chunk_article(Article("p", "p", "", other), ChunkConfig())]
        if chunks[other]:
            result.append(replace(example, id=example.id + "+chunk", question=question, context=rng.choice(chunks[other]),
                                  answers=(), source=example.source + "+chunk"))
    return result


# --- scoring ------------------------------------------------------------------------------------------

def agreement_report(student: list[dict], teacher: list[dict], examples: list[QAExample], gates: dict[str, Gate]) -> dict:
    """By source and question language: how often the student's best span is the teacher's, its token F1
    against the teacher's, how well its answerability logit separates the examples the teacher's gate
    lets through from those it stops (AUC), how often the teacher's gate decides the same on both logits,
    and the mean absolute difference of the logits. ``student``, ``teacher``: `predict`'s records."""
    from eval.metrics import token_f1

    found: dict[str, dict[str, list]] = {}
    for example, mine, theirs in zip(examples, student, teacher):
        gate = gates.get(example.language) or gates["ar"]
        opens = gate.probability(theirs["answerable"]) >= gate.threshold
        group = found.setdefault(_key(example), {"same": [], "f1": [], "pos": [], "neg": [], "gate": [], "gap": []})
        group["same"].append(float(mine["text"] == theirs["text"]))
        group["f1"].append(token_f1(mine["text"], [theirs["text"]]))
        group["pos" if opens else "neg"].append(mine["answerable"])
        group["gate"].append(float((gate.probability(mine["answerable"]) >= gate.threshold) == opens))
        group["gap"].append(abs(mine["answerable"] - theirs["answerable"]))
    return {key: {"span": mean_of(v["same"]), "span_f1": mean_of(v["f1"]), "auc": auc(v["pos"], v["neg"]),
                  "gate": mean_of(v["gate"]), "logit_gap": mean_of(v["gap"]), "teacher_opens": len(v["pos"]),
                  "teacher_stops": len(v["neg"])} for key, v in sorted(found.items())}


def teacher_predictions(teacher, tokenizer, examples: list[QAExample], path: Path) -> list[dict]:
    """`predict`'s records for the teacher, kept in ``path`` for the same examples (a resumed run reuses them)."""
    ids = [e.id for e in examples]
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["ids"] == ids:
            return saved["predictions"]
    predictions = predict(teacher, tokenizer, examples)
    teacher.eval()  # predict leaves the module in training mode
    path.write_text(json.dumps({"ids": ids, "predictions": predictions}, ensure_ascii=False), encoding="utf-8")
    return predictions


def export_student(module, folder: Path, teacher: Path, fingerprint: str, meta: dict) -> None:
    """`eval.train_reader.export`, plus what the reader needs to load and use a student: its number of
    layers, and (until `eval.calibrate_reader` refits them for it) the teacher's gate and answer settings."""
    from rag.reader import reader_fingerprint

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    settings = json.loads((path if path.exists() else Path(teacher) / CONFIG_FILE).read_text(encoding="utf-8"))
    if not path.exists():
        settings = {name: value for name, value in settings.items() if name not in ("training", "calibration")}
        settings["calibration"] = {"from_teacher": str(teacher), "note": "the teacher's; refit with eval.calibrate_reader"}
    settings.update(layers=len(module.encoder.encoder.layer),
                    teacher={"folder": str(teacher), "fingerprint": reader_fingerprint(Path(teacher))})
    path.write_text(json.dumps(settings, ensure_ascii=False, indent=1), encoding="utf-8")
    export(module, folder, fingerprint, meta)


# --- the run ------------------------------------------------------------------------------------------

def _logger(out: Path) -> logging.Logger:
    log = logging.getLogger("eval.distill_reader")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(out / "distill.log", encoding="utf-8")):
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    return log


def _training_mode(student) -> None:
    """Dropout in the student's layers, none in the embeddings it shares with the teacher."""
    student.train()
    student.encoder.embeddings.eval()


def distil(args) -> None:
    import torch

    from rag.config import load_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(out)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    teacher_folder = Path(args.teacher)
    encoder, tokenizer, _, fingerprint = load_base(load_config().cache_dir)
    encoder.embeddings.requires_grad_(False)
    teacher = load_teacher(teacher_folder, encoder)
    student = build_student(teacher, args.layers)
    gates = {language: Gate(**gate) for language, gate in json.loads(
        (teacher_folder / CONFIG_FILE).read_text(encoding="utf-8"))["gate"].items()}
    log.info(f"student: {args.layers} layers from the teacher's {teacher_layers(args.layers, len(teacher.encoder.encoder.layer))}")

    settings = DataSettings(seed=args.seed, sample=args.sample, shares=tuple(sorted(args.share.items())),
                            dev_limit=args.dev_limit)
    data = build(settings, limit=args.limit)
    examples = distill_examples(data["train"], args.chunk_share, random.Random(args.seed))
    dev = data["dev"] + arquad_examples()[:args.limit]
    items = windows(tokenizer, examples)
    log.info(f"examples {len(examples)}: {describe(examples)}")
    log.info(f"windows {len(items)} (mean {np.mean([len(w.input_ids) for w in items]):.0f} tokens); "
             f"dev examples {len(dev)} (ArQuAD dev among them)")
    teacher_dev = teacher_predictions(teacher, tokenizer, dev, out / "teacher-dev.json")

    def epoch_batches(epoch: int) -> list:
        return batches(items, args.batch_size, random.Random(args.seed * 1000 + epoch))

    steps_per_epoch = len(epoch_batches(0))
    total_steps = min(steps_per_epoch * args.epochs, args.max_steps or math.inf)
    parameters = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    warmup = max(1, int(0.06 * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda at: min(1.0, (at + 1) / warmup) * max(0.0, (total_steps - at) / max(1, total_steps - warmup)))
    checkpoint = out / "checkpoint.pt"
    step, trained_before = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        student.load_state_dict(state["model"], strict=False)
        for name, part in (("optimizer", optimizer), ("scheduler", scheduler)):
            part.load_state_dict(state[name])
        step, trained_before = state["step"], state["elapsed"]
        log.info(f"resumed at step {step} of {total_steps} ({trained_before / 60:.1f} min trained before)")
    meta = {"distilled_from": str(teacher_folder), "layers": args.layers,
            "teacher_layers": teacher_layers(args.layers, len(teacher.encoder.encoder.layer)),
            "data": describe(examples), "settings": asdict(settings), "chunk_share": args.chunk_share,
            "temperature": args.temperature, "answer_weight": args.answer_weight, "epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "steps": total_steps, "threads": args.threads,
            "windows": len(items)}
    started = time.time()

    def score_and_export(name: str) -> None:
        predictions = predict(student, tokenizer, dev)
        report = {"gold_passage": dev_report(student, tokenizer, dev, predictions),
                  "agreement": agreement_report(predictions, teacher_dev, dev, gates),
                  "teacher_gold_passage": dev_report(teacher, tokenizer, dev, teacher_dev)}
        _training_mode(student)
        minutes = (trained_before + time.time() - started) / 60
        (out / f"dev-{name}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        log.info(f"{name} after {minutes:.1f} min; dev: {json.dumps(report)}")
        export_student(student, out / name, teacher_folder, fingerprint,
                       {**meta, "step": step, "train_minutes": round(minutes, 1), "dev": report})

    _training_mode(student)
    clock = {"teacher": 0.0, "student": 0.0, "windows": 0, "steps": 0}
    losses = []
    while step < total_steps:
        epoch = step // steps_per_epoch
        for batch in epoch_batches(epoch)[step - epoch * steps_per_epoch:]:
            ids, attention, allowed, _, _ = collate(batch, tokenizer.pad_token_id)
            tick = time.perf_counter()
            with torch.inference_mode(), precision():
                targets = teacher(ids, attention)
            targets = tuple(t.clone() for t in targets)  # normal tensors, usable next to the student's
            tock = time.perf_counter()
            with precision():
                outputs = student(ids, attention)
            loss = distillation_loss(outputs, targets, allowed, args.temperature, args.answer_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            clock["teacher"] += tock - tick
            clock["student"] += time.perf_counter() - tock
            clock["windows"] += len(batch)
            clock["steps"] += 1
            losses.append(float(loss.detach()))
            step += 1
            if step % args.log_steps == 0:
                log.info(f"step {step}/{total_steps} epoch {epoch + 1} loss {np.mean(losses[-args.log_steps:]):.4f} "
                         f"lr {scheduler.get_last_lr()[0]:.2e} {_speed(clock)}")
            if step % args.checkpoint_steps == 0 or step == total_steps:
                save_checkpoint(checkpoint, student, optimizer, scheduler, step, epoch, trained_before + time.time() - started)
            if (args.dev_steps and step % args.dev_steps == 0) or step % steps_per_epoch == 0 or step == total_steps:
                score_and_export(f"step-{step}")
            if step % steps_per_epoch == 0 or step == total_steps:
                break
    if clock["steps"]:
        log.info(f"this run: {clock['steps']} steps, {clock['windows']} windows, {_speed(clock)}")
    log.info("distillation finished")


def _speed(clock: dict) -> str:
    """Windows a second over the steps timed (teacher forward + student forward, backward and update)."""
    seconds = clock["teacher"] + clock["student"]
    return (f"{clock['windows'] / max(seconds, 1e-9):.1f} windows/s (teacher {clock['teacher'] / max(clock['windows'], 1) * 1000:.0f} "
            f"ms/window, student {clock['student'] / max(clock['windows'], 1) * 1000:.0f} ms/window)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.distill_reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=str(READER_DIR), help="the reader folder distilled (default: the shipped one)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--layers", type=int, default=6, help="the student's transformer layers (the teacher has 12)")
    parser.add_argument("--temperature", type=float, default=2.0, help="softens both start/end distributions")
    parser.add_argument("--answer-weight", type=float, default=1.0, help="weight of the answerability logits' squared error")
    parser.add_argument("--chunk-share", type=float, default=0.5,
                        help="share of the questions also read over a chunk of another paragraph of their source")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, default=None, help="examples per source file (a smoke run)")
    parser.add_argument("--sample", type=float, default=1.0, help="share of every training file's examples (times --share)")
    parser.add_argument("--share", type=source_share, action="append", default=[],
                        help="SOURCE=FRACTION of a training source's examples taken (repeatable); 1 where not given")
    parser.add_argument("--checkpoint-steps", type=int, default=200)
    parser.add_argument("--log-steps", type=int, default=50)
    parser.add_argument("--dev-limit", type=int, default=300, help="held-out examples per source and language scored")
    parser.add_argument("--dev-steps", type=int, default=1000, help="score the dev sets and export every N steps")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="end the run (and the learning-rate decay) at this step; a resumed run may shorten it")
    parser.add_argument("--export", metavar="FOLDER", help="copy the last step's student to FOLDER (rag/reader_model_fast) and stop")
    parser.add_argument("--average", type=int, default=1, help="with --export: the mean of the last N steps' weights")
    args = parser.parse_args(argv)
    args.share = dict(args.share)
    try:
        teacher_layers(args.layers)  # a bad count fails here, before anything is loaded
    except ValueError as exc:
        parser.error(str(exc))
    if args.export:
        last = export_average(Path(args.out), Path(args.export), args.average)
        layers = json.loads((Path(args.export) / CONFIG_FILE).read_text(encoding="utf-8"))["layers"]
        print(f"exported the mean of {args.average} step(s) up to {last} to {args.export}, a {layers}-layer student "
              f"with the teacher's gate: calibrate it with `SANAD_ANSWER_READER=fast python -m eval.calibrate_reader "
              f"--reader {args.export}`")
    else:
        distil(args)


if __name__ == "__main__":
    main()
