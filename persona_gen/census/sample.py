"""Weighted sampling of real people from census microdata, reproducible from a seed.

Method: Efraimidis-Spirakis sampling without replacement. Every record gets the key
log(u)/w (u uniform on (0, 1], w its person weight PWGTP) and the n largest keys win,
which draws records with probability proportional to weight. One pass over the files in
record batches keeps only the current top n, so memory does not grow with the file.

Reproducible: one u is drawn per record, in file order, from numpy's PCG64 seeded with
`seed`, whatever the batch boundaries; ties break on (file, row). Same files, seed and
options give the same rows in the same order with the same persona ids.

Stratified: the n places are split across strata in proportion to their weight (largest
remainder), then each stratum keeps its own top keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from persona_gen.census import attributes_map as amap
from persona_gen.census import housing
from persona_gen.census.codes import normalize_codes
from persona_gen.census.read import DEFAULT_BLOCK_BYTES
from persona_gen.census.universe import (
    Core,
    Filters,
    IncomeHistogram,
    Source,
    batches,
    core,
    keep,
    make_filters,
    open_sources,
    read_columns,
    with_state,
)
from persona_gen.config.base import StrictModel
from persona_gen.errors import DataError
from persona_gen.storage.settings import S3Settings

METADATA_KEY = b"persona_gen"
AGE_BIN_YEARS = 10
MERGE_ROWS = 20_000


class FiltersInfo(StrictModel):
    states: list[str] = []
    min_age: int | None = 18
    max_age: int | None = None


class PopulationInfo(StrictModel):
    records: int
    weight: int


class IncomeInfo(StrictModel):
    adjusted_with_adjinc: bool
    decile_cutpoints: list[int | None] = []
    """Smallest income in deciles 2..10 of the weighted population."""


class SampleMetadata(StrictModel):
    """What a sample's Parquet file says about itself (schema metadata, key persona_gen)."""

    kind: str = "census_sample"
    format: int = 1
    layout: str
    layout_variants: list[str]
    sources: list[str]
    parts: list[str]
    data_years: dict[str, int]
    seed: int
    n: int
    filters: FiltersInfo
    stratify: list[str] = []
    missing_attributes: list[str]
    partially_missing: dict[str, list[str]] = {}
    attribute_sources: dict[str, str]
    unlabeled_codes: dict[str, int] = {}
    population: PopulationInfo
    income: IncomeInfo
    method: str = Field(default="Efraimidis-Spirakis keys log(u)/PWGTP, numpy PCG64(seed)")

    def filters_obj(self) -> Filters:
        from persona_gen.census.universe import make_filters

        return make_filters(self.filters.states, self.filters.min_age, self.filters.max_age)


def read_metadata(schema: pa.Schema, source: str = "sample") -> SampleMetadata:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataError("not a census sample (no persona_gen metadata in the Parquet schema)",
                        source=source)
    return SampleMetadata.model_validate(json.loads(raw))


# --------------------------------------------------------------------------- strata


