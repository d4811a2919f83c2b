"""Rule filters applied before any model is asked (PERSONA, arXiv 2407.17387: prompts; in this order):
drop empty rows, de-duplicate, keep questions (a question mark), keep prompts of at least
`min_words` words.

Each step returns (kept, rejected); rejected rows carry a `reason` column naming the step,
so a caller can count, inspect or export them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.prompts.ids import normalize_text, prompt_id

# Full-width '？' is what many CJK keyboards type for a question mark.
QUESTION_MARKS = ("?", "？")


def has_question_mark(text: str) -> bool:
    return any(q in text for q in QUESTION_MARKS)


def word_count(text: str) -> int:
    """Whitespace-separated tokens with at least one letter or digit (a lone '?' or '-' is
    punctuation, not a word)."""
    return sum(1 for tok in text.split() if any(ch.isalnum() for ch in tok))


def split_by(table: pa.Table, keep: np.ndarray, reason: str) -> tuple[pa.Table, pa.Table]:
    """Rows where `keep` is true, and the others with `reason` appended."""
    mask = pa.array(keep, pa.bool_())
    rejected = table.filter(pc.invert(mask))
    reasons = pa.array([reason] * rejected.num_rows, pa.string())
    return table.filter(mask), rejected.append_column("reason", reasons)


def drop_empty(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    texts = table.column("text").to_pylist()
    keep = np.array([bool(t and t.strip()) for t in texts], dtype=bool)
    return split_by(table, keep, "empty")


def deduplicate(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Add `prompt_id` (hash of the normalized text), trim the text, keep first occurrences."""
    texts = [t.strip() for t in table.column("text").to_pylist()]
    ids = [prompt_id(t) for t in texts]
    seen: set[str] = set()
    keep = np.zeros(len(ids), dtype=bool)
    for i, pid in enumerate(ids):
        if pid not in seen:
            seen.add(pid)
            keep[i] = True
    table = table.set_column(table.column_names.index("text"), "text", pa.array(texts, pa.string()))
    table = table.add_column(0, "prompt_id", pa.array(ids, pa.string()))
    return split_by(table, keep, "duplicate")


def question_mark_filter(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    keep = np.array([has_question_mark(t) for t in table.column("text").to_pylist()], dtype=bool)
    return split_by(table, keep, "question_mark")


def min_words_filter(table: pa.Table, min_words: int) -> tuple[pa.Table, pa.Table]:
    texts = table.column("text").to_pylist()
    keep = np.array([word_count(t) >= min_words for t in texts], dtype=bool)
    return split_by(table, keep, "min_words")


__all__ = [
    "deduplicate", "drop_empty", "has_question_mark", "min_words_filter", "normalize_text",
    "question_mark_filter", "split_by", "word_count",
]
