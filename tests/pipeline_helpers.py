"""Helpers for pipeline tests: job configs, prompt files, reading a run back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from persona_gen.engines.base import Engine
from persona_gen.personas.build import build_personas
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.stats import PersonaStats
from persona_gen.pipeline.stage import Bound, Runner
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from persona_gen.storage import objects
from persona_gen.storage.uri import Location, resolve

TOPICS = ("family", "work", "money", "faith", "politics", "health", "school", "technology")


def write_prompt_file(path: Path, n: int, extra: list[str] = ()) -> Path:
    """n distinct value-laden questions (synthetic but well-formed), JSONL, with topics."""
    with path.open("w") as f:
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            text = f"Should a person put {topic} before personal freedom in case number {i}?"
            f.write(json.dumps({"opening_prompt": text, "topic": topic}) + "\n")
        for text in extra:
            f.write(json.dumps({"opening_prompt": text, "topic": "family"}) + "\n")
    return path


def write_config(path: Path, census_file: Path, prompt_file: Path, output: str,
                 **sections: Any) -> Path:
    cfg: dict[str, Any] = {
        "run": {"output": output, "seed": 11},
        "census": {"sources": [str(census_file)]},
        "personas": {"n": 8},
        "prompts": {"source": str(prompt_file), "text_column": "opening_prompt",
                    "topic_column": "topic"},
        "stages": {"defaults": {"model": "echo", "max_tokens": 32},
                   "consistency": {"enabled": False}, "controversy": {"enabled": False}},
        "pipeline": {"batch_size": 64, "actors": 1, "num_cpus_per_actor": 0.5,
                     "local_num_cpus": 2},
    }
    for key, value in sections.items():
        if key == "stages":  # per stage, so a test's stage keeps the others' settings
            for name, settings in value.items():
                cfg["stages"].setdefault(name, {}).update(settings)
        else:
            cfg.setdefault(key, {}).update(value)
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_folder(uri: str, sub: str) -> tuple[pa.Table, list[str]]:
    """Every Parquet file under a run folder (each must open on its own), concatenated."""
    loc = resolve(uri).child(sub)
    files = [loc.path] if sub.endswith(".parquet") else objects.list_files(loc, ".parquet")
    tables = []
    for path in files:
        with loc.fs.open_input_file(path) as f:
            tables.append(pq.read_table(f))
    if not tables:
        return pa.table({}), files
    return pa.concat_tables(tables, promote_options="default"), files


def loc_of(uri: str) -> Location:
    return resolve(uri)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a driver started in its own session and every process of its local Ray
    (Ray's workers have their own process groups)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(30)


def personas_with(census: pa.Table, enrich: Engine | None, judge: Engine | None,
                  cfg: PersonasConfig | None = None, seed: int = 0, resample: Any = None, *,
                  stages: dict[str, Any] | None = None,
                  runner: Runner | None = None, keep: int | None = None,
                  more: Any = None) -> tuple[pa.Table, PersonaStats]:
    """The persona build with the stages the recipe builds from `stages` (a config's
    `stages` section), bound to the engines given (None, or a disabled stage: not run)."""
    run = RunConfig.model_validate({"run": {"seed": seed}, "stages": stages or {}})

    def bound(name: str, engine: Engine | None) -> Bound | None:
        if engine is None or not R.stage(name).enabled(run):
            return None
        return Bound(R.build(run, name), engine)

    return build_personas(census, cfg or PersonasConfig(), seed, resample,
                          enrich=bound("enrich", enrich), consistency=bound("consistency", judge),
                          runner=runner, keep=keep, more=more)
