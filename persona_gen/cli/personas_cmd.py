"""`persona-gen personas ...`"""

from __future__ import annotations

import typer

from persona_gen.cli.options import ConfigOpt, SetOpt

app = typer.Typer(help="Build and inspect personas.", no_args_is_help=True)


@app.command("build")
def build(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Sample census people, add traits, enrich and check them, and write
    <run.output>/<run_id>/personas/personas.parquet (plus stats.json)."""
    from persona_gen.config import load_config
    from persona_gen.log import bind_run, configure
    from persona_gen.personas.job import build_run_personas
    from persona_gen.pipeline.manifest import new_run_id

    cfg = load_config(config, set_ or [])
    configure(level=cfg.run.log_level)
    run_id = cfg.run.run_id or new_run_id()
    bind_run(run_id)
    report = build_run_personas(cfg, run_id)
    s = report.stats
    typer.echo(
        f"personas: kept {s.kept:,} of {s.requested:,} (train {s.splits.get('train', 0):,}, "
        f"test {s.splits.get('test', 0):,}); dropped {s.dropped:,}; resampled {s.resampled:,}"
    )
    if s.rejections:
        typer.echo("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(s.rejections.items())))
    if s.invalid_outputs:
        typer.echo("invalid model outputs: "
                   + ", ".join(f"{k} {v}" for k, v in sorted(s.invalid_outputs.items())))
    typer.echo(f"run {run_id}: {report.uri}")