def stratum_key(attrs: Sequence[str], table: pa.Table, age: np.ndarray,
                layout: str) -> np.ndarray | None:
    """One string per row naming its stratum (codes joined by '|'); None when unstratified."""
    if not attrs:
        return None
    by_name = {s.attribute: s for s in amap.specs(layout)}
    parts: list[pa.Array] = []
    for attr in attrs:
        if attr == "age":
            bins = (age // AGE_BIN_YEARS) * AGE_BIN_YEARS
            parts.append(pa.array(bins.astype(str), pa.string()))
            continue
        for col in by_name[attr].columns:
            parts.append(pc.fill_null(normalize_codes(table.column(col)), "~"))
    joined = pc.binary_join_element_wise(*parts, "|") if len(parts) > 1 else parts[0]
    return np.asarray(joined.to_pylist(), dtype=object)


def check_stratify(attrs: Sequence[str], sources: Sequence[Source]) -> list[str]:
    out = []
    for attr in attrs:
        if attr == "age":
            out.append(attr)
            continue
        ok = all(any(s.attribute == attr for s in amap.available_specs(src.layout.name,
                                                                         src.layout.columns))
                 for src in sources)
        if not ok:
            names = sorted({"age"} | {s.attribute for s in amap.specs(sources[0].layout.name)})
            raise DataError(f"cannot stratify on '{attr}' with this layout (choose from: "
                            f"{', '.join(names)})", source="--stratify")
        out.append(attr)
    return out


def allocate(n: int, weights: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    """Split n across strata in proportion to weight, never above a stratum's size."""
    alloc = {k: 0 for k in weights}
    open_ = sorted(k for k in weights if counts[k] > 0)
    left = n
    while left > 0 and open_:
        total = sum(weights[k] for k in open_)
        quota = {k: left * weights[k] / total for k in open_}
        base = {k: int(quota[k]) for k in open_}
        rest = left - sum(base.values())
        # Largest remainder; ties go to the heavier, then the lower-named stratum.
        for k in sorted(open_, key=lambda k: (-(quota[k] - base[k]), -weights[k], k))[:rest]:
            base[k] += 1
        capped = False
        for k in open_:
            take = min(base[k], counts[k] - alloc[k])
            capped |= take < base[k]
            alloc[k] += take
        left = n - sum(alloc.values())
        open_ = [k for k in open_ if alloc[k] < counts[k]]
        if not capped:
            break
    return alloc


# --------------------------------------------------------------------------- selection


def _order(keys: np.ndarray, part: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Indices by key descending, ties by (part, row)."""
    return np.lexsort((row, part, -keys))


def _merge(cands: pa.Table | None, pending: list[pa.Table], n: int) -> pa.Table:
    return _top_per_stratum(pa.concat_tables([*([cands] if cands is not None else []),
                                               *pending]), n)


def _stratum_thresholds(cands: pa.Table, n: int) -> dict[str, float]:
    """For each stratum already holding n candidates, the key a newcomer must beat."""
    strata = np.asarray(cands.column("__stratum").to_pylist(), dtype=object)
    keys = cands.column("__key").to_numpy()
    out = {}
    for name in np.unique(strata):
        k = keys[strata == name]
        if len(k) >= n:
            out[str(name)] = float(np.sort(k)[-n])
    return out


def _top_per_stratum(cands: pa.Table, limit: int | dict[str, int]) -> pa.Table:
    keys = cands.column("__key").to_numpy()
    part = cands.column("__part").to_numpy()
    row = cands.column("__row").to_numpy()
    if isinstance(limit, int) and cands.column("__stratum").null_count == cands.num_rows:
        # Unstratified: a plain top-n.
        order = _order(keys, part, row)[:limit]
        return cands.take(pa.array(order, pa.int64()))
    strata = np.asarray(cands.column("__stratum").to_pylist(), dtype=object)
    names, inv = np.unique(strata, return_inverse=True)
    order = np.lexsort((row, part, -keys, inv))
    g = inv[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    if isinstance(limit, int):
        cap = np.full(len(names), limit)
    else:
        cap = np.array([limit.get(str(name), 0) for name in names])
    chosen = order[rank < cap[g]]
    chosen = chosen[_order(keys[chosen], part[chosen], row[chosen])]
    return cands.take(pa.array(chosen, pa.int64()))


def sample_people(
    sources: Sequence[str],
    n: int,
    seed: int,
    layout: str = "auto",
    states: Sequence[str] = (),
    min_age: int | None = 18,
    max_age: int | None = None,
    stratify: Sequence[str] = (),
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    s3: S3Settings | None = None,
) -> pa.Table:
    """Draw n people proportional to PWGTP without replacement; one row per persona.

    Columns: persona_id, source, record_id, pwgtp, then every CENSUS_ATTRIBUTES and
    CENSUS_EXTRAS name (null where the layout lacks it). Schema metadata b"persona_gen"
    holds SampleMetadata as JSON.
    """
    if n < 1:
        raise DataError(f"n must be at least 1 (got {n})", source="--n")
    if seed < 0:
        raise DataError(f"seed must be zero or positive (got {seed})", source="--seed")
    filters = make_filters(states, min_age, max_age)
    srcs = open_sources(sources, layout, s3)
    layout_name = srcs[0].layout.name
    strat = check_stratify(list(dict.fromkeys(stratify)), srcs)
    raw_cols = (["SERIALNO", "SPORDER"] if layout_name == "pums" else []) + amap.source_columns(
        layout_name)

    rng = np.random.default_rng(seed)
    hist = IncomeHistogram()
    strata_w: dict[str, int] = {}
    strata_n: dict[str, int] = {}
    pop_records = pop_weight = 0
    years: dict[int, int] = {}
    cands: pa.Table | None = None
    pending: list[pa.Table] = []
    pending_rows = 0
    threshold = -np.inf
    cut: dict[str, float] = {}

    for pi, src in enumerate(srcs):
        for batch, row0 in batches(src, read_columns(src), block_bytes):
            c = core(batch, src, row0)
            years[pi] = max(years.get(pi, 0), c.year)
            # One draw per record, kept or not: a record's key depends only on the seed
            # and its position in the files, never on batch sizes.
            u = 1.0 - rng.random(batch.num_rows)
            m = keep(c, filters)
            idx = np.flatnonzero(m)
            if not len(idx):
                continue
            hist.add(c.income[idx], c.weight[idx])
            pop_records += len(idx)
            pop_weight += int(c.weight[idx].sum())
            keys = np.log(u[idx]) / c.weight[idx]
            if not strat and cands is not None and cands.num_rows >= n:
                sel = keys > threshold
                idx, keys = idx[sel], keys[sel]
                if not len(idx):  # the common case once the top n has settled
                    continue
            table = with_state(batch, c).take(pa.array(idx, pa.int64()))
            sk = stratum_key(strat, table, c.age[idx], layout_name)
            if strat:
                names, inv = np.unique(sk, return_inverse=True)
                wsum = np.bincount(inv, weights=c.weight[idx], minlength=len(names))
                csum = np.bincount(inv, minlength=len(names))
                for name, w_, n_ in zip(names, wsum, csum, strict=True):
                    strata_w[name] = strata_w.get(name, 0) + int(w_)
                    strata_n[name] = strata_n.get(name, 0) + int(n_)
                if cut:  # per-stratum thresholds, as in the unstratified case
                    bar = np.array([cut.get(name, -np.inf) for name in names])
                    sel = np.flatnonzero(keys > bar[inv])
                    if not len(sel):
                        continue
                    idx, keys, sk = idx[sel], keys[sel], sk[sel]
                    table = table.take(pa.array(sel, pa.int64()))
            pending.append(_candidates(table, raw_cols, keys, pi, row0 + idx, sk, c, idx))
            pending_rows += len(idx)
            # Merge in bulk: a stale threshold only lets a few extra rows wait in
            # `pending`, it never drops one that belongs in the top n.
            if pending_rows >= max(n, MERGE_ROWS):
                cands = _merge(cands, pending, n)
                pending, pending_rows = [], 0
                if not strat and cands.num_rows >= n:
                    threshold = float(cands.column("__key")[n - 1].as_py())
                elif strat:
                    cut = _stratum_thresholds(cands, n)

    if pending:
        cands = _merge(cands, pending, n)
    if pop_records < n or cands is None:
        raise DataError(
            f"asked for {n:,} people but only {pop_records:,} records match the filters "
            f"({_describe(filters)})",
            source=srcs[0].part.where,
        )
    if strat:
        cands = _top_per_stratum(cands, allocate(n, strata_w, strata_n))
    hist.finish()
    cands, housed = _households(cands, srcs)
    return _assemble(cands, srcs, list(sources), years, seed, n, filters, strat, hist,
                     pop_records, pop_weight, housed)


def _households(cands: pa.Table, srcs: list[Source]) -> tuple[pa.Table, set[int]]:
    """Household columns joined from the housing files beside the person files; the
    indexes of the sources that had one."""
    if srcs[0].layout.name != "pums":
        return cands, set()
    parts, housed = {}, set()
    for i, src in enumerate(srcs):
        found = housing.housing_parts(src.part)
        if found:
            housed.add(i)
        parts.update({p.where: p for p in found})
    if not parts:
        return cands, housed
    return housing.join_households(cands, list(parts.values())), housed


def _describe(f: Filters) -> str:
    d = f.describe()
    return ", ".join(f"{k}={v}" for k, v in d.items() if v not in (None, [])) or "no filters"


def _candidates(table: pa.Table, raw_cols: Sequence[str], keys: np.ndarray, part: int,
                rows: np.ndarray, strata: np.ndarray | None, c: Core,
                idx: np.ndarray) -> pa.Table:
    n = table.num_rows
    cols: dict[str, pa.Array] = {}
    for name in [*raw_cols, amap.STATE]:
        cols[name] = (table.column(name).combine_chunks() if name in table.column_names
                      else pa.nulls(n, pa.string()))
    cols["__key"] = pa.array(keys, pa.float64())
    cols["__part"] = pa.array(np.full(n, part), pa.int32())
    cols["__row"] = pa.array(rows, pa.int64())
    # Null when unstratified, so the merge can skip grouping altogether.
    cols["__stratum"] = (pa.array(list(strata), pa.string()) if strata is not None
                         else pa.nulls(n, pa.string()))
    cols["__age"] = pa.array(c.age[idx], pa.int32())
    cols["__weight"] = pa.array(c.weight[idx], pa.int64())
    cols["__income"] = pa.array(c.income[idx], pa.float64())
    return pa.table(cols)


def _assemble(cands: pa.Table, srcs: list[Source], sources: list[str], years: dict[int, int],
              seed: int, n: int, filters: Filters, strat: list[str], hist: IncomeHistogram,
              pop_records: int, pop_weight: int, housed: set[int]) -> pa.Table:
    layout = srcs[0].layout.name
    count = cands.num_rows
    part = cands.column("__part").to_numpy()
    width = max(5, len(str(count - 1)))
    columns: dict[str, pa.Array] = {
        "persona_id": pa.array([f"p{seed}-{i:0{width}d}" for i in range(count)], pa.string()),
        "source": pa.array([srcs[p].part.name for p in part], pa.string()),
        "record_id": _record_ids(cands, layout),
        "pwgtp": pa.array(cands.column("__weight").to_numpy(), pa.int32()),
    }
    labels, missing, partial, unlabeled, provenance = _label(cands, srcs, years, housed)
    income = cands.column("__income").to_numpy(zero_copy_only=False)
    has_income = all(src.layout.has("PINCP") for src in srcs)
    deciles = hist.deciles(income)
    for attr in amap.output_attributes():
        if attr == "age":
            columns[attr] = pa.array(cands.column("__age").to_numpy(), pa.int32())
        elif attr == "income":
            columns[attr] = pa.array(np.where(np.isnan(income), 0, income).astype(np.int64),
                                     pa.int64(), mask=np.isnan(income))
        elif attr == "income_decile":
            columns[attr] = pa.array(deciles.astype(np.int32), pa.int32(), mask=deciles == 0)
        else:
            columns[attr] = labels[attr]
    if not has_income:
        missing += ["income", "income_decile"]
    for attr in ("age", "income", "income_decile"):
        if attr not in missing:
            provenance[attr] = amap.NUMERIC_PROVENANCE[layout][attr]
    meta = SampleMetadata(
        layout=layout,
        layout_variants=sorted({s.layout.variant for s in srcs}),
        sources=sources,
        parts=[s.part.name for s in srcs],
        data_years={srcs[p].part.name: y for p, y in sorted(years.items())},
        seed=seed,
        n=n,
        filters=FiltersInfo(**filters.describe()),  # type: ignore[arg-type]
        stratify=strat,
        missing_attributes=[a for a in amap.output_attributes() if a in missing],
        partially_missing=partial,
        attribute_sources=provenance,
        unlabeled_codes=unlabeled,
        population=PopulationInfo(records=pop_records, weight=pop_weight),
        income=IncomeInfo(
            adjusted_with_adjinc=layout == "pums" and all(s.layout.has("ADJINC") for s in srcs),
            decile_cutpoints=hist.cutpoints() if has_income else [],
        ),
    )
    table = pa.table(columns)
    return table.replace_schema_metadata({METADATA_KEY: meta.model_dump_json().encode()})


def _record_ids(cands: pa.Table, layout: str) -> pa.Array:
    if layout == "nist":
        # The data row number (1 = the first record after the header).
        return pc.cast(pc.add(cands.column("__row"), 1), pa.string())
    sporder = normalize_codes(cands.column("SPORDER"))
    padded = pc.utf8_lpad(pc.fill_null(sporder, "0"), width=2, padding="0")
    return pc.binary_join_element_wise(cands.column("SERIALNO"), padded, "-")


def _label(cands: pa.Table, srcs: list[Source], years: dict[int, int], housed: set[int]):
    """Label columns for the chosen rows, part by part (each part has its own vintage)."""
    layout = srcs[0].layout.name
    part = cands.column("__part").to_numpy()
    count = cands.num_rows
    pieces: dict[str, list[tuple[np.ndarray, pa.Array]]] = {
        a: [] for a in amap.label_attributes()}
    available: dict[str, list[str]] = {a: [] for a in amap.label_attributes()}
    provenance: dict[str, str] = {}
    unlabeled: dict[str, int] = {}
    for pi, src in enumerate(srcs):
        columns = (*src.layout.columns, *(housing.HOUSING_COLUMNS if pi in housed else ()))
        specs = amap.available_specs(layout, columns)
        for spec in specs:
            available[spec.attribute].append(src.part.name)
            provenance[spec.attribute] = spec.provenance
        rows = np.flatnonzero(part == pi)
        if not len(rows):
            continue
        sub = cands.take(pa.array(rows, pa.int64()))
        lookup = amap.lookup_for(layout, years.get(pi, 0))
        for spec in specs:
            raw = [sub.column(c).combine_chunks() for c in spec.columns]
            values = amap.label(spec, raw, lookup)
            # A code present but without a label: an unknown code or an unlabelled vintage.
            coded = np.logical_and.reduce([r.is_valid().to_numpy(zero_copy_only=False)
                                           for r in raw])
            lost = int((coded & values.is_null().to_numpy(zero_copy_only=False)).sum())
            if lost:
                unlabeled[spec.attribute] = unlabeled.get(spec.attribute, 0) + lost
            pieces[spec.attribute].append((rows, values))
    labels: dict[str, pa.Array] = {}
    for attr, chunks in pieces.items():
        out = np.full(count, None, dtype=object)
        for rows, values in chunks:
            out[rows] = values.to_numpy(zero_copy_only=False)
        labels[attr] = pa.array(out, pa.string())
    names = [s.part.name for s in srcs]
    missing = [a for a, have in available.items() if not have]
    partial = {a: [p for p in names if p not in have]
               for a, have in available.items() if have and len(have) < len(names)}
    return labels, missing, partial, unlabeled, provenance
