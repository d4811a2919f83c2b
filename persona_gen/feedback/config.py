"""Feedback generation options (original, critique, revision, verification)."""

from __future__ import annotations

from pydantic import Field

from persona_gen.config.base import StrictModel


class FeedbackConfig(StrictModel):
    model: str = "smollm2-135m-instruct"
    """Registry model that writes originals, critiques and revisions."""
    judge_model: str = "smollm2-135m-instruct"
    """Registry model that role-plays the persona to verify the preference."""
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    verify: bool = True
    verify_max_tokens: int = Field(default=96, ge=8)
