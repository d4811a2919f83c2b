"""Options shared by many commands, so they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from persona_gen.run.config import RunConfig
    from persona_gen.storage.runref import RunRef

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (see jobs/configs/ for examples)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override one config key, e.g. --set run.seed=7 (repeatable; validated like the file).",
    ),
]

# Every command that works on a run addresses it the same way: --run-id under --output
# (default run.output from the config), or --run <output>/<run_id> as one URI, its alias.
# --output is the runs root and nothing else (`-o`, its old short form, is a hidden alias:
# conventions.DEPRECATED_OPTIONS); `--set run.run_id=` and `--set run.output=` are the
# config keys these options override.
OutputOpt = Annotated[
    str | None,
    typer.Option("--output", "-o", help="Root URI for runs (path, file://, s3://, gs:// or az://bucket/prefix); "
                 "overrides run.output."),
]
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Run id (overrides run.run_id); an existing id resumes or "
                 "reads that run."),
]
RunUriOpt = Annotated[
    str | None,
    typer.Option("--run", help="The run as one URI, <output>/<run_id> (instead of --output "
                 "and --run-id)."),
]

CheckOpt = Annotated[
    bool,
    typer.Option("--check", help="Only run the checks the command starts with (models, "
                 "engines, inputs and their sizes, output writable, run id, an existing run's "
                 "config, the engine layout against the cluster), print each with ok or FAIL, "
                 "and exit: 0 all ok, 65 (or 4 where rerunning may fix it) otherwise. Starts "
                 "nothing."),
]
CheckJsonOpt = Annotated[
    bool,
    typer.Option("--json", help="With --check: the checks as one JSON object on stdout."),
]


def run_address(cfg: RunConfig, output: str | None, run_id: str | None, run: str | None = None,
                *, new: bool = False) -> tuple[str, str]:
    """(runs root, run id) as the user gave them, not yet validated (the checks before a
    run report a bad run id together with every other problem).

    `new`: without any run id, start a new run (a time-based id) instead of failing.
    """
    from persona_gen.errors import ConfigError, UserError
    from persona_gen.run.manifest import new_run_id

    if run is not None:
        if output or run_id:
            raise ConfigError("give either --run URI or --output/--run-id, not both",
                              source="--run")
        text = run.rstrip("/")
        if "/" not in text.removeprefix("s3://").strip("/"):
            raise UserError("a run URI is <root>/<run_id>, e.g. ./out/demo or "
                            "s3://bucket/runs/paper-v1", source=run)
        root, rid = text.rsplit("/", 1)
        return root or "/", rid
    rid = run_id or cfg.run.run_id
    if not rid:
        if not new:
            raise ConfigError("name the run: --run-id ID (or --set run.run_id=ID, or --run "
                              "URI)", source="run.run_id")
        rid = new_run_id()
    return output or cfg.run.output, rid


def run_ref(cfg: RunConfig, output: str | None, run_id: str | None, run: str | None = None,
            *, new: bool = False) -> RunRef:
    """The run a command works on, resolved once, the same way by every command.

    `new`: without any run id, start a new run (a time-based id) instead of failing.
    """
    from persona_gen.storage.runref import RunRef

    return RunRef.at(*run_address(cfg, output, run_id, run, new=new), cfg.storage)
