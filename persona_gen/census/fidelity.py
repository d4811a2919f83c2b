"""How closely a sample reproduces the weighted census population, attribute by attribute.

For each attribute: the total-variation distance (TVD, half the L1 distance) between the
sample's category shares and the population's weighted shares, with the people missing a
value counted as a category of their own. Age is compared in 10-year bins and income by
its weighted decile. The population is re-read with the sample's own filters (from its
metadata), in record batches: per batch only distinct code combinations and their summed
weights are kept, and they are labelled once at the end with each file's codebook year.

Judged against sampling noise: even an ideal weighted draw of n people lands a TVD above
zero (at n = 1,586, about 0.03 on a 10-bin attribute), so a fixed cap measures luck. For
each attribute the report simulates `noise_draws` ideal weighted draws of the same n from
the population's weighted shares (multinomial, from a fixed seed per attribute) and gives
their mean TVD (`noise_floor`, close to 0.5 * sum sqrt(2 p (1 - p) / (pi n))) and their 95th
percentile (`noise_p95`). An attribute is flagged when its TVD is above that percentile: an
ideal draw does so for about 1 attribute in 20. A fixed `threshold` is still available (off
by default); when given, it decides the flags instead.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from persona_gen.census import attributes_map as amap
from persona_gen.census.read import DEFAULT_BLOCK_BYTES
from persona_gen.census.sample import (
    AGE_BIN_YEARS,
    METADATA_KEY,
    PopulationInfo,
    read_metadata,
)
from persona_gen.census.universe import (
    Filters,
    IncomeHistogram,
    Source,
    batches,
    core,
    keep,
    open_sources,
    read_columns,
    with_state,
)
from persona_gen.config.base import StrictModel
from persona_gen.errors import DataError
from persona_gen.storage.settings import S3Settings

NONE_LABEL = "(none)"
LEGACY_THRESHOLD = 0.05
"""The fixed cap reports used before the noise band (kept for `--threshold 0.05`)."""
NOISE_DRAWS = 2000
NOISE_SEED = 0
NOISE_QUANTILE = 0.95


class CategoryShare(StrictModel):
    label: str
    sample: float
    population: float


class AttributeFidelity(StrictModel):
    attribute: str
    tvd: float
    noise_floor: float
    """Expected TVD of an ideal weighted draw of the same n (mean of the simulated draws)."""
    noise_p95: float | None = None
    """95th percentile of those draws' TVD (None in reports from before the noise band)."""
    flagged: bool
    """TVD above noise_p95 (or above the report's threshold, when one is set)."""
    categories: list[CategoryShare]
    """Every category: bins in order for age and income decile, else largest first."""


class FidelityReport(StrictModel):
    sample: str
    sources: list[str]
    layout: str
    n: int
    seed: int
    threshold: float | None = None
    """A fixed cap that decided the flags instead of the noise band; None: the noise band."""
    noise_draws: int = NOISE_DRAWS
    noise_seed: int = NOISE_SEED
    filters: dict[str, object]
    population: PopulationInfo
    attributes: list[AttributeFidelity]
    flagged: list[str]
    not_compared: dict[str, str]
    """Attribute -> why it is not in the comparison (e.g. the layout lacks it)."""

    @property
    def rule(self) -> str:
        """What flags an attribute, in words."""
        if self.threshold is not None:
            return f"TVD above the fixed threshold {self.threshold:g}"
        return ("TVD above the 95th percentile of an ideal weighted draw of the same n "
                f"({self.noise_draws:,} simulated draws)")

    def table_lines(self) -> list[str]:
        return fidelity_lines([(a.attribute, a.tvd, a.noise_floor, a.noise_p95, a.flagged)
                               for a in self.attributes])


def fidelity_lines(rows: Sequence[tuple[str, float, float, float | None, bool]]) -> list[str]:
    """The fidelity table as text lines: attribute, TVD, expected TVD under sampling noise,
    its 95th percentile, flag (`fidelity` command and `status` print the same)."""
    width = max([len(r[0]) for r in rows] + [9])
    lines = [f"{'attribute':<{width}}  {'TVD':>6}  {'expect':>6}  {'p95':>6}  flag"]
    for attr, d, expected, p95, flagged in rows:
        band = "     -" if p95 is None else f"{p95:6.3f}"
        lines.append(f"{attr:<{width}}  {d:6.3f}  {expected:6.3f}  {band}  "
                     f"{'ABOVE' if flagged else ''}".rstrip())
    return lines


