"""`persona-gen cost` (formerly plan-cost): what a run will cost on a given cluster, before it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from persona_gen.cli.options import ConfigOpt, SetOpt
from persona_gen.config.loader import apply_overrides, validate_model
from persona_gen.cost.estimate import (
    PAPER_PROMPTS,
    PRISM_SOURCE_PROMPTS,
    EngineInfo,
    TokenAssumptions,
    parse_cluster,
    plan_cost,
    workload_from_config,
)
from persona_gen.cost.model_files import with_model_files
from persona_gen.cost.model_size import note as model_note
from persona_gen.cost.render import print_plan
from persona_gen.cost.tables import ThroughputTable, load_table
from persona_gen.run.config import load_config


def registry_engines() -> dict[str, EngineInfo]:
    """Engine kind and tensor parallelism of every registered model."""
    from persona_gen.engines.registry import discover

    return {name: EngineInfo(kind=m.spec.engine, tensor_parallel_size=m.spec.tensor_parallel_size,
                             spec=m.spec)
            for name, m in discover().items()}


def has_bench_section(config: str | Path | None) -> bool:
    """Whether the config file names a `bench:` section (a bench config, not a job's)."""
    if config is None:
        return False
    import yaml

    from persona_gen.errors import ConfigError

    try:
        with open(config, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the config: {exc}", source=config) from None
    return isinstance(raw, dict) and "bench" in raw


def planning_table() -> ThroughputTable:
    """The throughput table, plus models it lacks whose model files say what their
    checkpoint is (`models add` writes that): derived figures for them."""
    return with_model_files(load_table())


def assume_help() -> str:
    """--assume's keys with their defaults, read off the assumptions themselves."""
    keys = ", ".join(f"{name} ({field.default})"
                     for name, field in TokenAssumptions.model_fields.items())
    return ("Override a size the config does not fix, e.g. --assume persona_tokens=800 "
            f"(repeatable). Keys and defaults: {keys}.")


def plan_cost_cmd(
    config: ConfigOpt = None,
    cluster: Annotated[str, typer.Option(
        "--cluster", help="GPUs as COUNTxTYPE, e.g. 8xH100, 4xA10G, 1xL4.")] = "8xH100",
    prompts: Annotated[int, typer.Option(
        "--prompts", min=1, help="Prompts after filtering (the paper kept 3,868).")] = PAPER_PROMPTS,
    source_prompts: Annotated[int, typer.Option(
        "--source-prompts", min=0, help="Prompts the controversy classifier reads "
        "(PRISM has 8,011 opening prompts).")] = PRISM_SOURCE_PROMPTS,
    assume: Annotated[list[str] | None, typer.Option(
        "--assume", help=assume_help())] = None,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    bench: Annotated[bool | None, typer.Option(
        "--bench/--job", help="Plan the config's PERSONA Bench (--bench) or its generation "
        "job (--job). Default: --bench when the config file has a `bench:` section.")] = None,
) -> None:
    """Estimate model calls, tokens, GPU-hours, wall time and storage for a config. For a
    bench config: requests, samples, judge calls, tokens, GPU-hours and wall time per model
    under test and mode, with `--prompts` the run's prompts (its held-out share benched)."""
    cfg = load_config(config, set_ or [])
    table = planning_table()
    tokens = validate_model(TokenAssumptions, apply_overrides({}, assume or []), "--assume")
    if bench if bench is not None else has_bench_section(config):
        from persona_gen.cost.bench import counts_from_config, plan_bench
        from persona_gen.cost.render import print_bench_plan

        counts, p, q, per = counts_from_config(cfg, prompts)
        bplan = plan_bench(cfg, counts, parse_cluster(cluster, table), table, registry_engines(),
                           tokens, source="config", personas=p, prompts=q,
                           prompts_per_persona=per)
        if as_json:
            typer.echo(bplan.model_dump_json(indent=2))
        else:
            print_bench_plan(bplan, Console(width=180))
        return
    plan = plan_cost(workload_from_config(cfg, prompts, tokens, source_prompts),
                     parse_cluster(cluster, table), table, registry_engines())
    # MoE and quantized models: what the plan took for them (active parameters, precision).
    for name in dict.fromkeys(s.model for s in plan.stages if s.model in table.models):
        found = model_note(name, table.models[name], table.derivation)
        if found is not None:
            plan.notes.append(found)
    if as_json:
        typer.echo(plan.model_dump_json(indent=2))
    else:
        print_plan(plan, Console(width=160))
