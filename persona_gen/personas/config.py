"""How personas are drawn and kept. The two model stages' settings (enrich, consistency)
are in the config's `stages` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from persona_gen.config.base import StrictModel


class PersonasConfig(StrictModel):
    n: int = Field(default=1586, ge=1)
    """Personas the run keeps (PERSONA, arXiv 2407.17387: 1,586, counted after its
    consistency filter). With `drop`, the run draws census people in seeded rounds, in draw
    order, until this many pass the checks; with `replace`, it is the number of slots. This
    key used to be `census.n` (still read, with a deprecation line)."""
    test_fraction: float = Field(default=586 / 1586, ge=0.0, le=1.0)
    """Share of personas held out as test personas (paper: 586 of 1,586)."""
    on_inconsistent: Literal["drop", "replace"] = "replace"
    """What happens to a persona the rules or the judge reject. `drop`: it is dropped and
    counted, as the paper did (PERSONA, arXiv 2407.17387, personas: about 8.5% dropped), and
    the run draws the next census people in draw order until `n` are kept: never reweighted
    or chosen by their attributes, so the kept personas are the census draw minus the
    rejects. `replace` (our choice for small runs): its slot gets a fresh census draw, up to
    max_resamples times; this keeps the slot count but shifts the demographics toward
    profiles the judge accepts."""
    max_resamples: int = Field(default=2, ge=0)
    """How often the build goes round again. With `drop`: rounds after the first, each
    drawing the next census people for the personas still missing (sized by the share that
    survived so far) and asking again for unusable model output; with `replace`: how often a
    slot is redrawn for a rejected persona or asked again for unusable output."""

    # Procedural draws per persona (from the curated lists in personas/data/).
    n_core_values: int = Field(default=3, ge=1)
    n_quirks: int = Field(default=1, ge=1)
    n_mannerisms: int = Field(default=1, ge=1)
    n_categories: int = Field(default=3, ge=1)
