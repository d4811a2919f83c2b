"""Procedural psychodemographics: Big Five levels and curated-list draws per persona.

Each persona draws from its own generator seeded by (run seed, persona id, attempt), so a
persona's traits do not depend on which batch or worker it lands in, and a resample
(attempt + 1) gets fresh traits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from persona_gen.personas.big_five import sample_big_five
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.lists import ITEM_SEPARATOR, CuratedLists
from persona_gen.personas.seeds import derive_seed
from persona_gen.pipeline.columns import with_columns

PROCEDURAL_COLUMNS: tuple[str, ...] = (
    "big_five_scores", "defining_quirks", "mannerisms", "core_values", "categories",
    "persona_seed", "attempt",
)


def _pick(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    """k distinct items in draw order (k is capped at the list length)."""
    idx = rng.choice(len(items), size=min(k, len(items)), replace=False)
    return [items[i] for i in idx]


def draw_procedural(
    persona_id: str, seed: int, attempt: int, lists: CuratedLists, cfg: PersonasConfig
) -> dict[str, object]:
    persona_seed = derive_seed(seed, "persona", persona_id, attempt)
    rng = np.random.default_rng(persona_seed)
    return {
        "big_five_scores": sample_big_five(rng).render(),
        "defining_quirks": ITEM_SEPARATOR.join(_pick(rng, lists.quirks, cfg.n_quirks)),
        "mannerisms": ITEM_SEPARATOR.join(_pick(rng, lists.mannerisms, cfg.n_mannerisms)),
        "core_values": _pick(rng, lists.core_values, cfg.n_core_values),
        "categories": _pick(rng, lists.categories, cfg.n_categories),
        "persona_seed": persona_seed,
        "attempt": attempt,
    }


def add_procedural(
    people: pa.Table, seed: int, attempt: int, lists: CuratedLists, cfg: PersonasConfig
) -> pa.Table:
    """`people` (census rows with persona_id) plus the procedural columns."""
    draws = [
        draw_procedural(pid, seed, attempt, lists, cfg)
        for pid in people.column("persona_id").to_pylist()
    ]
    types: dict[str, pa.DataType] = {
        "big_five_scores": pa.string(), "defining_quirks": pa.string(),
        "mannerisms": pa.string(), "core_values": pa.list_(pa.string()),
        "categories": pa.list_(pa.string()), "persona_seed": pa.int64(), "attempt": pa.int32(),
    }
    columns = {c: pa.array([d[c] for d in draws], type=types[c]) for c in PROCEDURAL_COLUMNS}
    return with_columns(people, columns)
