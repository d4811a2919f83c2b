"""The Persona record: 33 attributes, id, split, sampled values/categories, provenance.

The Parquet table written by `build_personas` is the flat form of this record (one
column per field, provenance flattened); `Persona.from_row` / `to_row` convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from persona_gen.config.base import StrictModel
from persona_gen.personas.attributes import CENSUS_EXTRAS, PERSONA_ATTRIBUTES
from persona_gen.personas.big_five import BigFive

Split = Literal["train", "test"]


class Provenance(StrictModel):
    source: str | None = None
    """Census file or source the demographics came from."""
    record_id: str | None = None
    """The census record (person) id within that source."""
    pwgtp: int | None = None
    seed: int
    """The per-persona seed every procedural draw and model call used."""
    attempt: int = Field(default=0, ge=0)
    """0 for the first draw, k after k resamples."""
    enrich_model: str | None = None
    judge_model: str | None = None


# Table column -> Provenance field.
PROVENANCE_COLUMNS: dict[str, str] = {
    "source": "source",
    "record_id": "record_id",
    "pwgtp": "pwgtp",
    "persona_seed": "seed",
    "attempt": "attempt",
    "enrich_model": "enrich_model",
    "judge_model": "judge_model",
}


class Persona(StrictModel):
    persona_id: str
    split: Split
    # --- the 33 attributes, in render order; None where legitimately missing ---
    age: int = Field(ge=0)
    sex: str | None = None
    race: str | None = None
    ancestry: str | None = None
    household_language: str | None = None
    education: str | None = None
    employment_status: str | None = None
    class_of_worker: str | None = None
    industry_category: str | None = None
    occupation_category: str | None = None
    detailed_job_description: str | None = None
    income: int | None = None
    """Total personal income in dollars (may be negative: business losses)."""
    marital_status: str | None = None
    household_type: str | None = None
    family_presence_and_age: str | None = None
    place_of_birth: str | None = None
    citizenship: str | None = None
    veteran_status: str | None = None
    disability: str | None = None
    health_insurance: str | None = None
    big_five_scores: str
    """Rendered levels, e.g. 'Openness: High, Conscientiousness: Average, ...'."""
    defining_quirks: str
    mannerisms: str
    personal_time: str | None = None
    lifestyle: str | None = None
    ideology: str | None = None
    political_views: str | None = None
    religion: str | None = None
    cognitive_difficulty: str | None = None
    ability_to_speak_english: str | None = None
    vision_difficulty: str | None = None
    fertility: str | None = None
    hearing_difficulty: str | None = None
    # --- beyond the 33 ---
    core_values: list[str]
    categories: list[str]
    persona_text: str
    provenance: Provenance

    @field_validator("big_five_scores")
    @classmethod
    def _levels_parse(cls, value: str) -> str:
        BigFive.parse(value)
        return value

    @property
    def big_five(self) -> BigFive:
        return BigFive.parse(self.big_five_scores)

    def attributes(self) -> dict[str, Any]:
        """The 33 attributes in render order."""
        return {name: getattr(self, name) for name in PERSONA_ATTRIBUTES}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Persona:
        """From one row of the personas table; columns it does not know are ignored."""
        fields = {k: row[k] for k in cls.model_fields if k != "provenance" and k in row}
        prov = {f: row[c] for c, f in PROVENANCE_COLUMNS.items() if c in row}
        return cls.model_validate({**fields, "provenance": prov})

    def to_row(self) -> dict[str, Any]:
        row = self.model_dump(exclude={"provenance"})
        prov = self.provenance.model_dump()
        row.update({c: prov[f] for c, f in PROVENANCE_COLUMNS.items()})
        return row


assert set(PERSONA_ATTRIBUTES) <= set(Persona.model_fields)

_INT_ATTRIBUTES: dict[str, pa.DataType] = {"age": pa.int32(), "income": pa.int64()}


def persona_schema(extras: tuple[pa.Field, ...] = ()) -> pa.Schema:
    """Column order and types of the personas table; census extras go last."""
    fields = [pa.field("persona_id", pa.string(), nullable=False), pa.field("split", pa.string())]
    fields += [pa.field(a, _INT_ATTRIBUTES.get(a, pa.string())) for a in PERSONA_ATTRIBUTES]
    fields += [
        pa.field("core_values", pa.list_(pa.string())),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("persona_text", pa.string()),
        pa.field("source", pa.string()),
        pa.field("record_id", pa.string()),
        pa.field("pwgtp", pa.int64()),
        pa.field("persona_seed", pa.int64()),
        pa.field("attempt", pa.int32()),
        pa.field("enrich_model", pa.string()),
        pa.field("judge_model", pa.string()),
    ]
    return pa.schema(fields + list(extras))


def extra_fields(table: pa.Table) -> tuple[pa.Field, ...]:
    """The census extras present in `table`, with their census types."""
    return tuple(table.schema.field(n) for n in CENSUS_EXTRAS if n in table.column_names)
