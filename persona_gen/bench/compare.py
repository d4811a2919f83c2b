"""`bench compare RUN_A RUN_B`: how a model (a trained one, say) differs from another (its base).

Per mode: accuracy of A and of B and the difference B - A with a seeded bootstrap 95%
interval. Samples are scored as the report scores them (cut samples count as failures). When
both runs answered the same items (persona, prompt, sample index: same config, same seed)
the bootstrap resamples those items *paired*, which removes the between-item spread from the
interval; otherwise each side is resampled on its own. Per attribute: the leave-one-out
kappa of A and of B and its difference, with a bootstrap over each side's twin pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from persona_gen.bench.metrics import _cut_as_failure, _in_grid, _records_table, _seed, cohen_kappa

Key = tuple[str, str, int]
"""(persona_id, prompt_id, sample_index): one scored item."""


@dataclass(frozen=True)
class ModeDiff:
    mode: str
    model_a: str
    model_b: str
    n_a: int
    n_b: int
    paired: int
    """Items scored in both runs (0: the interval is from independent resamples)."""
    accuracy_a: float
    accuracy_b: float
    diff: float
    """accuracy_b - accuracy_a."""
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class AttributeDiff:
    attribute: str
    model_a: str
    model_b: str
    pairs_a: int
    pairs_b: int
    kappa_a: float
    kappa_b: float
    diff: float
    """kappa_b - kappa_a."""
    ci_low: float
    ci_high: float


def _scored(samples: pa.Table, model: str) -> dict[str, dict[Key, int]]:
    """mode -> item -> score (0/1) for one model's grid rows."""
    out: dict[str, dict[Key, int]] = {}
    for r in map(_cut_as_failure, samples.to_pylist()):
        if r["model"] != model or not _in_grid(r) or r["verdict"] is None:
            continue
        out.setdefault(r["mode"], {})[(r["persona_id"], r["prompt_id"], int(r["sample_index"]))] = \
            int(r["verdict"])
    return out


def _interval(stats: np.ndarray) -> tuple[float, float]:
    if stats.size == 0 or np.all(np.isnan(stats)):
        return math.nan, math.nan
    lo, hi = np.nanpercentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def mode_diffs(a: pa.Table, b: pa.Table, model_a: str, model_b: str, samples: int = 1000,
               seed: int = 0) -> list[ModeDiff]:
    sa, sb = _scored(a, model_a), _scored(b, model_b)
    out = []
    for mode in sorted(set(sa) & set(sb), key=_mode_rank):
        xa, xb = sa[mode], sb[mode]
        va, vb = np.array(list(xa.values()), float), np.array(list(xb.values()), float)
        rng = np.random.default_rng(_seed([seed, *map(ord, mode)]))
        common = sorted(set(xa) & set(xb))
        if common:  # paired: the same items in both runs
            pa_, pb_ = (np.array([x[k] for k in common], float) for x in (xa, xb))
            idx = rng.integers(0, len(common), size=(samples, len(common)))
            stats = pb_[idx].mean(axis=1) - pa_[idx].mean(axis=1)
            diff = float(pb_.mean() - pa_.mean())
        else:
            ia = rng.integers(0, va.size, size=(samples, va.size))
            ib = rng.integers(0, vb.size, size=(samples, vb.size))
            stats = vb[ib].mean(axis=1) - va[ia].mean(axis=1)
            diff = float(vb.mean() - va.mean())
        lo, hi = _interval(stats)
        out.append(ModeDiff(mode=mode, model_a=model_a, model_b=model_b, n_a=va.size,
                            n_b=vb.size, paired=len(common), accuracy_a=float(va.mean()),
                            accuracy_b=float(vb.mean()), diff=diff, ci_low=lo, ci_high=hi))
    return out


def _twin_pairs(samples: pa.Table, model: str) -> dict[str, list[tuple[int, int]]]:
    """attribute -> (full verdict, ablated verdict) pairs, for one model's LOO twins."""
    rows = [r for r in map(_cut_as_failure, samples.to_pylist())
            if r["model"] == model and r["verdict"] is not None]
    key = ("mode", "persona_id", "prompt_id", "sample_index")
    full = {tuple(r[c] for c in key): int(r["verdict"]) for r in rows
            if r["ablated_attribute"] is None}
    out: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        if r["ablated_attribute"] is not None and (t := tuple(r[c] for c in key)) in full:
            out.setdefault(r["ablated_attribute"], []).append((full[t], int(r["verdict"])))
    return out


def _kappa_boot(pairs: list[tuple[int, int]], samples: int,
                rng: np.random.Generator) -> np.ndarray:
    arr = np.array(pairs, int)
    idx = rng.integers(0, len(arr), size=(samples, len(arr)))
    return np.array([cohen_kappa(arr[i, 0].tolist(), arr[i, 1].tolist()) for i in idx])


