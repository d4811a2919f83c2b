"""Stable ids for the plan: pair ids, per-persona random streams, synthetic ids."""

from __future__ import annotations

import hashlib

import numpy as np

# Separates the two halves so ('ab', 'c') and ('a', 'bc') never hash alike.
_SEP = "\x1f"
_PLAN_TAG = int.from_bytes(hashlib.blake2b(b"plan.assign", digest_size=8).digest(), "little")


def pair_id(persona_id: str, prompt_id: str) -> str:
    """16 hex digits of a hash of (persona_id, prompt_id): the same pair, the same id, in
    every run, so outputs keyed by it can be resumed and joined across runs."""
    key = f"{persona_id}{_SEP}{prompt_id}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def pair_ids(persona_ids: list[str], prompt_ids: list[str]) -> list[str]:
    blake = hashlib.blake2b
    return [
        blake(f"{a}{_SEP}{b}".encode(), digest_size=8).hexdigest()
        for a, b in zip(persona_ids, prompt_ids, strict=True)
    ]


def persona_rng(seed: int, persona_id: str) -> np.random.Generator:
    """A random stream owned by one persona.

    A persona's prompts then depend only on the seed, its id and the prompt pools: adding
    or dropping other personas, or reordering them, leaves its pairs unchanged.
    """
    tag = int.from_bytes(hashlib.blake2b(persona_id.encode(), digest_size=16).digest(), "little")
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, _PLAN_TAG, tag])


def synthetic_ids(prefix: str, n: int) -> list[str]:
    """Deterministic placeholder ids ('persona-000000', ...) for plans built without data."""
    width = max(6, len(str(max(n - 1, 0))))
    return [f"{prefix}-{i:0{width}d}" for i in range(n)]
