"""Prompt-to-persona assignment sizes (BRIEF 2.3)."""

from __future__ import annotations

from persona_gen.config.base import StrictModel


class PlanConfig(StrictModel):
    train_pairs_per_persona: int = 100
    seen_test_pairs_per_persona: int = 50
    heldout_test_pairs_per_persona: int = 50
