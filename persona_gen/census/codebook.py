"""Code-to-label tables shipped with the package (built by build_codebook.py).

Labels depend on the data year: industry (INDP) and occupation (OCCP) codes are
re-based from time to time, so a dictionary year may only label data of the same code
era. Other variables take the nearest dictionary year.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.census.codes import normalize_code

# Years from which a variable's codes were re-based (the Bureau's PUMS documentation):
# OCCP uses 2018 codes from 2018 on; INDP uses 2017 codes 2018-2022, 2022 codes from 2023.
CODE_ERAS: dict[str, tuple[int, ...]] = {"OCCP": (2018,), "INDP": (2018, 2023)}


@cache
def load() -> dict[str, Any]:
    text = resources.files("persona_gen.census").joinpath("data/codebook.json").read_text(
        encoding="utf-8"
    )
    return json.loads(text)


def pums_years() -> list[int]:
    return sorted(int(y) for y in load()["pums"])


def _era(var: str, year: int) -> int:
    starts = CODE_ERAS.get(var, ())
    return max((s for s in starts if s <= year), default=0)


def dictionary_year(var: str, data_year: int) -> int | None:
    """The dictionary year whose codes for `var` are valid for `data_year`; None if none."""
    years = [y for y in pums_years() if var in load()["pums"][str(y)]]
    if var in CODE_ERAS:
        years = [y for y in years if _era(var, y) == _era(var, data_year)]
    if not years:
        return None
    before = [y for y in years if y <= data_year]
    return max(before) if before else min(years)


@dataclass(frozen=True)
class Table:
    """One variable's labels, ready for vectorised lookups."""

    var: str
    codes: pa.Array
    labels: pa.Array

    def label(self, codes: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """Labels for normalised codes; unknown codes and nulls give null."""
        return pc.take(self.labels, pc.index_in(codes, value_set=self.codes))

    def get(self, code: str) -> str | None:
        idx = self.codes.index(normalize_code(code)).as_py()
        return None if idx < 0 else self.labels[idx].as_py()


@cache
def _table(section: str, year: str, var: str) -> Table | None:
    book = load()
    entries = book[section].get(year, {}) if section == "pums" else book[section]
    values = entries.get(var)
    if values is None:
        return None
    codes = sorted(values)
    return Table(var, pa.array(codes, pa.string()), pa.array([values[c] for c in codes]))


def pums_table(var: str, data_year: int) -> Table | None:
    year = dictionary_year(var, data_year)
    return None if year is None else _table("pums", str(year), var)


def nist_table(var: str) -> Table | None:
    return _table("nist", "", var)


@cache
def states() -> dict[str, tuple[str, str]]:
    """State FIPS code (normalised) -> (name, two-letter abbreviation)."""
    out: dict[str, tuple[str, str]] = {}
    for year in pums_years():
        tables = load()["pums"][str(year)]
        for var in ("ST", "STATE"):
            for code, label in tables.get(var, {}).items():
                name, _, abbr = label.rpartition("/")
                out[code] = (name.strip(), abbr.strip())
    return out


def state_code(text: str) -> str | None:
    """'WY', 'wy', '56' or '056' -> normalised FIPS code '56'; None if unknown."""
    text = text.strip()
    if text.isdigit():
        code = normalize_code(text)
        return code if code in states() else None
    for code, (name, abbr) in states().items():
        if text.upper() == abbr.upper() or text.lower() == name.lower():
            return code
    return None


def state_abbr(code: str) -> str | None:
    entry = states().get(normalize_code(code))
    return entry[1] if entry else None


def pums_person_columns(year: int) -> list[str]:
    """The Bureau's person-file header for the dictionary year nearest `year`."""
    cols = load()["pums_person_columns"]
    best = min(cols, key=lambda y: (abs(int(y) - year), -int(y)))
    return list(cols[best])
