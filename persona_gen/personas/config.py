"""Persona enrichment and consistency options."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from persona_gen.config.base import StrictModel
from persona_gen.config.limits import fill_stage_limits


class PersonasConfig(StrictModel):
    enrich_model: str = "smollm2-135m-instruct"
    judge_model: str = "smollm2-135m-instruct"
    test_fraction: float = Field(default=586 / 1586, ge=0.0, le=1.0)
    """Share of personas held out as test personas (paper: 586 of 1,586)."""
    on_inconsistent: Literal["drop", "replace"] = "replace"
    """What happens to a persona the rules or the judge reject. `drop`: it is dropped and
    counted, as the paper did (PERSONA, arXiv 2407.17387, personas: about 8.5% dropped), so
    the kept personas stay a plain census draw minus the rejects. `replace` (our choice for
    small runs): its slot gets a fresh census draw, up to max_resamples times; this keeps
    the persona count but shifts the demographics toward profiles the judge accepts."""
    max_resamples: int = Field(default=2, ge=0)
    """How often a slot goes round again: with `replace`, for rejected personas; with
    either setting, for unusable model output (the same person asked again)."""
    model_consistency_check: bool = True

    # Procedural draws per persona (from the curated lists in personas/data/).
    n_core_values: int = Field(default=3, ge=1)
    n_quirks: int = Field(default=1, ge=1)
    n_mannerisms: int = Field(default=1, ge=1)
    n_categories: int = Field(default=3, ge=1)

    # Enrichment: one JSON object with the six open-ended attributes.
    enrich_max_tokens: int = Field(default=400, ge=16)
    enrich_retry_max_tokens: int = Field(default=800, ge=0)
    """One retry with this cap for answers cut at enrich_max_tokens (0: none)."""
    enrich_temperature: float = Field(default=0.8, ge=0.0)
    enrich_field_max_chars: int = Field(default=240, ge=8)
    """Upper bound on each written attribute, put into the JSON schema so that a
    constrained decoder stops in time and the answer fits in enrich_max_tokens."""

    # Consistency judge: {consistent, reason}.
    judge_max_tokens: int = Field(default=96, ge=8)
    judge_retry_max_tokens: int = Field(default=192, ge=0)
    judge_temperature: float = Field(default=0.0, ge=0.0)
    judge_reason_max_chars: int = Field(default=160, ge=8)

    batch_size: int = Field(default=64, ge=1)
    """Rows per engine call when stages run in-process."""

    @model_validator(mode="before")
    @classmethod
    def _retry_limits(cls, data: Any) -> Any:
        return fill_stage_limits(data, ("enrich", "judge"))
