"""How personas are drawn and kept. The two model stages' settings (enrich, consistency)
are in the config's `stages` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from persona_gen.config.base import StrictModel


class PersonasConfig(StrictModel):
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

    # Procedural draws per persona (from the curated lists in personas/data/).
    n_core_values: int = Field(default=3, ge=1)
    n_quirks: int = Field(default=1, ge=1)
    n_mannerisms: int = Field(default=1, ge=1)
    n_categories: int = Field(default=3, ge=1)
