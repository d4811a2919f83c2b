"""Intersectionality: bench accuracy on disjoint populations defined by attribute values.

As the public persona-bench package's intersectionality study does it, a population is a
combination of attribute values (sex = Female and race = Black, say); the main evaluation is
scored on each population's personas on its own, and accuracies are compared across the
populations. Here `bench.intersections` lists attribute pairs (or any tuples); every value
combination found among the benched personas with at least `bench.intersection_min_personas`
personas is a population (smaller ones are left out: their accuracy is noise). The samples
are those of the main grid, scored as everywhere else (cut samples count as failures), so
the study costs no model calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from persona_gen.bench.metrics import (
    _cut_as_failure,
    _in_grid,
    _records_table,
    _seed,
    bootstrap_std,
)
from persona_gen.personas.values import is_missing


@dataclass(frozen=True)
class PopulationScore:
    model: str
    mode: str
    attributes: str
    """The attributes that define the population, joined by ' x '."""
    population: str
    """Their values, 'attribute=value' joined by ' & '."""
    personas: int
    samples: int
    accuracy: float
    bootstrap_std: float
    gap: float
    """accuracy minus the accuracy over every persona with a value for these attributes."""


def populations(personas: pa.Table, attributes: Sequence[str],
                min_personas: int) -> dict[str, set[str]]:
    """Population label -> its persona ids, for one attribute tuple (disjoint by construction)."""
    out: dict[str, set[str]] = {}
    for row in personas.to_pylist():
        values = [row.get(a) for a in attributes]
        if any(is_missing(v) for v in values):
            continue
        label = " & ".join(f"{a}={v}" for a, v in zip(attributes, values, strict=True))
        out.setdefault(label, set()).add(str(row["persona_id"]))
    return {k: v for k, v in sorted(out.items()) if len(v) >= min_personas}


def intersection_scores(samples: pa.Table, personas: pa.Table,
                        groups: Sequence[Sequence[str]], min_personas: int,
                        bootstrap_samples: int, seed: int) -> list[PopulationScore]:
    """Accuracy per (model, mode, attribute tuple, population) over the grid's samples."""
    rows = [_cut_as_failure(r) for r in samples.to_pylist()
            if _in_grid(r) and r["verdict"] is not None]
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault((r["model"], r["mode"]), []).append(r)
    benched = {r["persona_id"] for r in rows}
    people = personas.filter(pa.array([str(p) in benched for p in
                                       personas.column("persona_id").to_pylist()], pa.bool_()))
    out = []
    for attrs in groups:
        pops = populations(people, attrs, min_personas)
        if not pops:
            continue
        covered = set().union(*pops.values())
        name = " x ".join(attrs)
        for (model, mode), group in sorted(by_key.items()):
            overall = [int(r["verdict"]) for r in group if r["persona_id"] in covered]
            base = float(np.mean(overall)) if overall else math.nan
            for label, ids in pops.items():
                v = [int(r["verdict"]) for r in group if r["persona_id"] in ids]
                acc = float(np.mean(v)) if v else math.nan
                out.append(PopulationScore(
                    model=model, mode=mode, attributes=name, population=label,
                    personas=len(ids), samples=len(v), accuracy=acc,
                    bootstrap_std=bootstrap_std(v, bootstrap_samples,
                                                _seed([seed, *map(ord, f"{model}/{mode}/{label}")])),
                    gap=acc - base))
    return out


def intersection_table(rows: Sequence[PopulationScore]) -> pa.Table:
    return _records_table(rows, PopulationScore)


__all__ = ["PopulationScore", "intersection_scores", "intersection_table", "populations"]
