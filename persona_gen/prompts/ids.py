"""Text normalization and stable prompt ids.

Two prompts that differ only in case, Unicode form or spacing are the same prompt: they
share a normalized form, hence a prompt_id, and de-duplication keeps the first.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from persona_gen.hashing import hex_id, stable_int


def normalize_text(text: str) -> str:
    """NFKC (full-width and compatibility forms fold together), collapsed whitespace, casefold."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def prompt_id(text: str) -> str:
    """16 hex digits of a hash of the normalized text: stable across runs and machines."""
    return hex_id(normalize_text(text))


def stage_rng(seed: int, label: str) -> np.random.Generator:
    """A generator for one named step, derived from the run's master seed.

    Mixing in a label keeps steps independent: changing how one step draws never shifts
    another step's numbers.
    """
    tag = stable_int(label)
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, tag])
