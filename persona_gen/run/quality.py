"""The run's quality figures, from storage, next to the paper's own (PERSONA, arXiv 2407.17387).

    truncation     rows cut at their stage's token limit: first try, and still after the
                   one retry (flagged by `<stage>_finish_reason` = 'length')
    consistency    first-round rejection rate of the persona checks, by rule and by judge
                   (paper, personas: about 8.5% dropped), and over every round the people
                   drawn, rejected and kept
    fidelity       the kept personas' census fidelity, judged against sampling noise
    prompts        share of the source prompts kept after every filter (question mark,
                   five words, controversy classifier; paper, prompts: 3,868 of 8,011),
                   and the classifier's own share of its candidates (the paper gives none)
    verification   share of pairs where the role-playing judge preferred the revision, with
                   a 95% interval (paper, feedback pairs: 96%)

`summary` is what the manifest stores under `counts.quality` and `status` prints; like the
stage counts it is read from committed files, never from memory, so it is right after
resumes and kills.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from persona_gen.log import get_logger
from persona_gen.run import recipe as R
from persona_gen.run.scan import tally
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

PAPER_VERIFIED_SHARE = 0.96
PAPER_DROPPED_SHARE = 0.085
PAPER_PROMPTS_KEPT, PAPER_PROMPT_CANDIDATES = 3868, 8011
PAPER_KEPT_SHARE = round(PAPER_PROMPTS_KEPT / PAPER_PROMPT_CANDIDATES, 4)
KEPT_SHARE_BAND = (0.5, 1.5)
"""A run keeping less than half or more than 1.5 times the paper's share of the source
prompts after every filter gets a warning (our choice of band: the paper reports one
figure, and PRISM-like sources differ; far outside it, the classifier's wording or model is
the likelier cause)."""
NOT_FILTERS = ("limit",)
"""Steps that select rather than filter: `prompts.limit` takes a seeded subset, whatever
the prompts say, so it is left out of the kept share."""


def truncation(run: RunRef, stages: Iterable[R.Stage]) -> dict[str, dict[str, int]]:
    """Per stage: rows committed, rows cut on the first try (retried) and rows still cut."""
    out = {}
    for s in stages:
        reason, retried = f"{s.name}_finish_reason", f"{s.name}_retried"
        n = tally(run.child(s.writes), equal={reason: "length", retried: True})
        out[s.name] = {"rows": n.rows, "retried": n.equal[retried], "cut": n.equal[reason]}
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share k/n (sound at shares near 0 or 1 and small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def verification(run: RunRef) -> dict[str, Any] | None:
    """Share of judged pairs where the judge preferred the revision, with its interval."""
    loc = run.child(R.stage("verify").writes)
    if not objects.list_files(loc, ".parquet"):
        return None
    n = tally(loc, equal={"preferred": "revision"})
    judged, revision = n.rows, n.equal["preferred"]
    return {"judged": judged, "preferred_revision": revision,
            "share": round(revision / judged, 4) if judged else None,
            "ci95": list(wilson(revision, judged)), "paper_share": PAPER_VERIFIED_SHARE}


def consistency(run: RunRef) -> dict[str, Any] | None:
    """The persona build's first-round rejections, next to the paper's dropped share."""
    loc = run.child(R.PERSONA_STATS)
    if not objects.exists(loc):
        return None
    stats = objects.read_json(loc)
    first = stats.get("first_round") or {}
    personas = int(first.get("personas") or 0)

    def rate(n: int) -> float | None:
        return round(n / personas, 4) if personas else None

    rule, judge = int(first.get("rejected_by_rule") or 0), int(first.get("rejected_by_judge") or 0)
    return {"on_inconsistent": stats.get("on_inconsistent"), "personas": personas,
            "rejected_by_rule": rule, "rejected_by_judge": judge,
            "rule_rate": rate(rule), "judge_rate": rate(judge), "rate": rate(rule + judge),
            "dropped": stats.get("dropped"), "resampled": stats.get("resampled"),
            "paper_rate": PAPER_DROPPED_SHARE,
            # Over every round: who was drawn, rejected and kept (personas.n asked for).
            "requested": stats.get("requested"), "drawn": stats.get("drawn"),
            "kept": stats.get("kept"), "total_rejected_by_rule": stats.get("rejected_by_rule"),
            "total_rejected_by_judge": stats.get("rejected_by_judge"),
            "unusable": stats.get("unusable"), "surplus": stats.get("surplus")}


def classifier(run: RunRef) -> dict[str, Any] | None:
    """The share of source prompts kept after every filter, next to the paper's figure of
    the same kind (3,868 of PRISM's 8,011 after all its filters), and the classifier's own
    share of its candidates (no paper figure: the paper does not count the prompts left
    before its classifier). A warning note when the all-filters share is far off the paper."""
    loc = run.child(R.PROMPT_STATS)
    if not objects.exists(loc):
        return None
    stats = objects.read_json(loc)
    steps = stats.get("steps", [])
    step = next((s for s in steps if s.get("name") == "controversy"), None)
    if step is None:
        return None
    seen, kept = int(step.get("seen") or 0), int(step.get("kept") or 0)
    # Each filter's kept share, multiplied: the share of the source file that survives all of
    # them (the final count over the rows read when no `limit` subset was taken).
    after_all: float | None = 1.0
    for s in steps:
        if s.get("name") in NOT_FILTERS:
            continue
        step_seen = int(s.get("seen") or 0)
        after_all = after_all * int(s.get("kept") or 0) / step_seen if (
            step_seen and after_all is not None) else None
    share = round(after_all, 4) if after_all is not None else None
    out: dict[str, Any] = {
        "model": stats.get("classifier"), "source_rows": stats.get("rows"),
        "candidates": seen, "kept": kept,
        "classifier_share": round(kept / seen, 4) if seen else None,
        "share": share, "paper_share": PAPER_KEPT_SHARE,
    }
    low, high = (PAPER_KEPT_SHARE * f for f in KEPT_SHARE_BAND)
    if share is not None and not low <= share <= high:
        out["note"] = (f"{share:.0%} of the source prompts survive every filter, far from the "
                       f"paper's {PAPER_KEPT_SHARE:.0%} ({PAPER_PROMPTS_KEPT:,} of "
                       f"{PAPER_PROMPT_CANDIDATES:,}); check the classifier's model and its "
                       "classifier_instruction")
    return out


def fidelity(run: RunRef) -> dict[str, Any] | None:
    """The kept personas' census fidelity (personas/fidelity.json), per attribute: TVD, the
    expected TVD and 95th percentile of an ideal draw of the same n, and the flag."""
    loc = run.child(R.FIDELITY)
    if not objects.exists(loc):
        return None
    report = objects.read_json(loc)
    return {"n": report.get("n"), "threshold": report.get("threshold"),
            "noise_draws": report.get("noise_draws"), "flagged": report.get("flagged", []),
            "attributes": [{k: a.get(k) for k in ("attribute", "tvd", "noise_floor",
                                                  "noise_p95", "flagged")}
                           for a in report.get("attributes", [])]}


def summary(run: RunRef, stages: Iterable[R.Stage]) -> dict[str, Any]:
    """Every quality figure the run has so far (a section is absent until its phase ran)."""
    out: dict[str, Any] = {"truncation": truncation(run, stages)}
    for name, figure in (("consistency", consistency(run)), ("fidelity", fidelity(run)),
                         ("classifier", classifier(run)), ("verification", verification(run))):
        if figure is not None:
            out[name] = figure
    return out


def record(manifest_counts: dict[str, Any], run: RunRef, stages: Iterable[R.Stage]) -> None:
    """Store the summary in the manifest's counts; log the classifier note once."""
    before = (manifest_counts.get("quality") or {}).get("classifier", {}).get("note")
    manifest_counts["quality"] = q = summary(run, stages)
    note = q.get("classifier", {}).get("note")
    if note and note != before:
        get_logger(stage="prompts").warning("classifier_kept_share", note=note)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def lines(q: dict[str, Any]) -> list[str]:
    """The summary as the lines `status` prints."""
    out = []
    cut = {k: v for k, v in q.get("truncation", {}).items() if v["rows"]}
    if cut:
        out.append("cut at the token limit (retried / still cut, of rows): " + ", ".join(
            f"{k} {v['retried']}/{v['cut']} of {v['rows']}" for k, v in cut.items()))
    c = q.get("consistency")
    if c:
        if c.get("drawn") is not None:
            line = (f"personas: kept {c['kept']:,} of {c['requested']:,} asked for, from "
                    f"{c['drawn']:,} census people drawn (rejected by the rules "
                    f"{c['total_rejected_by_rule']:,}, by the judge "
                    f"{c['total_rejected_by_judge']:,}")
            if c["on_inconsistent"] == "drop":
                line += (f"; unusable output {c['unusable']:,}; passed but beyond the count "
                         f"{c['surplus']:,})")
            else:
                line += f"; slots redrawn {c['resampled']:,})"
            out.append(line)
        out.append(f"consistency, first round: {_pct(c['rate'])} of {c['personas']} personas "
                   f"rejected (rules {_pct(c['rule_rate'])}, judge {_pct(c['judge_rate'])}; "
                   f"on_inconsistent: {c['on_inconsistent']}); paper: "
                   f"{_pct(c['paper_rate'])} dropped")
    f = q.get("fidelity")
    if f and f.get("attributes"):
        from persona_gen.census.fidelity import fidelity_lines

        rule = (f"above the fixed threshold {f['threshold']:g}" if f.get("threshold") is not None
                else "above the 95th percentile of an ideal draw of the same n")
        out.append(f"census fidelity of the {f['n']:,} kept personas (flagged: TVD {rule}; "
                   f"{len(f['flagged'])} flagged):")
        out += ["  " + ln for ln in fidelity_lines(
            [(a["attribute"], a["tvd"], a["noise_floor"], a.get("noise_p95"), a["flagged"])
             for a in f["attributes"]])]
    k = q.get("classifier")
    if k:
        out.append(f"prompts kept after every filter: {_pct(k['share'])} of the source "
                   f"(the classifier kept {k['kept']} of its {k['candidates']} candidates, "
                   f"{_pct(k.get('classifier_share'))}); paper: {_pct(k['paper_share'])} "
                   f"after every filter")
        if k.get("note"):
            out.append(f"warning: {k['note']}")
    v = q.get("verification")
    if v:
        lo, hi = v["ci95"]
        out.append(f"verification: judge preferred the revision in {v['preferred_revision']} "
                   f"of {v['judged']} pairs ({_pct(v['share'])}, 95% CI {_pct(lo)}-"
                   f"{_pct(hi)}); paper: {_pct(v['paper_share'])}")
    return out
