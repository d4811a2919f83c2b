"""Train/test split of personas, deterministic from the seed and independent of row order."""

from __future__ import annotations

from collections.abc import Sequence

from persona_gen.personas.record import Split
from persona_gen.personas.seeds import derive_seed


def held_out_count(n: int, test_fraction: float) -> int:
    """Held-out personas for n kept ones (paper: 586 of 1,586)."""
    return min(n, max(0, round(n * test_fraction)))


def assign_splits(persona_ids: Sequence[str], test_fraction: float, seed: int) -> dict[str, Split]:
    """Rank ids by a seeded hash and hold out the first ones as test.

    Hash ranking, not a shuffle of the list, so a persona's split does not change when the
    rows arrive in another order.
    """
    if len(set(persona_ids)) != len(persona_ids):
        raise ValueError("persona ids must be unique to split them")
    ranked = sorted(persona_ids, key=lambda pid: (derive_seed(seed, "split", pid), pid))
    n_test = held_out_count(len(ranked), test_fraction)
    return {pid: ("test" if i < n_test else "train") for i, pid in enumerate(ranked)}
