"""The population a sample is drawn from: sources, their layout, filters, weights, income.

Shared by the sampler and the fidelity report, so both see exactly the same people.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.census import codebook
from persona_gen.census.attributes_map import STATE, source_columns
from persona_gen.census.codes import normalize_codes
from persona_gen.census.layouts import Layout
from persona_gen.census.read import DEFAULT_BLOCK_BYTES, Part, expand, ints, layout_of, stream
from persona_gen.errors import DataError
from persona_gen.storage.settings import S3Settings

NIST_YEAR = 2019


@dataclass(frozen=True)
class Filters:
    states: tuple[str, ...] = ()
    """Normalised state FIPS codes; empty keeps every state."""
    min_age: int | None = 18
    max_age: int | None = None

    def describe(self) -> dict[str, object]:
        return {
            "states": [codebook.state_abbr(s) or s for s in self.states],
            "min_age": self.min_age,
            "max_age": self.max_age,
        }


def make_filters(states: Sequence[str], min_age: int | None, max_age: int | None) -> Filters:
    codes = []
    for text in states:
        for item in str(text).split(","):
            if not item.strip():
                continue
            code = codebook.state_code(item)
            if code is None:
                raise DataError(f"unknown state '{item.strip()}' (use two-letter codes like WY)",
                                source="--states")
            codes.append(code)
    if min_age is not None and max_age is not None and min_age > max_age:
        raise DataError(f"min age {min_age} is above max age {max_age}", source="--min-age")
    return Filters(tuple(sorted(set(codes), key=int)), min_age, max_age)


@dataclass(frozen=True)
class Source:
    part: Part
    layout: Layout


def open_sources(sources: Sequence[str], layout: str = "auto",
                 s3: S3Settings | None = None) -> list[Source]:
    """Detect every part's layout; all must share one (labels differ between layouts)."""
    out = [Source(p, layout_of(p, layout)) for p in expand(sources, s3)]
    names = {s.layout.name for s in out}
    if len(names) > 1:
        first = {s.layout.name: s.part.where for s in out}
        raise DataError(
            "sources mix layouts (" + ", ".join(f"{k}: {v}" for k, v in sorted(first.items()))
            + "); sample each layout separately",
            source=out[0].part.where,
        )
    return out


@dataclass
class Core:
    """Per-record values every pass needs, for one batch."""

    age: np.ndarray
    weight: np.ndarray
    state: pa.Array
    income: np.ndarray
    """Float dollars, NaN where the person has no income value (under 15)."""
    year: int


def core(batch: pa.RecordBatch, src: Source, row0: int) -> Core:
    part, layout = src.part, src.layout
    age = ints(batch.column("AGEP"), "AGEP", part, row0)
    weight = ints(batch.column("PWGTP"), "PWGTP", part, row0)
    if layout.name == "nist":
        puma = batch.column("PUMA")
        state = normalize_codes(pc.utf8_slice_codeunits(puma, 0, 2))
        income = (ints(batch.column("PINCP"), "PINCP", part, row0, allow_null=True, decimals=True)
                  if layout.has("PINCP") else np.full(len(age), np.nan))
        return Core(age, weight, state, income, NIST_YEAR)
    state = (normalize_codes(batch.column(layout.state_column)) if layout.state_column
             else pa.nulls(batch.num_rows, pa.string()))
    if layout.has("PINCP"):
        income = ints(batch.column("PINCP"), "PINCP", part, row0, allow_null=True)
        if layout.has("ADJINC"):
            # ADJINC carries 6 implied decimals; it brings every year to constant dollars.
            adj = ints(batch.column("ADJINC"), "ADJINC", part, row0, allow_null=True)
            income = np.round(income * adj / 1e6)
    else:
        income = np.full(len(age), np.nan)
    return Core(age, weight, state, income, _year(batch.column("SERIALNO"), part))


