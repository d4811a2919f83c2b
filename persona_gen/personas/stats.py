"""What a persona build did, for logs and the run manifest."""

from __future__ import annotations

from pydantic import Field

from persona_gen.config.base import StrictModel


class PersonaStats(StrictModel):
    requested: int = 0
    """Persona slots asked for (census rows given)."""
    kept: int = 0
    dropped: int = 0
    """Slots still inconsistent (or unparseable) after max_resamples, or unfixable."""
    resampled: int = 0
    """Replacement census draws made (rows)."""
    rounds: int = 0
    rejections: dict[str, int] = Field(default_factory=dict)
    """Why personas were sent back: a rule name, or 'model_judge'. A persona breaking two
    rules counts under both."""
    invalid_outputs: dict[str, int] = Field(default_factory=dict)
    """Rows whose model output could not be used, per stage ('enrich', 'consistency')."""
    error_samples: dict[str, list[str]] = Field(default_factory=dict)
    """The first few error messages per stage, to see why outputs failed."""
    model_calls: dict[str, int] = Field(default_factory=dict)
    """Requests sent per stage."""
    splits: dict[str, int] = Field(default_factory=dict)

    def count(self, field: str, key: str, n: int = 1) -> None:
        if n:
            bucket: dict[str, int] = getattr(self, field)
            bucket[key] = bucket.get(key, 0) + n

    def sample_errors(self, stage: str, messages: list[str], keep: int = 3) -> None:
        if messages:
            bucket = self.error_samples.setdefault(stage, [])
            bucket += messages[: max(0, keep - len(bucket))]
