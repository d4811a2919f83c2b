"""A run's census draws for its persona build: the first draw and fresh resampling draws.

The census sampler is imported lazily, so this module loads without it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pyarrow as pa

from persona_gen.personas.build import Resample
from persona_gen.personas.seeds import derive_seed
from persona_gen.run.config import RunConfig

Sampler = Callable[[RunConfig, int, int], pa.Table]
"""(config, n, seed) -> n census people."""


def census_sampler(cfg: RunConfig, n: int, seed: int) -> pa.Table:
    from persona_gen.census.sample import sample_people

    c = cfg.census
    return sample_people(c.sources, n=n, seed=seed, layout=c.layout, states=c.states,
                         min_age=c.min_age, max_age=c.max_age, stratify=c.stratify,
                         block_bytes=c.block_mb * 2**20, s3=cfg.storage)


def census_seed(cfg: RunConfig) -> int:
    return cfg.census.seed if cfg.census.seed is not None else cfg.run.seed


def resampler(cfg: RunConfig, sampler: Sampler) -> Resample:
    """Fresh census draws, each from its own seed derived from the census seed and call number."""
    calls = itertools.count(1)
    return lambda n: sampler(cfg, n, derive_seed(census_seed(cfg), "census-resample", next(calls)))
