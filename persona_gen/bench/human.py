"""The human study: rating sheets out, filled sheets in, majority vote, agreement with models.

A sheet item is one persona, one question and two answers shown as A and B (which source
is A is a stable coin flip per item, kept in the items table and never on the sheet).
Raters pick the answer the persona would rather receive and justify it.

Majority vote: an item's label is the letter with strictly more votes. A tie (2-2 with
four raters) has no majority: the item is kept in the majority table with `tie = true`
and left out of every kappa, and the agreement table counts such items.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, ValidationError, field_validator

from persona_gen.bench.metrics import cohen_kappa
from persona_gen.config.base import StrictModel
from persona_gen.errors import DataError
from persona_gen.hashing import coin, hex_id

ITEM_COLUMNS = ("item_id", "persona_id", "persona_text", "question", "answer_a", "answer_b")
SHEET_COLUMNS = ("item_id", "persona_id", "persona", "question", "answer_a", "answer_b",
                 "rater", "choice", "justification")
"""The CSV sheet; raters fill `rater`, `choice` (A or B) and `justification`."""
RATING_COLUMNS = ("item_id", "persona_id", "rater", "choice", "justification")
"""What the HTML page downloads; import needs item_id, rater (or a file name) and choice."""


class Rating(StrictModel):
    rater: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    choice: Literal["A", "B"]
    justification: str = ""
    source: str = ""

    @field_validator("choice", mode="before")
    @classmethod
    def _letter(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


# ---- items -------------------------------------------------------------------------------

def item_id(persona_id: str, prompt_id: str, source_a: str, source_b: str) -> str:
    return hex_id("item", persona_id, prompt_id, *sorted((source_a, source_b)))


def _a_first(item: str) -> bool:
    """Stable coin per item: which source is shown as A (against position bias)."""
    return coin(item)


def build_items(samples: pa.Table, model: str, mode_a: str, mode_b: str, personas: int,
                questions: int, seed: int) -> pa.Table:
    """Sheet items comparing two bench modes of one model, from the bench answers table.

    Uses the first sample of full-persona requests; `personas` random personas that have
    both answers for some prompt, up to `questions` random prompts each.
    """
    if mode_a == mode_b:
        raise DataError("the two answers must come from different modes", source="--modes")
    rows = [r for r in samples.to_pylist()
            if r["model"] == model and r["ablated_attribute"] is None
            and r["sample_index"] == 0 and r["answer"] and r["mode"] in (mode_a, mode_b)]
    by_pair: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        by_pair.setdefault((r["persona_id"], r["prompt_id"]), {})[r["mode"]] = r
    complete = {k: v for k, v in by_pair.items() if len(v) == 2}
    if not complete:
        raise DataError(f"no persona/question has answers from both {mode_a} and {mode_b} "
                        f"by model {model}", source="bench answers")
    rng = np.random.default_rng(seed)
    persona_ids = sorted({p for p, _ in complete})
    persona_ids = [persona_ids[i] for i in rng.permutation(len(persona_ids))][:personas]
    out = []
    for pid in sorted(persona_ids):
        prompt_ids = sorted(q for p, q in complete if p == pid)
        prompt_ids = sorted(prompt_ids[i] for i in rng.permutation(len(prompt_ids))[:questions])
        for qid in prompt_ids:
            pair = complete[(pid, qid)]
            iid = item_id(pid, qid, mode_a, mode_b)
            first, second = (mode_a, mode_b) if _a_first(iid) else (mode_b, mode_a)
            out.append({
                "item_id": iid, "persona_id": pid, "prompt_id": qid,
                "persona_text": pair[first]["persona_text"], "question": pair[first]["question"],
                "answer_a": pair[first]["answer"], "answer_b": pair[second]["answer"],
                "source_a": f"{model}/{first}", "source_b": f"{model}/{second}",
            })
    return pa.Table.from_pylist(out)


PAIR_COLUMNS = ("pair_id", "persona_id", "prompt_id", "persona", "instruction", "original", "data")
"""What original-vs-revision items read from a run's pairs (feedback/pairs)."""


