"""The prompt build: load -> rule filters -> controversy classifier -> topics -> split.

`build_prompts` is what the pipeline and `persona-gen prompts build` call. It is pure apart
from reading the source file and calling the engine: the caller decides where the table
and stats go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from persona_gen.errors import DataError
from persona_gen.hashing import stable_int
from persona_gen.log import get_logger
from persona_gen.pipeline.stage import Bound, run_in_process
from persona_gen.prompts import data as bundled
from persona_gen.prompts.classify import CONTROVERSIAL, LABEL_COLUMN
from persona_gen.prompts.config import PromptsConfig
from persona_gen.prompts.filters import (
    deduplicate,
    drop_empty,
    min_words_filter,
    question_mark_filter,
    split_by,
)
from persona_gen.prompts.load import load_prompts
from persona_gen.prompts.split import split_counts, stratified_split
from persona_gen.prompts.stats import PromptStats, StepCount, TopicSplit
from persona_gen.prompts.topics import column_topics, kmeans_topics
from persona_gen.storage.settings import S3Settings

OUTPUT_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("text", pa.string()), ("topic", pa.string()),
    ("split", pa.string()),
])
REJECTED_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("text", pa.string()), ("reason", pa.string()),
    ("error", pa.string()),
])


@dataclass(frozen=True)
class Selection:
    """Prompts that passed every filter, and every rejected row with its reason."""

    kept: pa.Table
    rejected: pa.Table
    stats: PromptStats


def source_of(cfg: PromptsConfig) -> tuple[str, str, str | None]:
    """(uri, text column, topic column) for the configured or the bundled prompt set."""
    if cfg.source:
        return cfg.source, cfg.text_column, cfg.topic_column
    return bundled.bundled_prompts_path(), bundled.TEXT_COLUMN, bundled.TOPIC_COLUMN


def select_prompts(cfg: PromptsConfig, classifier: Bound | None = None, *,
                   s3: S3Settings | None = None, seed: int = 0) -> Selection:
    """Load and filter, in the paper's order; the controversy classifier (a built stage and
    its engine) runs last, when given.

    `prompts.limit` keeps a seeded subset after the rule filters, before any model call.
    `s3` locates an s3:// source (endpoint, region); credentials come from the environment.
    """
    uri, text_column, topic_column = source_of(cfg)
    table = load_prompts(uri, text_column, topic_column, s3)
    stats = PromptStats(source=uri, rows=table.num_rows)
    rejected: list[pa.Table] = []

    def record(name: str, before: pa.Table, kept: pa.Table, out: pa.Table, errors: int = 0) -> None:
        stats.steps.append(StepCount(name=name, seen=before.num_rows, kept=kept.num_rows,
                                     rejected=out.num_rows, errors=errors))
        rejected.append(out)

    kept, out = drop_empty(table)
    record("empty", table, kept, out)
    before = kept
    kept, out = deduplicate(kept)
    record("duplicate", before, kept, out)
    before = kept
    kept, out = question_mark_filter(kept)
    record("question_mark", before, kept, out)
    before = kept
    kept, out = min_words_filter(kept, cfg.min_words)
    record("min_words", before, kept, out)
    if cfg.limit is not None and kept.num_rows > cfg.limit:
        before = kept
        kept, out = _seeded_subset(kept, cfg.limit, seed)
        record("limit", before, kept, out)

    if classifier is not None:
        stage = classifier.stage
        judged = run_in_process(stage, classifier.engine, kept)
        labels = judged.column(LABEL_COLUMN).to_pylist()
        errors = judged.column("error").to_pylist()
        n_errors = sum(e is not None for e in errors)
        keep = np.array([lab == CONTROVERSIAL for lab in labels], dtype=bool)
        before = kept
        kept, out = split_by(judged, keep, "controversy")
        kept = kept.select(before.column_names)
        record("controversy", before, kept, out, errors=n_errors)
        stats.classifier = classifier.engine.name
        if n_errors:
            get_logger(stage="prompts").warning(
                "classifier errors", errors=n_errors, rows=before.num_rows,
                first=next(e for e in errors if e is not None))
    stats.kept = kept.num_rows
    return Selection(kept=kept, rejected=_rejected_table(rejected), stats=stats)


def _seeded_subset(table: pa.Table, n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """n rows chosen by a seeded hash of their prompt id: the same rows for the same seed
    and set, whatever the file order. Returns (kept, the others)."""
    ids = table.column("prompt_id").to_pylist()
    chosen = set(sorted(range(len(ids)), key=lambda i: stable_int(seed, "limit", ids[i]))[:n])
    keep = np.array([i in chosen for i in range(len(ids))], dtype=bool)
    return split_by(table, keep, "limit")


def build_prompts(cfg: PromptsConfig, classifier: Bound | None, seed: int, *,
                  s3: S3Settings | None = None) -> tuple[pa.Table, PromptStats]:
    """Prompts (prompt_id, text, topic, split) and the counts behind them, in-process.

    Raises DataError (naming the source) when the file is unusable or nothing survives
    the filters.
    """
    sel = select_prompts(cfg, classifier, s3=s3, seed=seed)
    return finalize_prompts(sel.kept, cfg, seed, sel.stats)


def finalize_prompts(kept: pa.Table, cfg: PromptsConfig, seed: int,
                     stats: PromptStats | None = None) -> tuple[pa.Table, PromptStats]:
    """Topics and the train / held-out split for prompts that passed every filter.

    `kept` needs prompt_id, text and topic (null where the file had none). The result does
    not depend on the row order of `kept` (the pipeline reassembles it from blocks), and
    keeps that order.
    """
    if stats is None:
        stats = PromptStats(source=source_of(cfg)[0], rows=kept.num_rows)
    stats = stats.model_copy(deep=True)
    stats.kept = kept.num_rows
    if kept.num_rows == 0:
        counts = ", ".join(f"{s.name} -{s.rejected}" for s in stats.steps)
        raise DataError(f"no prompts left after the filters ({stats.rows} read; {counts})",
                        source=stats.source)
    texts = kept.column("text").to_pylist()
    ids = kept.column("prompt_id").to_pylist()
    given = kept.column("topic").to_pylist() if "topic" in kept.column_names else []
    topics = column_topics(given) if cfg.topic_column else None
    if topics is None:
        # Cluster in prompt_id order so that the topics, like the split, are a function of
        # the set of prompts and the seed only.
        order = sorted(range(len(ids)), key=ids.__getitem__)
        sorted_topics = kmeans_topics([texts[i] for i in order], cfg.n_topics, seed,
                                      cfg.topic_label_terms)
        topics = [""] * len(ids)
        for pos, i in enumerate(order):
            topics[i] = sorted_topics[pos]
        stats.topics_from = "kmeans"
    else:
        stats.topics_from = "column"
    splits = stratified_split(ids, topics, cfg.heldout_fraction, seed)
    stats.topics = {t: TopicSplit(**c) for t, c in split_counts(topics, splits).items()}
    stats.train = sum(c.train for c in stats.topics.values())
    stats.heldout = sum(c.heldout for c in stats.topics.values())
    table = pa.table({"prompt_id": ids, "text": texts, "topic": topics, "split": splits},
                     schema=OUTPUT_SCHEMA)
    return table, stats


def _rejected_table(parts: list[pa.Table]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in REJECTED_SCHEMA.names}
    for part in parts:
        for name in REJECTED_SCHEMA.names:
            values = (part.column(name).to_pylist() if name in part.column_names
                      else [None] * part.num_rows)
            cols[name].extend(values)
    return pa.table(cols, schema=REJECTED_SCHEMA)
