#!/usr/bin/env python3
"""Validate a Sanad gold QA file (default: eval/datasets/seeds_qa.jsonl against seeds/).

Stdlib only. Checks, per line:
  * schema and types, id format ("ar-NNN" / "en-NNN" / "un-NNN"), unique ids, allowed tags;
  * answerable entries: non-empty answers / articles / support, every listed article exists,
    every support string is an exact substring of one of the listed articles, every listed
    article holds at least one support string, and at least one answer key occurs in the
    normalized support text (the same normalization the product uses to match keys);
  * unanswerable entries: empty answers / articles / support and an "off-topic" or "absent" tag;
  * `follows` names an earlier id and comes with the "follow-up" tag (and vice versa);
  * no answer key already occurs in the normalized question (an echo would score as correct).
Prints counts by language, answerability and tag; exits 1 with the list of failures.

Usage:
  python3 eval/datasets/check_gold.py                       # the shipped file, with count targets
  python3 eval/datasets/check_gold.py my_qa.jsonl --seeds my_articles/ --no-targets
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_FILE = HERE / "seeds_qa.jsonl"
DEFAULT_SEEDS = REPO / "seeds"

ALLOWED_TAGS = {
    "number", "person", "place", "date", "org", "clause", "conflict", "multi-article", "follow-up",
    "no-hamza", "diacritics", "indic-digits", "colloquial", "typo", "short", "english", "off-topic", "absent",
}
FIELDS = {"id": str, "lang": str, "question": str, "answerable": bool, "answers": list,
          "articles": list, "support": list, "follows": (str, type(None)), "tags": list}
ID_RE = re.compile(r"^(ar|en|un)-\d{3}$")
# Count targets of the shipped seeds file (skip with --no-targets for your own files).
TARGETS = {"total": 130, "ar_answerable": 75, "en_answerable": 32, "unanswerable": 28}

# --- normalization (mirrors the product's matching: rag/arabic.py normalize + canonical_numbers) ---

_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed\u0640]")
_LETTERS = str.maketrans({
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ٲ": "ا", "ٳ": "ا",
    "ؤ": "و", "ئ": "ي", "ى": "ي", "ی": "ي", "ة": "ه", "ک": "ك",
})
_DIGITS = str.maketrans({**{chr(0x0660 + d): str(d) for d in range(10)},
                         **{chr(0x06F0 + d): str(d) for d in range(10)}, "٫": ".", "٬": ","})


def fold(text: str) -> str:
    """Letters and digits only: diacritics/tatweel out, hamza carriers, taa marbuta, alef maqsura, lower case."""
    return _DIACRITICS.sub("", text).translate(_DIGITS).translate(_LETTERS).lower()


_UNITS = {fold(w): v for w, v in {
    "واحد": 1, "واحدة": 1, "اثنان": 2, "اثنين": 2, "اثنتان": 2, "ثلاثة": 3, "ثلاث": 3, "أربعة": 4, "أربع": 4,
    "خمسة": 5, "خمس": 5, "ستة": 6, "ست": 6, "سبعة": 7, "سبع": 7, "ثمانية": 8, "ثماني": 8, "ثمان": 8,
    "تسعة": 9, "تسع": 9, "عشرة": 10, "عشر": 10, "عشرين": 20, "عشرون": 20, "ثلاثين": 30, "ثلاثون": 30,
    "أربعين": 40, "خمسين": 50, "مئة": 100, "مائة": 100,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "hundred": 100,
}.items()}
_SCALES = {fold(w): v for w, v in {
    "ألف": 1_000, "آلاف": 1_000, "ألفا": 1_000, "مليون": 1_000_000, "ملايين": 1_000_000,
    "مليار": 1_000_000_000, "مليارات": 1_000_000_000,
    "thousand": 1_000, "thousands": 1_000, "million": 1_000_000, "millions": 1_000_000, "billion": 1_000_000_000,
}.items()}
# A scale word alone: "ألف صاروخ" = 1000, but "آلاف"/"thousands" alone is vague ("thousands of") -> kept as a word.
_VAGUE = {fold(w) for w in ("آلاف", "ملايين", "مليارات", "thousands", "millions")}
_TOKEN = re.compile(r"\d+(?:[.,]\d{3})*(?:\.\d+)?|[^\W\d_]+")


def _number_value(token: str) -> Decimal:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):
        return Decimal(token.replace(",", ""))
    if re.fullmatch(r"\d{1,3}(?:\.\d{3}){2,}", token):  # 1.200.000
        return Decimal(token.replace(".", ""))
    return Decimal(token.replace(",", "."))  # 1.2 / 2,5


def _unit_word(word: str) -> int | None:
    if word in _UNITS:
        return _UNITS[word]
    if word[:1] in ("و", "ب") and word[1:] in _UNITS:  # وستة / بثمانية
        return _UNITS[word[1:]]
    return None


def _fmt(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def canonical(text: str) -> str:
    """Folded text with every number written as plain digits: "8 آلاف", "ثمانية آلاف", "8,000",
    "8 thousand", "٨٠٠٠" -> "8000"; "1.2 مليون" -> "1200000"; a bare "ألف" -> "1000"; "ستة" -> "6"."""
    text = fold(text)
    out, cursor, last_end = [], 0, -1
    matches = list(_TOKEN.finditer(text))
    i = 0
    while i < len(matches):
        m = matches[i]
        tok, start, end = m.group(), m.start(), m.end()
        value = None
        if tok[0].isdigit():
            value = _number_value(tok)
        elif tok in _SCALES and tok not in _VAGUE:
            value = Decimal(_SCALES[tok])
        else:
            unit = _unit_word(tok)
            if unit is not None and start != last_end:  # "8ثلاث" glued to digits: not a second number
                value = Decimal(unit)
        if value is None:
            i += 1
            continue
        # a following scale word multiplies: "8 آلاف", "1.2 مليون", "eight thousand"
        if tok not in _SCALES and i + 1 < len(matches):
            nxt = matches[i + 1]
            if nxt.group() in _SCALES and text[end:nxt.start()].strip() == "":
                value *= _SCALES[nxt.group()]
                end = nxt.end()
                i += 1
        out.append(text[cursor:start])
        out.append(_fmt(value))
        cursor = last_end = end
        i += 1
    out.append(text[cursor:])
    return re.sub(r"\s+", " ", "".join(out))


def key_in(key: str, text: str) -> bool:
    """Does the answer key occur in the text (both canonicalized)? Numeric keys need digit boundaries."""
    k, t = canonical(key).strip(), canonical(text)
    if not k:
        return False
    if re.fullmatch(r"[\d.]+", k):
        return re.search(rf"(?<![\d.]){re.escape(k)}(?![\d]|\.\d)", t) is not None
    return k in t


# --- checks -----------------------------------------------------------------------------

def check(path: Path, seeds: Path, targets: bool) -> int:
    failures: list[str] = []
    entries: list[dict] = []
    texts: dict[str, str] = {}
    for art in sorted(seeds.glob("*.txt")):
        texts[art.name] = art.read_text(encoding="utf-8")
    if not texts:
        failures.append(f"no articles (*.txt) found in {seeds}")

    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as exc:
            failures.append(f"line {n}: invalid JSON ({exc})")
            continue
        if not isinstance(e, dict):
            failures.append(f"line {n}: not a JSON object")
            continue
        e["_line"] = n
        entries.append(e)

    seen: dict[str, int] = {}
    questions: set[tuple] = set()
    for e in entries:
        where = f"line {e['_line']} ({e.get('id', '?')})"
        bad = False
        for field, typ in FIELDS.items():
            if field not in e:
                failures.append(f"{where}: missing field '{field}'")
                bad = True
            elif not isinstance(e[field], typ):
                failures.append(f"{where}: field '{field}' has type {type(e[field]).__name__}")
                bad = True
        extra = set(e) - set(FIELDS) - {"_line"}
        if extra:
            failures.append(f"{where}: unknown fields {sorted(extra)}")
        if bad:
            continue
        id_ = e["id"]
        m = ID_RE.match(id_)
        if not m:
            failures.append(f"{where}: id must look like ar-001 / en-001 / un-001")
        if id_ in seen:
            failures.append(f"{where}: duplicate id (first on line {seen[id_]})")
        if e["lang"] not in ("ar", "en"):
            failures.append(f"{where}: lang must be 'ar' or 'en'")
        if m:
            prefix = m.group(1)
            if prefix == "un" and e["answerable"]:
                failures.append(f"{where}: un- ids are for unanswerable entries")
            if prefix in ("ar", "en") and (not e["answerable"] or e["lang"] != prefix):
                failures.append(f"{where}: {prefix}- ids are answerable entries with lang '{prefix}'")
        if not e["question"].strip():
            failures.append(f"{where}: empty question")
        qkey = (e["question"].strip(), e["follows"])
        if qkey in questions:
            failures.append(f"{where}: duplicate question {e['question']!r}")
        questions.add(qkey)
        tags = e["tags"]
        for t in tags:
            if t not in ALLOWED_TAGS:
                failures.append(f"{where}: unknown tag {t!r}")
        if len(set(tags)) != len(tags):
            failures.append(f"{where}: repeated tag")
        if e["lang"] == "en" and "english" not in tags:
            failures.append(f"{where}: English question without the 'english' tag")
        # follows
        if e["follows"] is not None:
            if e["follows"] not in seen:
                failures.append(f"{where}: follows {e['follows']!r}, which is not an earlier id")
            if "follow-up" not in tags:
                failures.append(f"{where}: has 'follows' but no 'follow-up' tag")
        elif "follow-up" in tags:
            failures.append(f"{where}: 'follow-up' tag but follows is null")
        for field in ("answers", "articles", "support"):
            if not all(isinstance(x, str) and x.strip() for x in e[field]):
                failures.append(f"{where}: '{field}' must be a list of non-empty strings")
                bad = True
        seen[id_] = e["_line"]
        if bad:
            continue

        if not e["answerable"]:
            if e["answers"] or e["articles"] or e["support"]:
                failures.append(f"{where}: unanswerable entries need empty answers/articles/support")
            if not ({"off-topic", "absent"} & set(tags)):
                failures.append(f"{where}: unanswerable entries need an 'off-topic' or 'absent' tag")
            continue

        if not e["answers"] or not e["articles"] or not e["support"]:
            failures.append(f"{where}: answerable entries need answers, articles and support")
            continue
        if {"off-topic", "absent"} & set(tags):
            failures.append(f"{where}: answerable entry tagged off-topic/absent")
        missing = [a for a in e["articles"] if a not in texts]
        if missing:
            failures.append(f"{where}: unknown article(s) {missing}")
            continue
        if len(set(e["articles"])) != len(e["articles"]):
            failures.append(f"{where}: repeated article")
        used = set()
        for s in e["support"]:
            homes = [a for a in e["articles"] if s in texts[a]]
            if not homes:
                elsewhere = [a for a in texts if s in texts[a]]
                hint = f" (it is in {elsewhere})" if elsewhere else ""
                failures.append(f"{where}: support not found verbatim in listed articles{hint}: {s[:80]!r}")
            used.update(homes)
            if len(fold(s).strip()) < 20:
                failures.append(f"{where}: support too short to be a sentence: {s!r}")
        unused = [a for a in e["articles"] if a not in used]
        if unused:
            failures.append(f"{where}: listed article(s) with no support string: {unused}")
        joined = "\n".join(e["support"])
        if not any(key_in(k, joined) for k in e["answers"]):
            failures.append(f"{where}: no answer key occurs in the normalized support {e['answers']}")
        echoed = [k for k in e["answers"] if key_in(k, e["question"])]
        if echoed:
            failures.append(f"{where}: answer key(s) already in the question (echo scores as correct): {echoed}")
        if len(set(canonical(k) for k in e["answers"])) != len(e["answers"]):
            pass  # same key in two spellings is harmless (e.g. "8 آلاف" and "8000")

    # --- counts ---
    by = collections.Counter()
    tag_counts = {True: collections.Counter(), False: collections.Counter()}
    for e in entries:
        if not all(f in e for f in FIELDS) or not isinstance(e.get("tags"), list):
            continue
        by[(e["lang"], e["answerable"])] += 1
        tag_counts[bool(e["answerable"])].update(t for t in e["tags"] if isinstance(t, str))
    total = sum(by.values())
    ar_ans, en_ans = by[("ar", True)], by[("en", True)]
    unans = by[("ar", False)] + by[("en", False)]
    msa = sum(1 for e in entries if e.get("lang") == "ar" and e.get("answerable") is True
              and "colloquial" not in e.get("tags", []))
    print(f"{path.name}: {total} questions")
    print(f"  answerable   ar={ar_ans} (MSA, not colloquial: {msa})  en={en_ans}")
    print(f"  unanswerable ar={by[('ar', False)]}  en={by[('en', False)]}  total={unans}")
    print(f"  follow-ups: {sum(1 for e in entries if e.get('follows'))}")
    all_tags = sorted(set(tag_counts[True]) | set(tag_counts[False]))
    print("  tags (answerable / unanswerable):")
    for t in all_tags:
        print(f"    {t:14s} {tag_counts[True][t]:4d} / {tag_counts[False][t]:3d}")

    if targets:
        want = {"total": total, "ar_answerable": ar_ans, "en_answerable": en_ans, "unanswerable": unans}
        for name, minimum in TARGETS.items():
            if want[name] < minimum:
                failures.append(f"count target: {name}={want[name]} < {minimum}")
        un_langs = {e["lang"] for e in entries if e.get("answerable") is False}
        if un_langs != {"ar", "en"}:
            failures.append("count target: unanswerable questions must be in both Arabic and English")
        for t in ("off-topic", "absent"):
            if tag_counts[False][t] == 0:
                failures.append(f"count target: no unanswerable '{t}' questions")

    if failures:
        print(f"\nFAILED ({len(failures)}):")
        for f in failures:
            print("  - " + f)
        return 1
    print("\nOK")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE, help="gold JSONL file")
    ap.add_argument("--seeds", type=Path, default=DEFAULT_SEEDS, help="folder of the article .txt files")
    ap.add_argument("--no-targets", action="store_true", help="skip the count targets of the shipped file")
    args = ap.parse_args()
    return check(args.file, args.seeds, targets=not args.no_targets)


if __name__ == "__main__":
    sys.exit(main())
