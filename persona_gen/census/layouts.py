"""Which file layout a header belongs to, and what that layout needs from it.

Two layouts: the Bureau's official PUMS person file (psam_p*.csv, 2017-2023 variants),
and the NIST "Diverse Communities Data Excerpts" recode of ACS 2019. Detection reads
only the header line; a forced layout is checked against the header just the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from persona_gen.errors import DataError

LayoutName = Literal["pums", "nist"]
LAYOUT_CHOICES: tuple[str, ...] = ("auto", "pums", "nist")

# Columns without which a file cannot be sampled at all.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "pums": ("SERIALNO", "SPORDER", "AGEP", "PWGTP"),
    "nist": ("PUMA", "AGEP", "PWGTP"),
}
# Columns that identify a layout even when a required one is missing (so the error can
# say "missing PWGTP" rather than "unknown layout").
_MARKERS: dict[str, tuple[str, ...]] = {
    "pums": ("SERIALNO", "SPORDER"),
    "nist": ("EDU", "INDP_CAT", "PINCP_DECILE", "HOUSING_TYPE"),
}
_WHY: dict[str, str] = {"PWGTP": " (the person weight)", "AGEP": " (age)"}


@dataclass(frozen=True)
class Layout:
    name: LayoutName
    columns: tuple[str, ...]
    """The header, in file order."""
    state_column: str | None = None
    """ST (to 2022) or STATE (2023 on) in the official layout."""
    variant: str = ""
    """A human description of the header's vintage, e.g. 'PUMS 2019-2022 (ST, RELSHIPP)'."""

    @property
    def null_values(self) -> list[str]:
        # The excerpt writes N/A as "N"; the Bureau leaves the field blank.
        return ["", "N"] if self.name == "nist" else [""]

    def has(self, column: str) -> bool:
        return column in self.columns


def _variant(cols: set[str]) -> tuple[str | None, str]:
    state = "STATE" if "STATE" in cols else "ST" if "ST" in cols else None
    if state == "STATE":
        years = "2023 on"
    elif "RELSHIPP" in cols or "WKWN" in cols:
        years = "2019-2022"
    elif "RELP" in cols or "WKW" in cols:
        years = "2017-2018"
    else:
        years = "unknown year"
    return state, f"PUMS person file, {years} ({state or 'no state column'})"


def detect(columns: list[str], forced: str, source: str) -> Layout:
    """The layout of a file with this header; DataError naming the file otherwise."""
    if forced not in LAYOUT_CHOICES:
        raise DataError(f"unknown layout '{forced}' (expected one of: {', '.join(LAYOUT_CHOICES)})",
                        source="--layout")
    cols = set(columns)
    if forced == "auto":
        found = [name for name, marks in _MARKERS.items() if any(m in cols for m in marks)]
        if len(found) != 1:
            head = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
            raise DataError(
                "unknown layout: the header matches neither an ACS PUMS person file (SERIALNO, "
                f"SPORDER, ...) nor the NIST excerpt (PUMA, EDU, INDP_CAT, ...); it starts: {head}",
                source=source,
            )
        name = found[0]
    else:
        name = forced
        if not any(m in cols for m in _MARKERS[name]):
            raise DataError(
                f"layout '{name}' forced with --layout, but the header has none of its "
                f"columns {', '.join(_MARKERS[name])}",
                source=source,
            )
    if name == "pums" and "WGTP" in cols and not {"SPORDER", "PWGTP"} & cols:
        raise DataError("this is a PUMS housing file (psam_h*); give the person file (psam_p*)",
                        source=source)
    missing = [c for c in _REQUIRED[name] if c not in cols]
    if missing:
        what = ", ".join(f"{c}{_WHY.get(c, '')}" for c in missing)
        hint = " (forced with --layout)" if forced != "auto" else ""
        raise DataError(f"missing column {what} required by the {name} layout{hint}",
                        source=source)
    if name == "nist":
        return Layout("nist", tuple(columns), variant="NIST Diverse Communities excerpt (ACS 2019)")
    state, variant = _variant(cols)
    return Layout("pums", tuple(columns), state_column=state, variant=variant)
