"""Census variables -> the persona's census attributes, per layout.

Each attribute names the source variables it reads and a function from their codes to
labels. The same spec labels sampled rows and the distinct code combinations of a whole
population (fidelity), so both sides of a comparison are labelled identically.
An attribute whose variables a layout lacks stays null and is reported as missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.census import codebook
from persona_gen.census.attributes import CENSUS_ATTRIBUTES, CENSUS_EXTRAS
from persona_gen.census.codes import normalize_codes

# Attributes that are numbers rather than labels; built by the sampler itself.
NUMERIC_ATTRIBUTES: tuple[str, ...] = ("age", "income", "income_decile")
# Internal column holding the normalised state FIPS code for either layout.
STATE = "__state"

Lookup = Callable[[str], "codebook.Table | None"]


@dataclass(frozen=True)
class Spec:
    attribute: str
    columns: tuple[str, ...]
    """Source variables, read as normalised codes."""
    provenance: str
    build: Callable[[list[pa.Array], Lookup], pa.Array]


def _lookup(var: str) -> Callable[[list[pa.Array], Lookup], pa.Array]:
    def build(codes: list[pa.Array], table: Lookup) -> pa.Array:
        t = table(var)
        return _nulls(len(codes[0])) if t is None else t.label(codes[0])

    return build


def _nulls(n: int) -> pa.Array:
    return pa.nulls(n, pa.string())


def _strip_abbreviation(labels: pa.Array) -> pa.Array:
    # "Alabama/AL" -> "Alabama": the persona reads better without the postal code.
    return pc.replace_substring_regex(labels, pattern=r"/[A-Z]{2}$", replacement="")


def _place_of_birth(codes: list[pa.Array], table: Lookup) -> pa.Array:
    t = table("POBP")
    return _nulls(len(codes[0])) if t is None else _strip_abbreviation(t.label(codes[0]))


def _state(codes: list[pa.Array], table: Lookup) -> pa.Array:
    states = codebook.states()
    keys = sorted(states)
    t = codebook.Table("STATE", pa.array(keys, pa.string()), pa.array([states[k][0] for k in keys]))
    return t.label(codes[0])


def _english(codes: list[pa.Array], table: Lookup) -> pa.Array:
    # ENG is blank for those who speak only English; say so instead of leaving a gap.
    eng, lanx = codes
    t = table("ENG")
    ability = _nulls(len(eng)) if t is None else t.label(eng)
    only = pc.if_else(pc.equal(lanx, "2"), pa.scalar("Speaks only English"), _nulls(len(eng)))
    return pc.coalesce(ability, only)


_FERTILITY = {"1": "Gave birth within the past 12 months",
              "2": "Did not give birth within the past 12 months"}


def _fertility(codes: list[pa.Array], table: Lookup) -> pa.Array:
    # FER's labels are a bare Yes/No; spell out the question so the persona text reads.
    if table("FER") is None:
        return _nulls(len(codes[0]))
    keys = sorted(_FERTILITY)
    t = codebook.Table("FER", pa.array(keys), pa.array([_FERTILITY[k] for k in keys]))
    return t.label(codes[0])


def _own_children(codes: list[pa.Array], table: Lookup) -> pa.Array:
    # NIST NOC: number of own children in the household (0 has a dictionary label).
    noc = codes[0]
    zero = table("NOC")
    none_label = (zero.get("0") if zero else None) or "No own children"
    n = pc.cast(noc, pa.int64(), safe=False) if len(noc) else pa.array([], pa.int64())
    text = pc.binary_join_element_wise(
        pc.cast(n, pa.string()),
        pc.if_else(pc.equal(n, 1), pa.scalar("own child in household"),
                   pa.scalar("own children in household")),
        " ",
    )
    return pc.if_else(pc.equal(n, 0), pa.scalar(none_label), text)


def _children(codes: list[pa.Array], table: Lookup) -> pa.Array:
    # FPARC (family presence and age of related children) names the attribute; HUPAOC (own
    # children in the household) fills households FPARC leaves blank (non-family ones).
    fparc, hupaoc = codes
    a, b = table("FPARC"), table("HUPAOC")
    first = _nulls(len(fparc)) if a is None else a.label(fparc)
    second = _nulls(len(fparc)) if b is None else b.label(hupaoc)
    return pc.coalesce(first, second)


_HOUSING = "housing record, joined on SERIALNO"


def _spec(attribute: str, var: str) -> Spec:
    return Spec(attribute, (var,), var, _lookup(var))


PUMS_SPECS: tuple[Spec, ...] = (
    _spec("sex", "SEX"),
    _spec("race", "RAC1P"),
    _spec("ancestry", "ANC1P"),
    # Household facts come from the housing file (persona_gen.census.housing); without one
    # they stay empty and are listed as missing.
    Spec("household_language", ("HHL",), f"HHL ({_HOUSING})", _lookup("HHL")),
    Spec("household_type", ("HHT",), f"HHT ({_HOUSING})", _lookup("HHT")),
    _spec("education", "SCHL"),
    _spec("employment_status", "ESR"),
    _spec("class_of_worker", "COW"),
    _spec("industry_category", "INDP"),
    _spec("occupation_category", "OCCP"),
    _spec("marital_status", "MSP"),
    Spec("family_presence_and_age", ("FPARC", "HUPAOC"),
         f"FPARC, HUPAOC where FPARC is blank ({_HOUSING})", _children),
    Spec("place_of_birth", ("POBP",), "POBP", _place_of_birth),
    _spec("citizenship", "CIT"),
    _spec("veteran_status", "MIL"),
    _spec("disability", "DIS"),
    _spec("health_insurance", "HICOV"),
    _spec("cognitive_difficulty", "DREM"),
    Spec("ability_to_speak_english", ("ENG", "LANX"), "ENG (LANX for English only)", _english),
    _spec("vision_difficulty", "DEYE"),
    Spec("fertility", ("FER",), "FER", _fertility),
    _spec("hearing_difficulty", "DEAR"),
    _spec("hispanic_origin", "HISP"),
    Spec("state", (STATE,), "ST (STATE from 2023)", _state),
)

NIST_SPECS: tuple[Spec, ...] = (
    _spec("sex", "SEX"),
    _spec("race", "RAC1P"),
    _spec("education", "EDU"),
    _spec("industry_category", "INDP_CAT"),
    _spec("marital_status", "MSP"),
    Spec("family_presence_and_age", ("NOC",), "NOC (number of own children in household)",
         _own_children),
    _spec("cognitive_difficulty", "DREM"),
    _spec("vision_difficulty", "DEYE"),
    _spec("hearing_difficulty", "DEAR"),
    _spec("hispanic_origin", "HISP"),
    Spec("state", (STATE,), "PUMA (state part)", _state),
)

NUMERIC_PROVENANCE: dict[str, dict[str, str]] = {
    "pums": {"age": "AGEP", "income": "PINCP x ADJINC / 10^6",
             "income_decile": "weighted decile of income in the sampled population"},
    "nist": {"age": "AGEP", "income": "PINCP as published (the excerpt has no ADJINC)",
             "income_decile": "weighted decile of income in the sampled population"},
}


def specs(layout: str) -> tuple[Spec, ...]:
    return PUMS_SPECS if layout == "pums" else NIST_SPECS


def available_specs(layout: str, columns: Sequence[str]) -> list[Spec]:
    """Specs whose variables the header carries (STATE is derived, so always there)."""
    have = {*columns, STATE}
    return [s for s in specs(layout) if all(c in have for c in s.columns)]


def output_attributes() -> tuple[str, ...]:
    return (*CENSUS_ATTRIBUTES, *CENSUS_EXTRAS)


def label_attributes() -> tuple[str, ...]:
    return tuple(a for a in output_attributes() if a not in NUMERIC_ATTRIBUTES)


def source_columns(layout: str) -> list[str]:
    """Every raw variable any spec of the layout reads (STATE excluded)."""
    cols = [c for s in specs(layout) for c in s.columns if c != STATE]
    return list(dict.fromkeys(cols))


def lookup_for(layout: str, data_year: int) -> Lookup:
    if layout == "pums":
        return lambda var: codebook.pums_table(var, data_year)
    return codebook.nist_table


def label(spec: Spec, raw: Sequence[pa.Array], lookup: Lookup) -> pa.Array:
    """Labels for raw (un-normalised) code columns."""
    codes = [normalize_codes(a) for a in raw]
    return spec.build(codes, lookup)
