"""Prompt loading, filtering and splitting options (PERSONA, arXiv 2407.17387: prompts).

The controversy filter is a model stage: its settings are in `stages.controversy`."""

from __future__ import annotations

from pydantic import Field

from persona_gen.config.base import StrictModel


class PromptsConfig(StrictModel):
    source: str | None = None
    """PRISM-style prompt file (JSONL, CSV or Parquet; a path, file://, s3://, gs:// or az:// URI);
    default: the bundled prompt set."""
    text_column: str = "opening_prompt"
    """Column holding the prompt text in `source` (PRISM's name by default)."""
    topic_column: str | None = "topic"
    """Column with a ready-made topic per prompt; used when every kept prompt has one,
    otherwise topics come from TF-IDF + k-means. Null always clusters."""
    min_words: int = Field(default=5, ge=1)
    limit: int | None = Field(default=None, ge=1)
    """Keep a seeded random subset of this many prompts after the rule filters (small runs
    and demos: the classifier and the original answers then cover only these)."""
    heldout_fraction: float = Field(default=868 / 3868, ge=0.0, le=1.0)
    """Share of kept prompts held out, stratified by topic (paper: 868 of 3,868)."""
    n_topics: int = Field(default=8, ge=1)
    """Clusters for k-means topics (ignored when the topic column is used)."""
    topic_label_terms: int = Field(default=3, ge=1)
    """Top TF-IDF terms that name each k-means topic."""
