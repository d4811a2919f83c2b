"""Benchmark options (the `bench:` section of the job config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from persona_gen.config.base import StrictModel
from persona_gen.personas.attributes import PERSONA_ATTRIBUTES

Mode = Literal["baseline", "output_only", "cot", "summary"]
ALL_MODES: tuple[Mode, ...] = ("baseline", "output_only", "cot", "summary")
PERSONA_MODES: tuple[Mode, ...] = ("output_only", "cot", "summary")
"""Modes whose prompt carries the persona (the only ones a leave-one-out can vary)."""
DEFAULT_MAX_TOKENS_BY_MODE: dict[Mode, int] = {"cot": 768, "summary": 768}
"""Reasoning modes write notes before their final answer; at the plain `max_tokens` (256)
a capable model is often cut before the marker, and such a sample cannot be judged. 768 is
our choice (the paper does not state its limits)."""


class BenchConfig(StrictModel):
    models: list[str] = Field(default_factory=lambda: ["smollm2-135m-instruct"], min_length=1)
    """Models under test (engine registry names)."""
    judge_model: str = "smollm2-135m-instruct"
    """Role-playing judge; may differ from the models under test."""
    modes: list[Mode] = Field(default_factory=lambda: list(ALL_MODES), min_length=1)
    k: int = Field(default=1, ge=1)
    """Samples per request (Sampling.n); pass@k is reported for this k and for k = 1."""
    temperature: float = Field(default=0.7, ge=0.0)
    """Answer sampling temperature; must be > 0 when k > 1 or the samples coincide."""
    max_tokens: int = Field(default=256, ge=1)
    """Answer token limit for modes not in max_tokens_by_mode (baseline, output_only)."""
    max_tokens_by_mode: dict[Mode, int] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_TOKENS_BY_MODE))
    """Per-mode answer token limits. Given modes replace the defaults one by one, so setting
    only `cot` keeps summary's default; a mode absent here uses `max_tokens`."""
    judge_max_tokens: int = Field(default=384, ge=16)
    judge_temperature: float = Field(default=0.0, ge=0.0)
    """Greedy by default so a verdict depends on the answer, not on judge sampling noise."""
    judge_critique_chars: int = Field(default=600, ge=20)
    """Cap per critique, so the verdict after them fits in judge_max_tokens."""
    bootstrap_samples: int = Field(default=1000, ge=1)

    # Which personas and prompts a run covers (the paper: held-out prompts, test personas).
    persona_split: str | None = None
    """Only personas of this split (e.g. 'test'); null: all."""
    prompt_split: str | None = "heldout"
    """Only prompts of this split ('train', 'heldout'); null: all."""
    max_personas: int | None = Field(default=None, ge=1)
    max_prompts: int | None = Field(default=None, ge=1)

    # Leave-one-out attribute study (paper: 40 personas x 20 questions per attribute).
    loo_attributes: list[str] = Field(default_factory=list)
    """Attributes to leave out one at a time; empty: no study."""
    loo_mode: Mode = "output_only"
    """The mode whose answers are compared with and without each attribute."""
    loo_personas: int | None = Field(default=40, ge=1)
    loo_prompts: int | None = Field(default=20, ge=1)
    loo_judge_persona: Literal["full", "reduced"] = "full"
    """Which persona the judge role-plays for leave-one-out rows. full: the real person
    (the attribute is hidden from the model under test only); reduced: the same ablated
    persona the model saw, so the judge no longer knows the attribute either."""

    def max_tokens_for(self, mode: Mode) -> int:
        return self.max_tokens_by_mode.get(mode, self.max_tokens)

    @field_validator("max_tokens_by_mode", mode="before")
    @classmethod
    def _merge_mode_limits(cls, value: object) -> object:
        # A config naming one mode should not silently drop the other mode's default.
        if isinstance(value, dict):
            return {**DEFAULT_MAX_TOKENS_BY_MODE, **value}
        return value

    @field_validator("max_tokens_by_mode")
    @classmethod
    def _positive_limits(cls, value: dict[Mode, int]) -> dict[Mode, int]:
        bad = {m: n for m, n in value.items() if n < 1}
        if bad:
            raise ValueError(f"token limits must be >= 1, got {bad}")
        return value

    @field_validator("loo_attributes")
    @classmethod
    def _known_attributes(cls, value: list[str]) -> list[str]:
        unknown = [a for a in value if a not in PERSONA_ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown persona attribute(s) {unknown}; see personas/attributes.py")
        if len(set(value)) != len(value):
            raise ValueError("attributes must not repeat")
        return value

    @field_validator("modes")
    @classmethod
    def _distinct_modes(cls, value: list[Mode]) -> list[Mode]:
        if len(set(value)) != len(value):
            raise ValueError("modes must not repeat")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BenchConfig:
        if self.loo_attributes and self.loo_mode not in PERSONA_MODES:
            raise ValueError(f"loo_mode must be one of {list(PERSONA_MODES)} (it must see the persona)")
        if self.k > 1 and self.temperature == 0.0:
            raise ValueError("k > 1 needs temperature > 0, otherwise every sample is the same")
        return self
