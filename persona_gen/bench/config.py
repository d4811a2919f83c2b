"""Benchmark options (the `bench:` section of the run's config)."""

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
    """What the bench measures. How its two model stages sample (temperature, token limits,
    the judge's model) is in `stages.bench_answer` and `stages.bench_judge`."""

    models: list[str] = Field(default_factory=lambda: ["smollm2-135m-instruct"], min_length=1)
    """Models under test (engine registry names)."""
    modes: list[Mode] = Field(default_factory=lambda: list(ALL_MODES), min_length=1)
    k: int = Field(default=1, ge=1)
    """Samples per request (Sampling.n); pass@k is reported for this k and for k = 1. k > 1
    needs stages.bench_answer.temperature > 0, or the samples coincide."""
    bootstrap_samples: int = Field(default=1000, ge=1)

    # Which personas and prompts a run covers (the paper: held-out prompts, test personas).
    persona_split: str | None = None
    """Only personas of this split (e.g. 'test'); null: all."""
    prompt_split: str | None = "heldout"
    """Only prompts of this split ('train', 'heldout'); null: all."""
    max_personas: int | None = Field(default=None, ge=1)
    max_prompts: int | None = Field(default=None, ge=1)
    prompts_per_persona: int | None = Field(default=None, ge=1)
    """Each persona answers a seeded sample of this many of the selected prompts (its own
    sample, as the public persona-bench package draws questions per persona); null: every
    selected prompt for every persona."""
    max_gpu_hours: float | None = Field(default=None, gt=0)
    """`bench run` refuses to start when its cost plan needs more GPU-hours than this
    (override with --yes); null: no cap."""

    # Leave-one-out attribute study (paper: 40 personas x 20 questions per attribute).
    loo_attributes: list[str] = Field(default_factory=list)
    """Attributes to leave out one at a time; empty: no study."""
    loo_mode: Mode = "output_only"
    """The mode whose answers are compared with and without each attribute."""
    loo_personas: int | None = Field(default=40, ge=1)
    loo_prompts: int | None = Field(default=20, ge=1)
    loo_judge_persona: Literal["full", "reduced"] = "reduced"
    """Which persona the judge role-plays for leave-one-out rows. reduced (the public
    persona-bench package's way, our default): the same ablated persona the model saw, so
    the judge no longer knows the attribute either; full: the real person (the attribute is
    hidden from the model under test only). The report names the variant."""
    loo_all_removed: bool = True
    """Also bench each LOO persona with every attribute of `loo_attributes` removed at once
    (the package's all-removed persona; rows with ablated_attribute = 'all_attributes')."""

    # Intersectionality (the persona-bench package's study): accuracy per population.
    intersections: list[list[str]] = Field(default_factory=list)
    """Attribute tuples, e.g. [[sex, race], [sex, political_views]]: each value combination
    among the benched personas is a population, scored on its own (no extra model calls)."""
    intersection_min_personas: int = Field(default=5, ge=1)
    """Populations with fewer benched personas are left out (their accuracy is noise)."""

    @field_validator("intersections")
    @classmethod
    def _known_groups(cls, value: list[list[str]]) -> list[list[str]]:
        for group in value:
            unknown = [a for a in group if a not in PERSONA_ATTRIBUTES]
            if unknown or not group or len(set(group)) != len(group):
                raise ValueError(f"{group}: a tuple of distinct persona attributes expected"
                                 + (f" (unknown: {unknown}; see personas/attributes.py)"
                                    if unknown else ""))
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
        return self
