"""A run's census draws for its persona build: the draw in draw order, extended round by
round (`on_inconsistent: drop`), and fresh resampling draws (`replace`).

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


class DrawOrder:
    """The run's census draw, read on in draw order: `next(k)` gives the k people after the
    ones already given, each with a persona id not used before.

    The weighted sampler ranks every census record by a key from the seed and keeps the top
    n (persona_gen.census.sample), so a draw of n + k from the same seed holds the draw of n
    and k more: the next people in draw order. Records already given are skipped by their
    (source, record id), which also holds where a stratified draw reallocates its places.
    """

    def __init__(self, cfg: RunConfig, sampler: Sampler = census_sampler) -> None:
        self.cfg, self.sampler = cfg, sampler
        self.seed = census_seed(cfg)
        self.parts: list[pa.Table] = []
        self._seen: set[tuple[str, str]] = set()
        self._ids: set[str] = set()
        self._given = 0

    def next(self, count: int) -> pa.Table:
        draw = self.sampler(self.cfg, self._given + count, self.seed)
        keys = list(zip(draw.column("source").to_pylist(),
                        [str(r) for r in draw.column("record_id").to_pylist()], strict=True))
        new = [i for i, k in enumerate(keys) if k not in self._seen][:count]
        rows = draw.take(pa.array(new, pa.int64()))
        ids = rows.column("persona_id").to_pylist()
        # A stratified draw of another size numbers its people otherwise: keep each id
        # unique across rounds.
        fixed = [pid if pid not in self._ids else f"{pid}-d{self._given + j}"
                 for j, pid in enumerate(ids)]
        if fixed != ids:
            rows = rows.set_column(rows.schema.get_field_index("persona_id"), "persona_id",
                                   pa.array(fixed, pa.string()))
        self._seen.update(keys[i] for i in new)
        self._ids.update(fixed)
        self._given += rows.num_rows
        self.parts.append(rows)
        return rows

    def table(self) -> pa.Table:
        """Everyone given so far, in draw order, with the last draw's metadata (its n set to
        the rows given)."""
        import json

        from persona_gen.census.sample import METADATA_KEY

        table = pa.concat_tables(self.parts, promote_options="permissive")
        meta = (self.parts[-1].schema.metadata or {}).get(METADATA_KEY)
        if meta is None:
            return table
        info = json.loads(meta)
        info["n"] = table.num_rows
        return table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()})
