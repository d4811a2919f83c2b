"""Feedback generation options."""

from __future__ import annotations

from persona_gen.config.base import StrictModel


class FeedbackConfig(StrictModel):
    model: str = "smollm2-135m-instruct"
    judge_model: str = "smollm2-135m-instruct"
    max_tokens: int = 256
    temperature: float = 0.7
    verify: bool = True
