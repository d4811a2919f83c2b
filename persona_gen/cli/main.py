"""Entry point: `persona-gen <group> <command>`.

Every expected failure is one line on stderr and a documented exit code
(persona_gen.errors, README "Exit codes"); only a bug prints a traceback (exit 1).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from persona_gen import __version__
from persona_gen.cli import (
    bench_cmd,
    census_cmd,
    config_cmd,
    cost_cmd,
    doctor_cmd,
    export_cmd,
    generate_cmd,
    models_cmd,
    personas_cmd,
    plan_cmd,
    prompts_cmd,
    run_cmd,
    storage_cmd,
)
from persona_gen.cli.conventions import Root
from persona_gen.errors import (
    EXIT_INTERRUPTED,
    PreflightError,
    exit_code_for,
    one_line,
)
from persona_gen.log import configure

app = typer.Typer(
    name="persona-gen",
    help=(
        "Census-grounded personas and persona-specific preference data (the PERSONA "
        "testbed), generated as a resumable Ray Data + vLLM batch run."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help and errors (conventions.Root applies the rest to every command).
    rich_markup_mode=None,
    cls=Root,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"persona-gen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Census-grounded personas and persona-specific preference data (the PERSONA testbed), generated as a resumable Ray Data + vLLM batch run."""


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
app.command("cost")(cost_cmd.plan_cost_cmd)
app.command("doctor")(doctor_cmd.doctor)
# Old names: hidden, one deprecation line (conventions.DEPRECATED_COMMANDS).
app.command("plan-cost", hidden=True)(cost_cmd.plan_cost_cmd)
app.command("export")(export_cmd.export)


def main(argv: list[str] | None = None) -> None:
    # Before any command logs: structlog's default sink is stdout, which carries results.
    configure()
    try:
        app(args=argv, standalone_mode=True, prog_name="persona-gen")
    except KeyboardInterrupt:
        typer.secho("error: interrupted", err=True, fg=typer.colors.RED)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            raise  # a bug: the traceback is the report
        # Checks before a run report every problem they found, one line each.
        lines = exc.problems if isinstance(exc, PreflightError) else [one_line(exc)]
        for line in lines:
            typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
        sys.exit(code)


if __name__ == "__main__":
    main()
