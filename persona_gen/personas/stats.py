"""What a persona build did, for logs and the run manifest."""

from __future__ import annotations

from pydantic import Field

from persona_gen.config.base import StrictModel


class FirstRound(StrictModel):
    """The first round's checks over the census draw: the figure comparable with the
    paper's dropped share (PERSONA, arXiv 2407.17387, personas: about 8.5%), whatever
    later rounds (`on_inconsistent: replace`) did."""

    personas: int = 0
    """Persona slots checked (the census draw)."""
    rejected_by_rule: int = 0
    """Rejected by at least one named rule (before or after enrichment)."""
    judged: int = 0
    """Passed the rules and reached the model judge."""
    rejected_by_judge: int = 0
    unusable_output: int = 0
    """Enrichment or judge output that could not be parsed (not a consistency verdict)."""


class PersonaStats(StrictModel):
    requested: int = 0
    """Personas asked for: personas.n when a `drop` build draws until that many are kept,
    else the slots given (census rows)."""
    drawn: int = 0
    """Census people drawn, every round included. With `drop`: kept + dropped + surplus."""
    kept: int = 0
    dropped: int = 0
    """People (drop) or slots (replace) lost: rejected (drop), still inconsistent or
    unusable after max_resamples, or unfixable."""
    rejected_by_rule: int = 0
    """Personas that broke at least one named rule (with `replace`, each try counts)."""
    rejected_by_judge: int = 0
    """Personas the model judge called inconsistent (with `replace`, each try counts)."""
    unusable: int = 0
    """With `drop`: people lost because their model output was still unusable after
    max_resamples (not a verdict on them)."""
    surplus: int = 0
    """With `drop`: people who passed every check but came after the first personas.n
    survivors in draw order (a top-up round draws a little more than it expects to need)."""
    resampled: int = 0
    """Replacement census draws made (rows) for `replace` slots."""
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
    on_inconsistent: str = "replace"
    first_round: FirstRound = Field(default_factory=FirstRound)

    def count(self, field: str, key: str, n: int = 1) -> None:
        if n:
            bucket: dict[str, int] = getattr(self, field)
            bucket[key] = bucket.get(key, 0) + n

    def sample_errors(self, stage: str, messages: list[str], keep: int = 3) -> None:
        if messages:
            bucket = self.error_samples.setdefault(stage, [])
            bucket += messages[: max(0, keep - len(bucket))]
