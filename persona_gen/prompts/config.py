"""Prompt loading, filtering and splitting options."""

from __future__ import annotations

from persona_gen.config.base import StrictModel


class PromptsConfig(StrictModel):
    source: str | None = None
    """PRISM-style prompt file (JSONL, CSV or Parquet); default: the bundled prompt set."""
    text_column: str = "opening_prompt"
    min_words: int = 5
    classifier_model: str | None = "smollm2-135m-instruct"
    """Model for the controversy filter; null skips that filter."""
    heldout_fraction: float = 868 / 3868
    n_topics: int = 8
