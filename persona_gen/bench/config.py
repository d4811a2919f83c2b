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
    judge_max_tokens: int = Field(default=384, ge=16)
    judge_temperature: float = Field(default=0.0, ge=0.0)
    judge_critique_chars: int = Field(default=600, ge=20)
    """Cap per critique, so the verdict after them fits in judge_max_tokens."""
    """Greedy by default so a verdict depends on the answer, not on judge sampling noise."""
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
