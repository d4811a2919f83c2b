"""Bench metrics as pure functions: accuracy with a bootstrap spread, pass@k, Cohen's kappa.

Cohen's kappa convention for the degenerate case: when the expected agreement p_e is 1
(both label sets are the same single constant label) kappa = (p_o - p_e) / (1 - p_e) is
0/0. We return 1.0 there: two raters that agree on every item agree perfectly, and in
the leave-one-out study "the attribute changed no verdict" must read as kappa 1 (no
effect), not as missing. (p_e = 1 forces p_o = 1, so no other case is 0/0.) Two
*different* constant label sets give p_o = p_e = 0 and kappa 0. No items: NaN.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Agreement beyond chance between two raters labelling the same items (any labels)."""
    if len(a) != len(b):
        raise ValueError(f"kappa needs paired labels, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    labels = set(a) | set(b)
    p_e = sum((list(a).count(lab) / n) * (list(b).count(lab) / n) for lab in labels)
    if math.isclose(p_e, 1.0):
        return 1.0 if math.isclose(p_o, 1.0) else 0.0
    return (p_o - p_e) / (1.0 - p_e)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def bootstrap_std(values: Sequence[float], samples: int, seed: int) -> float:
    """Std of the mean over `samples` resamples with replacement (fixed seed: reproducible)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan
    if x.size == 1:
        return 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(samples, x.size))
    return float(x[idx].mean(axis=1).std(ddof=1)) if samples > 1 else 0.0


@dataclass(frozen=True)
class ModeScore:
    model: str
    mode: str
    judged: int
    """Samples with a judge's verdict."""
    cut: int
    """Reasoning-mode samples cut before their final-answer marker: never judged, scored 0
    (a failure) in accuracy and pass@k, so a mode is not flattered by the answers it did
    not finish."""
    failed: int
    """Samples without an outcome (engine or judge error), left out of accuracy."""
    accuracy: float
    bootstrap_std: float
    pass_at_1: float
    pass_at_k: float
    k: int


def _group(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def mode_scores(samples: pa.Table, k: int, bootstrap_samples: int, seed: int) -> list[ModeScore]:
    """Accuracy and pass@k per (model, mode) over full-persona rows.

    `samples`: one row per sample with model, mode, persona_id, prompt_id,
    ablated_attribute, verdict (null when the answer or the judge failed) and, optionally,
    `cut` (true: cut before its answer marker). A cut sample counts as a failure (verdict 0)
    everywhere; samples that failed otherwise are left out. pass@k averages over requests
    the unbiased estimate from that request's scored samples; a request with fewer than k
    scored samples is left out of pass@k (reported through `failed`).
    """
    rows = [_cut_as_failure(r) for r in samples.to_pylist() if _in_grid(r)]
    # Canonical order: the bootstrap resamples positions, so a resumed run (rows in another
    # order) must present the same sequence to get the same spread.
    rows.sort(key=lambda r: (r["persona_id"], r["prompt_id"], r["sample_index"]))
    out = []
    for (model, mode), group in sorted(_group(rows, ("model", "mode")).items()):
        verdicts = [int(r["verdict"]) for r in group if r["verdict"] is not None]
        cut = sum(1 for r in group if r.get("cut"))
        per_request = _group(group, ("persona_id", "prompt_id"))
        p1, pk = [], []
        for reqs in per_request.values():
            v = [int(r["verdict"]) for r in reqs if r["verdict"] is not None]
            if v:
                p1.append(pass_at_k(len(v), sum(v), 1))
            if len(v) >= k:
                pk.append(pass_at_k(len(v), sum(v), k))
        # One seed per (model, mode) so adding a model does not change another's spread.
        sub_seed = [seed, *map(ord, f"{model}/{mode}")]
        out.append(ModeScore(
            model=model, mode=mode, judged=len(verdicts) - cut, cut=cut,
            failed=len(group) - len(verdicts),
            accuracy=float(np.mean(verdicts)) if verdicts else math.nan,
            bootstrap_std=bootstrap_std(verdicts, bootstrap_samples, _seed(sub_seed)),
            pass_at_1=float(np.mean(p1)) if p1 else math.nan,
            pass_at_k=float(np.mean(pk)) if pk else math.nan,
            k=k,
        ))
    return out


@dataclass(frozen=True)
class PassAtK:
    model: str
    mode: str
    k: int
    pass_at_k: float
    requests: int
    """Requests averaged: those with at least k_max scored samples (the same set at every
    k, so the curve is monotone; at k = k_max it is the accuracy table's pass@k)."""


def pass_at_k_curve(samples: pa.Table, k_max: int) -> list[PassAtK]:
    """pass@k for k = 1..k_max per (model, mode), full-persona rows, cut samples scored 0.

    Each point is the mean over requests of the unbiased estimate 1 - C(n-c, k)/C(n, k)
    (n scored samples, c correct), over the requests with n >= k_max. Each request's
    estimate does not decrease with k, so neither does the mean over a fixed set.
    """
    rows = [_cut_as_failure(r) for r in samples.to_pylist()
            if _in_grid(r) and (r["verdict"] is not None or r.get("cut"))]
    out = []
    for (model, mode), group in sorted(_group(rows, ("model", "mode")).items()):
        counts = [(len(reqs), sum(int(r["verdict"]) for r in reqs))
                  for reqs in _group(group, ("persona_id", "prompt_id")).values()]
        full = [(n, c) for n, c in counts if n >= k_max]
        for k in range(1, k_max + 1):
            value = float(np.mean([pass_at_k(n, c, k) for n, c in full])) if full else math.nan
            out.append(PassAtK(model=model, mode=mode, k=k, pass_at_k=value, requests=len(full)))
    return out


def curve_table(points: Sequence[PassAtK]) -> pa.Table:
    return _records_table(points, PassAtK)


def _in_grid(row: dict) -> bool:
    """A full-persona row of the bench grid (not a leave-one-out row or its added twin)."""
    return row.get("ablated_attribute") is None and row.get("study", "main") != "loo"


def _cut_as_failure(row: dict) -> dict:
    """A sample cut before its answer marker has no verdict; score it 0."""
    return {**row, "verdict": 0} if row.get("cut") else row


def _seed(parts: list[int]) -> int:
    return int(np.random.SeedSequence(parts).generate_state(1)[0])


@dataclass(frozen=True)
class AttributeAgreement:
    model: str
    attribute: str
    pairs: int
    """Samples judged both with and without the attribute."""
    kappa: float
    agreement: float
    accuracy_full: float
    accuracy_ablated: float
    judge_persona: str
    """The persona the judge role-played on the ablated rows: 'reduced' (the package's way)
    or 'full'."""


def loo_kappas(samples: pa.Table, loo_mode: str) -> list[AttributeAgreement]:
    """Per model and attribute: kappa between full-persona and ablated verdicts.

    Twins are matched on (model, persona, prompt, sample index) within `loo_mode`; pairs
    where either verdict is missing are dropped. `attribute` 'all_attributes' is the twin
    with every listed attribute removed.
    """
    rows = [r for r in map(_cut_as_failure, samples.to_pylist())
            if r["mode"] == loo_mode and r["verdict"] is not None]
    key = ("model", "persona_id", "prompt_id", "sample_index")
    full = {tuple(r[c] for c in key): int(r["verdict"]) for r in rows
            if r["ablated_attribute"] is None}
    out = []
    ablated = _group([r for r in rows if r["ablated_attribute"] is not None],
                     ("model", "ablated_attribute"))
    for (model, attribute), group in sorted(ablated.items()):
        pairs = [(full[t], int(r["verdict"])) for r in group
                 if (t := tuple(r[c] for c in key)) in full]
        a = [p[0] for p in pairs]
        b = [p[1] for p in pairs]
        out.append(AttributeAgreement(
            model=model, attribute=attribute, pairs=len(pairs), kappa=cohen_kappa(a, b),
            agreement=float(np.mean([x == y for x, y in pairs])) if pairs else math.nan,
            accuracy_full=float(np.mean(a)) if a else math.nan,
            accuracy_ablated=float(np.mean(b)) if b else math.nan,
            judge_persona=_variant(group),
        ))
    return out


def _variant(rows: list[dict]) -> str:
    # Tables from before the option existed have no judge_persona: the judge saw the full one.
    found = sorted({r.get("judge_persona") or "full" for r in rows})
    return "/".join(found)


def scores_table(scores: Sequence[ModeScore]) -> pa.Table:
    return _records_table(scores, ModeScore)


def loo_table(rows: Sequence[AttributeAgreement]) -> pa.Table:
    return _records_table(rows, AttributeAgreement)


def _records_table(records: Sequence[object], cls: type) -> pa.Table:
    from dataclasses import asdict, fields

    names = [f.name for f in fields(cls)]
    if not records:
        types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
        return pa.table({f.name: pa.array([], types[str(f.type)]) for f in fields(cls)})
    return pa.Table.from_pylist([asdict(r) for r in records]).select(names)  # type: ignore[call-overload]
