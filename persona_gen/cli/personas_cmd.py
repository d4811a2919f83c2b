"""`persona-gen personas ...`"""

from __future__ import annotations

import typer

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import ConfigOpt, OutputOpt, RunIdOpt, RunUriOpt, SetOpt

app = typer.Typer(help="Build and inspect personas.", no_args_is_help=True)


@app.command("build")
def build(config: ConfigOpt = None, set_: SetOpt = None, output: OutputOpt = None,
          run_id: RunIdOpt = None, run: RunUriOpt = None, json_: JsonOpt = False) -> None:
    """The run's personas phase (`persona-gen run --only personas`): sample census people, add traits, enrich and check them, and write <output>/<run_id>/personas/personas.parquet (plus stats.json). A later `persona-gen run` with the same run id carries on from it."""
    from persona_gen.cli.run_cmd import run_view
    from persona_gen.personas.stats import PersonaStats
    from persona_gen.run.recipe import PERSONA_STATS, PERSONAS
    from persona_gen.storage import objects

    summary = run_view(config, set_, output, run_id, run, only="personas", progress=False)
    ref = summary.run
    s = PersonaStats.model_validate(objects.read_json(ref.child(PERSONA_STATS)))
    if json_:
        echo_json({"run_id": summary.run_id, "uri": ref.child(PERSONAS).uri,
                   "stats": s.model_dump(mode="json")})
        return
    typer.echo(
        f"personas: kept {s.kept:,} of {s.requested:,} (train {s.splits.get('train', 0):,}, "
        f"test {s.splits.get('test', 0):,}); census people drawn {s.drawn:,}; dropped "
        f"{s.dropped:,}; resampled {s.resampled:,}"
        + (f"; passed but beyond the count {s.surplus:,}" if s.surplus else "")
    )
    if s.rejections:
        typer.echo("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(s.rejections.items())))
    if s.invalid_outputs:
        typer.echo("invalid model outputs: "
                   + ", ".join(f"{k} {v}" for k, v in sorted(s.invalid_outputs.items())))
    typer.echo(f"run {summary.run_id}: {ref.child(PERSONAS).uri}")