def tvd(sample: dict[str, float], population: dict[str, float]) -> float:
    """Total-variation distance between two share tables (each summing to 1)."""
    keys = set(sample) | set(population)
    return 0.5 * sum(abs(sample.get(k, 0.0) - population.get(k, 0.0)) for k in keys)


def noise_floor(population: dict[str, float], n: int) -> float:
    """Normal approximation of an ideal draw's expected TVD (checks `noise_band`)."""
    return 0.5 * sum(math.sqrt(2 * p * (1 - p) / (math.pi * n)) for p in population.values())


def noise_band(population: dict[str, float], n: int, draws: int = NOISE_DRAWS,
               seed: int = NOISE_SEED, attribute: str = "") -> tuple[float, float]:
    """(mean, 95th percentile) of the TVD of `draws` ideal weighted draws of n people.

    A draw is multinomial over the population's weighted shares (a weighted draw without
    replacement from a population much larger than n is multinomial to within n / N, and
    a little closer to the population, so the band errs on the wide side). Seeded per
    attribute, so the band does not depend on which other attributes are compared.
    """
    if n <= 0 or not population:
        return 0.0, 0.0
    p = np.array([population[k] for k in sorted(population)], dtype=float)
    p = p / p.sum()
    rng = np.random.default_rng([seed, zlib.crc32(attribute.encode())])
    counts = rng.multinomial(n, p, size=draws)
    tvds = 0.5 * np.abs(counts / n - p).sum(axis=1)
    return float(tvds.mean()), float(np.quantile(tvds, NOISE_QUANTILE))


def kept_sample(draw: pa.Table, kept: pa.Table) -> pa.Table:
    """The census attributes of the people kept (a persona table, or any subset of the
    draw), carrying the draw's metadata (layout, filters, seed), so `fidelity_report`
    compares what a dataset holds rather than everyone drawn."""
    meta = read_metadata(draw.schema, "census draw")
    meta.n = kept.num_rows
    cols = [c for c in amap.output_attributes() if c in kept.column_names]
    return kept.select(cols).replace_schema_metadata(
        {METADATA_KEY: meta.model_dump_json().encode()})


