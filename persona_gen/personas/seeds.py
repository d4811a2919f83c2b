"""Per-persona seeds derived from the run seed, so draws never depend on batch layout."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed from the master seed and any labels (persona id, attempt, ...).

    Hash-based rather than `seed + i` so that neighbouring personas get unrelated streams
    and the same persona gets the same stream wherever and in whatever order it runs.
    """
    text = "\x1f".join([str(seed), *(str(p) for p in parts)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
