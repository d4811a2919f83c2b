"""Prompt-to-persona assignment sizes (PERSONA, arXiv 2407.17387: feedback pairs)."""

from __future__ import annotations

from pydantic import Field

from persona_gen.config.base import StrictModel


class PlanConfig(StrictModel):
    """Per persona: train pairs and seen-prompt test pairs come from the train prompts,
    held-out test pairs from the held-out prompts. When a pool holds fewer prompts than
    asked for, that pool's counts shrink (keeping their ratio) rather than repeat a prompt."""

    train_pairs_per_persona: int = Field(default=100, ge=0)
    seen_test_pairs_per_persona: int = Field(default=50, ge=0)
    heldout_test_pairs_per_persona: int = Field(default=50, ge=0)
