"""Stable hashing: the one place ids, seeds and coins are derived from text.

Every derived value hashes its parts joined by the unit separator (so ("ab", "c") and
("a", "bc") never collide) with BLAKE2b, the same in every process, run and machine.
Seeds are 31-bit non-negative integers: the width every engine (vLLM, OpenAI-compatible
servers, numpy) accepts.
"""

from __future__ import annotations

import hashlib

SEP = "\x1f"
SEED_BITS = 31


def digest(*parts: object, size: int = 8) -> bytes:
    """BLAKE2b of the parts (str() of each, joined by SEP), `size` bytes."""
    text = SEP.join(str(p) for p in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


def hex_id(*parts: object, size: int = 8) -> str:
    """An id: 2 x `size` hex digits."""
    return digest(*parts, size=size).hex()


def stable_int(*parts: object, size: int = 8) -> int:
    """An unsigned integer of `size` bytes (tags for random streams, sort keys)."""
    return int.from_bytes(digest(*parts, size=size), "little")


def stable_seed(*parts: object) -> int:
    """A seed in [0, 2**31): for engines, numpy generators and sampling."""
    return stable_int(*parts, size=4) & ((1 << SEED_BITS) - 1)


def coin(*parts: object) -> bool:
    """A fair, stable coin (which side an answer is shown on, against position bias)."""
    return digest(*parts, size=1)[0] % 2 == 0
