"""Persona x prompt assignment (PERSONA, arXiv 2407.17387: feedback pairs).

Each persona draws, independently of its demographics, `train + seen` distinct prompts
from the train pool (the first `train` become train pairs, the rest test pairs on seen
prompts) and `heldout` distinct prompts from the held-out pool (test pairs). Rows are
grouped by persona, in the order personas are given, so requests sharing a persona's text
reach the engine together and hit its prefix cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from persona_gen.errors import DataError
from persona_gen.plan.config import PlanConfig
from persona_gen.plan.ids import pair_ids, persona_rng

TRAIN, TEST = "train", "test"
PROMPT_TRAIN, PROMPT_HELDOUT = "train", "heldout"
PLAN_SCHEMA = pa.schema([
    ("pair_id", pa.string()),
    ("persona_id", pa.string()),
    ("prompt_id", pa.string()),
    ("question_type", pa.string()),
    ("prompt_split", pa.string()),
    ("seen", pa.bool_()),
])


@dataclass(frozen=True)
class PairCounts:
    """Pairs per persona actually drawn from the pools at hand."""

    train: int
    seen_test: int
    heldout_test: int

    @property
    def total(self) -> int:
        return self.train + self.seen_test + self.heldout_test


def pair_counts(cfg: PlanConfig, n_train_prompts: int, n_heldout_prompts: int) -> PairCounts:
    """The configured counts, shrunk where a pool is too small to draw them without repeats.

    The train pool's two uses shrink together, keeping their ratio (100:50 stays 2:1).
    """
    train, seen = cfg.train_pairs_per_persona, cfg.seen_test_pairs_per_persona
    want = train + seen
    if want > n_train_prompts:
        train = int(np.floor(n_train_prompts * train / want + 0.5))
        seen = n_train_prompts - train
    heldout = min(cfg.heldout_test_pairs_per_persona, n_heldout_prompts)
    return PairCounts(train, seen, heldout)


def build_plan(persona_ids: list[str], train_prompt_ids: list[str],
               heldout_prompt_ids: list[str], cfg: PlanConfig, seed: int) -> pa.Table:
    """The plan table (PLAN_SCHEMA): one row per (persona, prompt) pair, no repeats."""
    _check_ids(persona_ids, train_prompt_ids, heldout_prompt_ids)
    # Pools sorted so the plan depends on the set of prompts, not on their file order.
    train_pool = np.array(sorted(train_prompt_ids), dtype=object)
    heldout_pool = np.array(sorted(heldout_prompt_ids), dtype=object)
    counts = pair_counts(cfg, len(train_pool), len(heldout_pool))
    n_seen_pool = counts.train + counts.seen_test
    n_personas = len(persona_ids)

    train_idx = np.empty((n_personas, n_seen_pool), dtype=np.int64)
    heldout_idx = np.empty((n_personas, counts.heldout_test), dtype=np.int64)
    for row, pid in enumerate(persona_ids):
        rng = persona_rng(seed, pid)
        train_idx[row] = _draw(rng, len(train_pool), n_seen_pool)
        heldout_idx[row] = _draw(rng, len(heldout_pool), counts.heldout_test)

    # Plain lists from here on: pyarrow converts them without going through pandas.
    prompts = np.hstack([train_pool[train_idx], heldout_pool[heldout_idx]]).ravel().tolist()
    personas = np.repeat(np.array(persona_ids, dtype=object), counts.total).tolist()
    qtype = [TRAIN] * counts.train + [TEST] * (counts.seen_test + counts.heldout_test)
    psplit = [PROMPT_TRAIN] * n_seen_pool + [PROMPT_HELDOUT] * counts.heldout_test
    seen = [False] * counts.train + [True] * counts.seen_test + [False] * counts.heldout_test

    ids = pair_ids(personas, prompts)
    if len(set(ids)) != len(ids):
        # 64-bit hashes over distinct pairs: would take billions of pairs to happen.
        raise RuntimeError("pair_id collision; widen the pair id hash")
    return pa.table(
        {
            "pair_id": pa.array(ids, pa.string()),
            "persona_id": pa.array(personas, pa.string()),
            "prompt_id": pa.array(prompts, pa.string()),
            "question_type": _tiled(qtype, n_personas, pa.string()),
            "prompt_split": _tiled(psplit, n_personas, pa.string()),
            "seen": _tiled(seen, n_personas, pa.bool_()),
        },
        schema=PLAN_SCHEMA,
    )


def _draw(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k distinct indices below n, in random order.

    Sorting uniform keys is a uniform random permutation, and it uses only the bit
    generator's doubles, whose stream NumPy keeps stable across releases (unlike the
    algorithms behind Generator.choice/permutation).
    """
    if k == 0:
        return np.empty(0, dtype=np.int64)
    keys = rng.random(n)
    top = np.argpartition(keys, k - 1)[:k] if k < n else np.arange(n)
    return top[np.argsort(keys[top], kind="stable")]


def _tiled(pattern: list, times: int, type_: pa.DataType) -> pa.Array:
    return pa.array(pattern * times, type_)


def _check_ids(persona_ids: list[str], train: list[str], heldout: list[str]) -> None:
    for name, ids in (("persona_id", persona_ids), ("train prompt_id", train),
                      ("held-out prompt_id", heldout)):
        if any(not isinstance(i, str) or not i for i in ids):
            raise DataError(f"every {name} must be a non-empty string", source="plan")
        if len(set(ids)) != len(ids):
            dup = _first_duplicate(ids)
            raise DataError(f"{name} '{dup}' appears more than once", source="plan")
    both = set(train) & set(heldout)
    if both:
        raise DataError(f"prompt_id '{min(both)}' is in both the train and held-out prompts",
                        source="plan")


def _first_duplicate(ids: list[str]) -> str:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return ""