def _age_bin(age: np.ndarray) -> np.ndarray:
    lo = (age // AGE_BIN_YEARS) * AGE_BIN_YEARS
    return np.array([f"{a}-{a + AGE_BIN_YEARS - 1}" for a in lo], dtype=object)


def _shares(counts: dict[str, float]) -> dict[str, float]:
    total = float(sum(counts.values()))
    return {k: v / total for k, v in counts.items()} if total else {}


def sample_counts(sample: pa.Table, attribute: str) -> dict[str, float]:
    col = sample.column(attribute)
    if attribute == "age":
        values = _age_bin(col.to_numpy())
    else:
        values = np.array([NONE_LABEL if v is None else str(v) for v in col.to_pylist()],
                          dtype=object)
    names, counts = np.unique(values, return_counts=True)
    return {str(k): float(v) for k, v in zip(names, counts, strict=True)}


def population_counts(
    srcs: Sequence[Source], filters: Filters, attributes: Sequence[str],
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[dict[str, dict[str, float]], PopulationInfo]:
    """Weighted category totals per attribute over the filtered population (one pass)."""
    layout = srcs[0].layout.name
    wanted = set(attributes)
    acc: dict[tuple[int, str], dict[tuple, int]] = {}
    ages: dict[int, int] = {}
    hist = IncomeHistogram()
    years: dict[int, int] = {}
    records = weight = 0
    for pi, src in enumerate(srcs):
        specs = [s for s in amap.available_specs(layout, src.layout.columns)
                 if s.attribute in wanted]
        for batch, row0 in batches(src, read_columns(src), block_bytes):
            c = core(batch, src, row0)
            years[pi] = max(years.get(pi, 0), c.year)
            idx = np.flatnonzero(keep(c, filters))
            if not len(idx):
                continue
            w = c.weight[idx]
            records += len(idx)
            weight += int(w.sum())
            hist.add(c.income[idx], w)
            for lo, tot in zip(*_bincount((c.age[idx] // AGE_BIN_YEARS) * AGE_BIN_YEARS, w),
                               strict=True):
                ages[int(lo)] = ages.get(int(lo), 0) + int(tot)
            table = with_state(batch, c).take(pa.array(idx, pa.int64()))
            table = table.append_column("__w", pa.array(w, pa.int64()))
            for spec in specs:
                grouped = table.group_by(list(spec.columns)).aggregate([("__w", "sum")])
                keys = list(zip(*(grouped.column(k).to_pylist() for k in spec.columns),
                                strict=True))
                into = acc.setdefault((pi, spec.attribute), {})
                for key, tot in zip(keys, grouped.column("__w_sum").to_pylist(), strict=True):
                    into[key] = into.get(key, 0) + int(tot)
    hist.finish()
    out: dict[str, dict[str, float]] = {}
    for (pi, attr), combos in sorted(acc.items()):
        spec = next(s for s in amap.specs(layout) if s.attribute == attr)
        keys = list(combos)
        raw = [pa.array([k[i] for k in keys], pa.string()) for i in range(len(spec.columns))]
        labels = amap.label(spec, raw, amap.lookup_for(layout, years.get(pi, 0))).to_pylist()
        into_l = out.setdefault(attr, {})
        for label, key in zip(labels, keys, strict=True):
            name = NONE_LABEL if label is None else label
            into_l[name] = into_l.get(name, 0.0) + combos[key]
    if "age" in wanted:
        out["age"] = {f"{lo}-{lo + AGE_BIN_YEARS - 1}": float(w) for lo, w in ages.items()}
    if "income_decile" in wanted:
        dec = {str(d): float(w) for d, w in hist.decile_weights().items() if w}
        none = weight - hist.total
        out["income_decile"] = {**dec, **({NONE_LABEL: float(none)} if none else {})}
    return out, PopulationInfo(records=records, weight=weight)


def _bincount(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names, inv = np.unique(values, return_inverse=True)
    return names, np.bincount(inv, weights=weights).astype(np.int64)


def _order_key(attr: str, p: dict[str, float],
               q: dict[str, float]) -> Callable[[str], tuple]:
    """Ordered bins (age, income decile) in their own order; other categories by size."""
    if attr in ("age", "income_decile"):
        return lambda k: (k == NONE_LABEL, int(k.split("-")[0]) if k != NONE_LABEL else 0)
    return lambda k: (-p.get(k, 0.0), -q.get(k, 0.0), k)


def fidelity_report(
    sources: Sequence[str],
    sample: pa.Table,
    *,
    sample_name: str = "sample",
    threshold: float | None = None,
    noise_draws: int = NOISE_DRAWS,
    layout: str | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    s3: S3Settings | None = None,
) -> FidelityReport:
    """Compare a sample (as written by sample_people) with the population it came from.

    Flags attributes above the 95th percentile of sampling noise, or above `threshold`
    when one is given."""
    meta = read_metadata(sample.schema, sample_name)
    srcs = open_sources(sources, layout or meta.layout, s3)
    if srcs[0].layout.name != meta.layout:
        raise DataError(f"the sample was drawn from the {meta.layout} layout but this source "
                        f"is {srcs[0].layout.name}", source=srcs[0].part.where)
    filters = meta.filters_obj()
    not_compared = {a: "the layout lacks it" for a in meta.missing_attributes}
    if "income" not in meta.missing_attributes:
        not_compared["income"] = "compared as income_decile"
    attrs = [a for a in amap.output_attributes() if a not in not_compared]
    missing_cols = [a for a in attrs if a not in sample.column_names]
    if missing_cols:
        raise DataError(f"sample lacks columns {', '.join(missing_cols)}", source=sample_name)
    pop, info = population_counts(srcs, filters, attrs, block_bytes)
    n = sample.num_rows
    if n == 0:
        raise DataError("the sample has no rows", source=sample_name)
    results = []
    for attr in attrs:
        p = _shares(pop.get(attr, {}))
        q = _shares(sample_counts(sample, attr))
        d = tvd(q, p)
        expected, p95 = noise_band(p, n, noise_draws, NOISE_SEED, attr)
        cats = sorted(set(p) | set(q), key=_order_key(attr, p, q))
        results.append(AttributeFidelity(
            attribute=attr,
            tvd=round(d, 6),
            noise_floor=round(expected, 6),
            noise_p95=round(p95, 6),
            flagged=d > (threshold if threshold is not None else p95),
            categories=[CategoryShare(label=k, sample=round(q.get(k, 0.0), 6),
                                      population=round(p.get(k, 0.0), 6)) for k in cats],
        ))
    return FidelityReport(
        sample=sample_name,
        sources=list(sources),
        layout=meta.layout,
        n=n,
        seed=meta.seed,
        threshold=threshold,
        noise_draws=noise_draws,
        filters=meta.filters.model_dump(),
        population=info,
        attributes=results,
        flagged=[r.attribute for r in results if r.flagged],
        not_compared=not_compared,
    )
