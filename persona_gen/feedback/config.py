"""Feedback generation options (original, critique, revision, verification)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from persona_gen.config.base import StrictModel
from persona_gen.config.limits import fill_stage_limits

TEXT_STAGES = ("original", "critique", "revision")
"""The stages that write free text; each has its own limit (`<stage>_max_tokens`)."""


class FeedbackConfig(StrictModel):
    model: str = "smollm2-135m-instruct"
    """Registry model that writes originals, critiques and revisions."""
    judge_model: str = "smollm2-135m-instruct"
    """Registry model that role-plays the persona to verify the preference."""
    max_tokens: int = Field(default=256, ge=1)
    """Default output cap of the original, the critique and the revision (each stage's
    `<stage>_max_tokens` overrides it)."""
    original_max_tokens: int = Field(default=256, ge=1)
    critique_max_tokens: int = Field(default=256, ge=1)
    revision_max_tokens: int = Field(default=256, ge=1)
    original_retry_max_tokens: int = Field(default=512, ge=0)
    """A row cut at the stage's limit is retried once with this cap (default: twice the
    limit; 0: no retry). Still cut after that: kept, `<stage>_finish_reason` = 'length'."""
    critique_retry_max_tokens: int = Field(default=512, ge=0)
    revision_retry_max_tokens: int = Field(default=512, ge=0)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    verify: bool = True
    verify_max_tokens: int = Field(default=96, ge=8)
    verify_retry_max_tokens: int = Field(default=192, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _stage_limits(cls, data: Any) -> Any:
        if isinstance(data, dict):
            default = data.get("max_tokens", cls.model_fields["max_tokens"].default)
            data = fill_stage_limits(data, TEXT_STAGES, default)
        return fill_stage_limits(data, ("verify",))
