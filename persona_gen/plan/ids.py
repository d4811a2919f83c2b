"""Stable ids for the plan: pair ids, per-persona random streams, synthetic ids."""

from __future__ import annotations

import numpy as np

from persona_gen.hashing import hex_id, stable_int

_PLAN_TAG = stable_int("plan.assign")


def pair_id(persona_id: str, prompt_id: str) -> str:
    """16 hex digits of a hash of (persona_id, prompt_id): the same pair, the same id, in
    every run, so outputs keyed by it can be resumed and joined across runs."""
    return hex_id(persona_id, prompt_id)


def pair_ids(persona_ids: list[str], prompt_ids: list[str]) -> list[str]:
    return [hex_id(a, b) for a, b in zip(persona_ids, prompt_ids, strict=True)]


def persona_rng(seed: int, persona_id: str) -> np.random.Generator:
    """A random stream owned by one persona.

    A persona's prompts then depend only on the seed, its id and the prompt pools: adding
    or dropping other personas, or reordering them, leaves its pairs unchanged.
    """
    tag = stable_int(persona_id, size=16)
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, _PLAN_TAG, tag])


def synthetic_ids(prefix: str, n: int) -> list[str]:
    """Deterministic placeholder ids ('persona-000000', ...) for plans built without data."""
    width = max(6, len(str(max(n - 1, 0))))
    return [f"{prefix}-{i:0{width}d}" for i in range(n)]