def build_pair_items(pairs: pa.Table, personas: int, questions: int, seed: int) -> pa.Table:
    """Sheet items from the run's own pairs: the original answer against its revision for
    the persona (the comparison of the paper's human study), `personas` random personas, up
    to `questions` random pairs each. Sources are 'original' and 'revision'."""
    missing = [c for c in PAIR_COLUMNS if c not in pairs.column_names]
    if missing:
        raise DataError(f"pairs table lacks column(s) {missing}", source="feedback/pairs")
    rows = [r for r in pairs.select(list(PAIR_COLUMNS)).to_pylist()
            if r["original"] and r["data"] and r["persona"]]
    if not rows:
        raise DataError("no pair has an original, a revision and a persona",
                        source="feedback/pairs")
    by_persona: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_persona.setdefault(str(r["persona_id"]), {})[str(r["prompt_id"])] = r
    rng = np.random.default_rng(seed)
    ids = sorted(by_persona)
    chosen = sorted(ids[i] for i in rng.permutation(len(ids))[:personas])
    out = []
    for pid in chosen:
        qids = sorted(by_persona[pid])
        for qid in sorted(qids[i] for i in rng.permutation(len(qids))[:questions]):
            r = by_persona[pid][qid]
            iid = item_id(pid, qid, "original", "revision")
            first, second = ("original", "revision") if _a_first(iid) else ("revision", "original")
            text = {"original": r["original"], "revision": r["data"]}
            out.append({"item_id": iid, "persona_id": pid, "prompt_id": qid,
                        "persona_text": r["persona"], "question": r["instruction"],
                        "answer_a": text[first], "answer_b": text[second],
                        "source_a": first, "source_b": second})
    return pa.Table.from_pylist(out)


def check_items(items: pa.Table, source: str) -> pa.Table:
    missing = [c for c in ITEM_COLUMNS if c not in items.column_names]
    if missing:
        raise DataError(f"items table lacks column(s) {missing}", source=source)
    ids = items.column("item_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise DataError("item_id values must be unique", source=source)
    return items


# ---- sheets out --------------------------------------------------------------------------

def sheet_csv(items: pa.Table) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SHEET_COLUMNS)
    for r in items.to_pylist():
        w.writerow([r["item_id"], r["persona_id"], r["persona_text"], r["question"],
                    r["answer_a"], r["answer_b"], "", "", ""])
    return buf.getvalue().encode("utf-8")


def sheet_html(items: pa.Table, title: str = "Persona answer preferences") -> str:
    """A self-contained page: rate in the browser, download CSV/JSON; no server involved."""
    from persona_gen.bench.sheet_html import render_sheet

    return render_sheet(items.to_pylist(), title)


# ---- sheets in ---------------------------------------------------------------------------

def _ratings_from_rows(rows: Iterable[dict[str, str]], source: str, default_rater: str) -> list[Rating]:
    out = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        choice = (row.get("choice") or "").strip()
        if not choice:
            continue  # an item the rater left blank is not a vote
        try:
            out.append(Rating(rater=(row.get("rater") or "").strip() or default_rater,
                              item_id=(row.get("item_id") or "").strip(), choice=choice,
                              justification=(row.get("justification") or "").strip(),
                              source=source))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise DataError(f"row {line}: '{field}': {first['msg']} (choice must be A or B)",
                            source=source) from None
    return out


def read_sheet(path: str | Path) -> list[Rating]:
    """A filled sheet: the CSV sheet, the page's CSV download, or its JSON download."""
    path = Path(path)
    default_rater = path.stem
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheet programs add a BOM
    except FileNotFoundError:
        raise DataError("file not found", source=str(path)) from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg})", source=str(path)) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("ratings"), list):
            raise DataError("expected an object with a 'ratings' list", source=str(path))
        rater = str(doc.get("rater") or "")
        rows = [{**r, "rater": r.get("rater") or rater} for r in doc["ratings"]]
        return _ratings_from_rows(rows, str(path), default_rater)
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    for col in ("item_id", "choice"):
        if col not in header:
            raise DataError(f"sheet lacks the '{col}' column (has {header})", source=str(path))
    return _ratings_from_rows(reader, str(path), default_rater)


