"""The whole job's configuration: one YAML file, one section per stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from persona_gen.bench.config import BenchConfig
from persona_gen.census.config import CensusConfig
from persona_gen.config.base import StrictModel
from persona_gen.feedback.config import FeedbackConfig
from persona_gen.personas.config import PersonasConfig
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.plan.config import PlanConfig
from persona_gen.prompts.config import PromptsConfig
from persona_gen.storage.settings import S3Settings


class RunSection(StrictModel):
    output: str = "./out"
    """Root URI for runs: a path, file:// or s3://bucket/prefix. A run lives at <output>/<run_id>/."""
    run_id: str | None = None
    """Reuse a run id to resume that run; default: a new id from the time and config."""
    seed: int = 0
    """Master seed: every stage derives its own seed from this one."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level logged by the driver and every Ray worker (any case: info, INFO)."""
    progress_every_s: float = Field(default=30.0, gt=0)
    """Seconds between progress lines (one INFO line per active stage: rows done/planned,
    rows/s, ETA, errors) and manifest heartbeats."""
    stale_after_s: float = Field(default=300.0, gt=0)
    """A `running` manifest whose heartbeat is older than this shows as `stale` (its driver
    was killed, or lost storage). Must exceed progress_every_s."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _stale_after_heartbeat(self) -> RunSection:
        if self.stale_after_s <= self.progress_every_s:
            raise ValueError(f"stale_after_s ({self.stale_after_s:g}) must exceed "
                             f"progress_every_s ({self.progress_every_s:g}), the heartbeat")
        return self


class RunConfig(StrictModel):
    run: RunSection = Field(default_factory=RunSection)
    storage: S3Settings = Field(default_factory=S3Settings)
    census: CensusConfig = Field(default_factory=CensusConfig)
    personas: PersonasConfig = Field(default_factory=PersonasConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
