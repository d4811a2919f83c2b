"""Entry point: `persona-gen <group> <command>`; every UserError is one line and exit 2."""

from __future__ import annotations

import sys

import typer

from persona_gen.cli import (
    bench_cmd,
    census_cmd,
    config_cmd,
    cost_cmd,
    export_cmd,
    generate_cmd,
    models_cmd,
    personas_cmd,
    plan_cmd,
    prompts_cmd,
    run_cmd,
    storage_cmd,
)
from persona_gen.errors import UserError

app = typer.Typer(
    name="persona-gen",
    help=(
        "Census-grounded personas and persona-specific preference data (the PERSONA "
        "testbed), generated as a resumable Ray Data + vLLM batch job."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(storage_cmd.app, name="storage")
app.add_typer(models_cmd.app, name="models")
app.command("generate")(generate_cmd.generate)
app.add_typer(census_cmd.app, name="census")
app.add_typer(personas_cmd.app, name="personas")
app.add_typer(bench_cmd.app, name="bench")
app.add_typer(prompts_cmd.app, name="prompts")
app.command("plan")(plan_cmd.plan)
app.command("run")(run_cmd.run)
app.command("status")(run_cmd.status)
app.command("plan-cost")(cost_cmd.plan_cost_cmd)
app.command("export")(export_cmd.export)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