def _year(serial: pa.Array, part: Part) -> int:
    # SERIALNO starts with the survey year (2019HU0000001; 2015000000067 in 5-year files).
    top = pc.max(pc.utf8_slice_codeunits(serial, 0, 4)).as_py()
    if top is None or not top.isdigit():
        raise DataError(f"SERIALNO '{top}' does not start with a survey year", source=part.where)
    return int(top)


def keep(c: Core, filters: Filters) -> np.ndarray:
    """Boolean mask of the records in the population."""
    m = c.weight > 0
    if filters.min_age is not None:
        m &= c.age >= filters.min_age
    if filters.max_age is not None:
        m &= c.age <= filters.max_age
    if filters.states:
        in_states = pc.is_in(c.state, value_set=pa.array(filters.states, pa.string()))
        m &= pc.fill_null(in_states, False).to_numpy(zero_copy_only=False)
    return m


def read_columns(src: Source, extra: Sequence[str] = ()) -> list[str]:
    layout = src.layout
    base = ["AGEP", "PWGTP", "PINCP"]
    if layout.name == "nist":
        base += ["PUMA"]
    else:
        base += ["SERIALNO", "SPORDER", "ADJINC"]
        if layout.state_column:
            base.append(layout.state_column)
    return [*base, *source_columns(layout.name), *extra]


def batches(src: Source, columns: Sequence[str],
            block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[tuple[pa.RecordBatch, int]]:
    """(batch, number of records before it in this part)."""
    row0 = 0
    for batch in stream(src.part, src.layout, columns, block_bytes):
        yield batch, row0
        row0 += batch.num_rows


def with_state(batch: pa.RecordBatch, c: Core) -> pa.Table:
    """The batch as a table whose state column is the normalised one, under one name."""
    table = pa.Table.from_batches([batch])
    return table.append_column(STATE, c.state)


@dataclass
class IncomeHistogram:
    """Exact weighted distribution of income (value -> summed weight), merged per batch."""

    _values: list[np.ndarray] = field(default_factory=list)
    _weights: list[np.ndarray] = field(default_factory=list)
    _pending: int = 0
    values: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def add(self, income: np.ndarray, weight: np.ndarray) -> None:
        ok = ~np.isnan(income)
        if not ok.any():
            return
        self._values.append(income[ok].astype(np.int64))
        self._weights.append(weight[ok].astype(np.int64))
        self._pending += int(ok.sum())
        if self._pending > 1_000_000:  # compact now and then: memory ~ distinct incomes
            self._compact()

    def _compact(self) -> None:
        vals = np.concatenate([self.values, *self._values])
        wts = np.concatenate([self.weights, *self._weights])
        self.values, inverse = np.unique(vals, return_inverse=True)
        self.weights = np.bincount(inverse, weights=wts, minlength=len(self.values)).astype(
            np.int64)
        self._values, self._weights, self._pending = [], [], 0

    def finish(self) -> IncomeHistogram:
        self._compact()
        return self

    @property
    def total(self) -> int:
        return int(self.weights.sum())

    def deciles(self, income: np.ndarray) -> np.ndarray:
        """1..10 by the weight strictly below each value; 0 where income is NaN.

        Integer arithmetic on integer weights, so the cut is exact and reproducible.
        """
        out = np.zeros(len(income), np.int64)
        ok = ~np.isnan(income)
        if not ok.any() or self.total == 0:
            return out
        below = np.concatenate([[0], np.cumsum(self.weights)[:-1]])
        idx = np.searchsorted(self.values, income[ok].astype(np.int64), side="left")
        idx = np.clip(idx, 0, len(self.values) - 1)
        out[ok] = np.minimum(10, 1 + (10 * below[idx]) // self.total)
        return out

    def decile_weights(self) -> dict[int, int]:
        deciles = self.deciles(self.values.astype(np.float64))
        return {int(d): int(self.weights[deciles == d].sum()) for d in range(1, 11)}

    def cutpoints(self) -> list[int | None]:
        """The smallest income of each decile 2..10 (for the record, in metadata)."""
        deciles = self.deciles(self.values.astype(np.float64))
        return [int(self.values[deciles == d][0]) if (deciles == d).any() else None
                for d in range(2, 11)]
