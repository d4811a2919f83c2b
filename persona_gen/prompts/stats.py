"""What a prompt build kept and rejected, step by step (written beside the prompts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from persona_gen.config.base import StrictModel


class StepCount(StrictModel):
    name: str
    """'empty', 'duplicate', 'question_mark', 'min_words' or 'controversy'."""
    seen: int
    kept: int
    rejected: int
    errors: int = 0
    """Rows the step could not judge (classifier call failed or answered off-label);
    they are rejected, and counted here as well as in `rejected`."""


class TopicSplit(StrictModel):
    train: int = 0
    heldout: int = 0


class PromptStats(StrictModel):
    source: str
    rows: int
    """Rows read from the file."""
    steps: list[StepCount] = Field(default_factory=list)
    classifier: str | None = None
    """Model that ran the controversy filter; None when that filter was skipped."""
    kept: int = 0
    topics_from: Literal["column", "kmeans"] = "kmeans"
    topics: dict[str, TopicSplit] = Field(default_factory=dict)
    train: int = 0
    heldout: int = 0

    def step(self, name: str) -> StepCount:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)
