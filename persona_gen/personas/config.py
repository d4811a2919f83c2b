"""Persona enrichment and consistency options."""

from __future__ import annotations

from persona_gen.config.base import StrictModel


class PersonasConfig(StrictModel):
    enrich_model: str = "smollm2-135m-instruct"
    judge_model: str = "smollm2-135m-instruct"
    test_fraction: float = 586 / 1586
    max_resamples: int = 2
    """How often an inconsistent persona is resampled before it is dropped."""
    model_consistency_check: bool = True