def ratings_table(paths: Iterable[str | Path], known_items: set[str] | None = None) -> pa.Table:
    """All ratings from several sheets; a rater rating one item twice is an error."""
    ratings: list[Rating] = []
    for p in paths:
        ratings.extend(read_sheet(p))
    seen: dict[tuple[str, str], str] = {}
    for r in ratings:
        key = (r.rater, r.item_id)
        if key in seen:
            raise DataError(f"rater '{r.rater}' rated item {r.item_id} twice "
                            f"(also in {seen[key]})", source=r.source)
        seen[key] = r.source
        if known_items is not None and r.item_id not in known_items:
            raise DataError(f"unknown item_id {r.item_id} (not in this run's sheet items)",
                            source=r.source)
    schema = pa.schema([(c, pa.string()) for c in ("rater", "item_id", "choice",
                                                    "justification", "source")])
    return pa.Table.from_pylist([r.model_dump() for r in ratings], schema=schema)


def majority_vote(ratings: pa.Table) -> pa.Table:
    """Per item: votes for A and B, the majority letter (null on a tie) and `tie`."""
    votes: dict[str, dict[str, int]] = {}
    for r in ratings.to_pylist():
        votes.setdefault(r["item_id"], {"A": 0, "B": 0})[r["choice"]] += 1
    rows = []
    for item in sorted(votes):
        a, b = votes[item]["A"], votes[item]["B"]
        rows.append({"item_id": item, "votes_a": a, "votes_b": b, "raters": a + b,
                     "majority": "A" if a > b else "B" if b > a else None, "tie": a == b})
    schema = pa.schema([("item_id", pa.string()), ("votes_a", pa.int32()),
                        ("votes_b", pa.int32()), ("raters", pa.int32()),
                        ("majority", pa.string()), ("tie", pa.bool_())])
    return pa.Table.from_pylist(rows, schema=schema)


def persona_agreement(majority: pa.Table, roleplay: pa.Table, items: pa.Table) -> pa.Table:
    """Cohen's kappa between the human majority and each role-player (and variant), per
    persona: the paper's per-persona view. Items as in `agreement` (ties left out)."""
    persona_of = dict(zip(items.column("item_id").to_pylist(),
                          items.column("persona_id").to_pylist(), strict=True))
    human = {r["item_id"]: r["majority"] for r in majority.to_pylist() if r["majority"]}
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for r in roleplay.to_pylist():
        iid = r["item_id"]
        if r["choice"] in ("A", "B") and iid in human and iid in persona_of:
            key = (r["roleplay_model"], r.get("roleplay_variant") or "full", persona_of[iid])
            groups.setdefault(key, []).append((human[iid], r["choice"]))
    rows = [{"roleplay_model": m, "roleplay_variant": v, "persona_id": p, "items": len(pairs),
             "kappa": cohen_kappa([h for h, _ in pairs], [c for _, c in pairs]),
             "agreement": float(np.mean([h == c for h, c in pairs]))}
            for (m, v, p), pairs in sorted(groups.items())]
    schema = pa.schema([("roleplay_model", pa.string()), ("roleplay_variant", pa.string()),
                        ("persona_id", pa.string()), ("items", pa.int32()),
                        ("kappa", pa.float64()), ("agreement", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def agreement(majority: pa.Table, roleplay: pa.Table) -> pa.Table:
    """Cohen's kappa between the human majority and each role-playing model's choices, per
    role-play variant (full / summary / cot).

    Items: those with a majority (no tie) that the model answered without error.
    """
    human = {r["item_id"]: r["majority"] for r in majority.to_pylist() if r["majority"]}
    ties = sum(1 for r in majority.to_pylist() if r["tie"])
    by_model: dict[tuple[str, str], dict[str, str]] = {}
    for r in roleplay.to_pylist():
        if r["choice"] in ("A", "B"):
            key = (r["roleplay_model"], r.get("roleplay_variant") or "full")
            by_model.setdefault(key, {})[r["item_id"]] = r["choice"]
    rows = []
    for (model, variant) in sorted(by_model):
        chosen = by_model[(model, variant)]
        shared = sorted(set(human) & set(chosen))
        h = [human[i] for i in shared]
        m = [chosen[i] for i in shared]
        rows.append({
            "roleplay_model": model, "roleplay_variant": variant, "items": len(shared),
            "ties_excluded": ties, "kappa": cohen_kappa(h, m),
            "agreement": float(np.mean([x == y for x, y in zip(h, m, strict=True)])) if shared else math.nan,
        })
    schema = pa.schema([("roleplay_model", pa.string()), ("roleplay_variant", pa.string()),
                        ("items", pa.int32()), ("ties_excluded", pa.int32()),
                        ("kappa", pa.float64()), ("agreement", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)
