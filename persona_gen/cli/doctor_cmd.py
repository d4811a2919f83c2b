"""`persona-gen doctor`: what this machine can do, and what to fix."""

from __future__ import annotations

import typer

from persona_gen.cli.conventions import JsonOpt, echo_json


def doctor(json_: JsonOpt = False) -> None:
    """Say what this machine can run: CPU or GPU (count, type, driver, CUDA), vLLM and Ray against the tested pins, the bundled model, storage credentials per scheme (s3, gs, az), the Ray cluster (and any stale `ray start` cluster here), and the registered models that run here.

    Each line is ok, warn (works, with a limit) or fail (a run that needs it fails), with the fix. Starts nothing; exit 0 without a fail, 65 with one.
    """  # typer keeps line breaks: one line per paragraph
    from persona_gen.errors import EXIT_BAD_INPUT
    from persona_gen.run.doctor import diagnose

    report = diagnose()
    if json_:
        echo_json(report.as_json())
    else:
        for line in report.lines():
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(EXIT_BAD_INPUT)
