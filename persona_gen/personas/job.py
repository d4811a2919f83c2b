"""Build a run's personas from its config: census draw, engines, build, atomic write.

Used by `persona-gen personas build`. The census sampler and the engine factory are
imported lazily (and can be passed in), so this module loads without either.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from persona_gen.config.run import RunConfig
from persona_gen.engines.base import Engine
from persona_gen.errors import ConfigError
from persona_gen.personas.build import Resample, build_personas
from persona_gen.personas.seeds import derive_seed
from persona_gen.personas.stats import PersonaStats
from persona_gen.storage import objects
from persona_gen.storage.layout import RunLayout

PERSONAS_FILE = "personas.parquet"
STATS_FILE = "stats.json"

Sampler = Callable[[RunConfig, int, int], pa.Table]
"""(config, n, seed) -> n census people."""
EngineFactory = Callable[[str], Engine]


@dataclass(frozen=True)
class PersonasReport:
    uri: str
    stats: PersonaStats


def census_sampler(cfg: RunConfig, n: int, seed: int) -> pa.Table:
    from persona_gen.census.sample import sample_people

    c = cfg.census
    return sample_people(c.sources, n=n, seed=seed, layout=c.layout, states=c.states,
                         min_age=c.min_age, max_age=c.max_age, stratify=c.stratify,
                         block_bytes=c.block_mb * 2**20)


def census_seed(cfg: RunConfig) -> int:
    return cfg.census.seed if cfg.census.seed is not None else cfg.run.seed


def default_engine_factory(name: str) -> Engine:
    from persona_gen.engines.factory import create_engine

    return create_engine(name)


def resampler(cfg: RunConfig, sampler: Sampler) -> Resample:
    """Fresh census draws, each from its own seed derived from the census seed and call number."""
    calls = itertools.count(1)
    return lambda n: sampler(cfg, n, derive_seed(census_seed(cfg), "census-resample", next(calls)))


def open_engines(cfg: RunConfig, factory: EngineFactory) -> dict[str, Engine]:
    """One engine per distinct model name: enrichment and judge share it when they can."""
    names = [cfg.personas.enrich_model]
    if cfg.personas.model_consistency_check:
        names.append(cfg.personas.judge_model)
    engines: dict[str, Engine] = {}
    try:
        for name in dict.fromkeys(names):
            engines[name] = factory(name)
    except BaseException:
        for engine in engines.values():  # do not leak a loaded model when the next one fails
            engine.close()
        raise
    return engines


def build_run_personas(
    cfg: RunConfig,
    run_id: str,
    *,
    sampler: Sampler = census_sampler,
    engine_factory: EngineFactory = default_engine_factory,
) -> PersonasReport:
    if not cfg.census.sources:
        raise ConfigError("no census files listed (PUMS psam_p*.csv / csv_p??.zip or NIST "
                          "excerpt CSVs)", source="census.sources")
    layout = RunLayout.at(cfg.run.output, run_id, cfg.storage)
    census = sampler(cfg, cfg.census.n, census_seed(cfg))
    engines = open_engines(cfg, engine_factory)
    try:
        table, stats = build_personas(
            census,
            engines[cfg.personas.enrich_model],
            engines.get(cfg.personas.judge_model),
            cfg.personas,
            cfg.run.seed,
            resampler(cfg, sampler),
        )
    finally:
        for engine in engines.values():
            engine.close()
    target = layout.personas.child(PERSONAS_FILE)
    objects.write_table_atomic(target, table)
    objects.write_json_atomic(layout.personas.child(STATS_FILE), stats.model_dump(mode="json"))
    _record_in_manifest(layout, cfg, stats)
    return PersonasReport(uri=target.uri, stats=stats)


def _record_in_manifest(layout: RunLayout, cfg: RunConfig, stats: PersonaStats) -> None:
    from persona_gen.pipeline.manifest import load_or_create

    manifest = load_or_create(layout, cfg.model_dump(mode="json"), cfg.run.seed)
    manifest.counts["personas"] = stats.model_dump(mode="json")
    manifest.save(layout)