def attribute_diffs(a: pa.Table, b: pa.Table, model_a: str, model_b: str,
                    samples: int = 1000, seed: int = 0) -> list[AttributeDiff]:
    pa_, pb_ = _twin_pairs(a, model_a), _twin_pairs(b, model_b)
    out = []
    for attribute in sorted(set(pa_) & set(pb_)):
        xa, xb = pa_[attribute], pb_[attribute]
        ka = cohen_kappa([p[0] for p in xa], [p[1] for p in xa])
        kb = cohen_kappa([p[0] for p in xb], [p[1] for p in xb])
        rng = np.random.default_rng(_seed([seed, *map(ord, attribute)]))
        lo, hi = _interval(_kappa_boot(xb, samples, rng) - _kappa_boot(xa, samples, rng))
        out.append(AttributeDiff(attribute=attribute, model_a=model_a, model_b=model_b,
                                 pairs_a=len(xa), pairs_b=len(xb), kappa_a=ka, kappa_b=kb,
                                 diff=kb - ka, ci_low=lo, ci_high=hi))
    return out


def _mode_rank(mode: str) -> int:
    from persona_gen.bench.config import ALL_MODES

    return ALL_MODES.index(mode) if mode in ALL_MODES else len(ALL_MODES)  # type: ignore[arg-type]


def mode_diff_table(rows: Sequence[ModeDiff]) -> pa.Table:
    return _records_table(rows, ModeDiff)


def attribute_diff_table(rows: Sequence[AttributeDiff]) -> pa.Table:
    return _records_table(rows, AttributeDiff)


def compare_plot(modes: Sequence[ModeDiff], attributes: Sequence[AttributeDiff]) -> bytes:
    """Differences B - A with their 95% intervals: accuracy per mode, kappa per attribute."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("accuracy B - A per mode", [(m.mode, m) for m in modes])]
    if attributes:
        panels.append(("LOO kappa B - A per attribute", [(a.attribute, a) for a in attributes]))
    fig = Figure(figsize=(6.5 * len(panels), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    for i, (title, items) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ys = range(len(items))
        diffs = [_nan0(d.diff) for _, d in items]
        err = [[max(0.0, _nan0(d.diff) - _nan0(d.ci_low)) for _, d in items],
               [max(0.0, _nan0(d.ci_high) - _nan0(d.diff)) for _, d in items]]
        ax.errorbar(diffs, list(ys), xerr=err, fmt="o", capsize=3)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(list(ys), [name for name, _ in items])
        ax.set_title(title)
        ax.set_xlabel("difference (95% bootstrap interval)")
    first = modes[0] if modes else None
    if first is not None:
        fig.suptitle(f"A = {first.model_a}, B = {first.model_b}", fontsize="small")
    fig.tight_layout()
    from persona_gen.bench.report import _png

    return _png(fig)


def _nan0(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else float(x)


def compare_markdown(modes: Sequence[ModeDiff], attributes: Sequence[AttributeDiff],
                     run_a: str, run_b: str, png: str) -> str:
    def f(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:+.3f}"

    lines = ["# PERSONA Bench comparison", "", f"A: `{run_a}`", f"B: `{run_b}`", "",
             "## Accuracy per mode (B - A, 95% bootstrap interval)", "",
             "| mode | model A | model B | items A | items B | paired | acc. A | acc. B | B - A "
             "| 95% interval |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in modes:
        lines.append(f"| {m.mode} | {m.model_a} | {m.model_b} | {m.n_a} | {m.n_b} | {m.paired} | "
                     f"{m.accuracy_a:.3f} | {m.accuracy_b:.3f} | {f(m.diff)} | "
                     f"[{f(m.ci_low)}, {f(m.ci_high)}] |")
    if attributes:
        lines += ["", "## Leave-one-out kappa per attribute (B - A)", "",
                  "| attribute | pairs A | pairs B | kappa A | kappa B | B - A | 95% interval |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for a in attributes:
            lines.append(f"| {a.attribute} | {a.pairs_a} | {a.pairs_b} | {a.kappa_a:.3f} | "
                         f"{a.kappa_b:.3f} | {f(a.diff)} | [{f(a.ci_low)}, {f(a.ci_high)}] |")
    lines += ["", f"![differences]({png})", ""]
    return "\n".join(lines)


__all__ = ["AttributeDiff", "ModeDiff", "attribute_diff_table", "attribute_diffs",
           "compare_markdown", "compare_plot", "mode_diff_table", "mode_diffs"]
