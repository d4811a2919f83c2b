"""Per-persona seeds derived from the run seed, so draws never depend on batch layout."""

from __future__ import annotations

from persona_gen.hashing import stable_seed


def derive_seed(seed: int, *parts: object) -> int:
    """A stable seed from the master seed and any labels (persona id, attempt, ...).

    Hash-based rather than `seed + i` so that neighbouring personas get unrelated streams
    and the same persona gets the same stream wherever and in whatever order it runs.
    """
    return stable_seed(seed, *parts)
