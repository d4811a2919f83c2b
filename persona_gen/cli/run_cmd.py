"""`persona-gen run` and `persona-gen status`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import (
    CheckOpt,
    ConfigOpt,
    OutputOpt,
    RunIdOpt,
    RunUriOpt,
    SetOpt,
    run_address,
    run_ref,
)

if TYPE_CHECKING:
    from persona_gen.run.execute import RunSummary
    from persona_gen.run.preflight import Preflight
    from persona_gen.storage.runref import RunRef

Phase = Literal["personas", "prompts", "plan", "pairs"]
"""The run's phases (persona_gen.run.recipe.PHASES), as the choices --until and --only offer."""

PhaseOpt = Annotated[
    Phase | None,
    typer.Option("--until", help="Stop after this phase "
                 "(default: pairs, the whole run). A later run with the same --run-id carries on."),
]
OnlyOpt = Annotated[
    Phase | None,
    typer.Option("--only", help="Run just this phase; the phases it reads must be done."),
]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal)."),
]
RunJsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON object on stdout (with --check: the checks).")]
TemplateChangeOpt = Annotated[
    bool,
    typer.Option("--allow-template-change", help="Resume although a stage's prompt template "
                 "changed since the run started (the change is recorded in the manifest; "
                 "rows committed before keep the earlier text's answers)."),
]


def _phase(value: str | None, option: str) -> str | None:
    from persona_gen.errors import ConfigError
    from persona_gen.run.recipe import PHASES

    if value is not None and value not in PHASES:
        raise ConfigError(f"'{value}' is not a phase; expected one of {', '.join(PHASES)}",
                          source=option)
    return value




def run_view(config: ConfigOpt, set_: SetOpt, output: str | None, run_id: str | None,
             run: str | None = None, *, until: str | None = None, only: str | None = None,
             progress: bool | None = None, allow_template_change: bool = False) -> RunSummary:
    """The run, whole or a part of it: what `run` and the per-phase commands all call."""
    from persona_gen.errors import UserError
    from persona_gen.run.config import load_config
    from persona_gen.run.execute import execute, phases_to_run
    from persona_gen.run.preflight import check_run
    from persona_gen.storage.runref import RunRef

    cfg = load_config(config, set_ or [])
    root, rid = run_address(cfg, output, run_id, run, new=only not in ("plan", "pairs"))
    until_, only_ = _phase(until, "--until") or "pairs", _phase(only, "--only")
    try:
        ref = RunRef.at(root, rid, cfg.storage)
    except UserError:
        # A bad run id or output URI: report it with every other problem, then stop.
        report = check_run(cfg, root, rid, phases_to_run(until_, only_),
                           allow_template_change=allow_template_change)
        if report.ok:
            raise
        raise report.error() from None
    _interrupt_on_sigterm()
    return execute(cfg, ref, until=until_, only=only_, progress=progress,
                   allow_template_change=allow_template_change)


def check_view(config: ConfigOpt, set_: SetOpt, output: str | None, run_id: str | None,
               run: str | None = None, *, until: str | None = None, only: str | None = None,
               allow_template_change: bool = False) -> Preflight:
    """`run --check`: every check, nothing started or written (but the probe object)."""
    from persona_gen.run.config import load_config
    from persona_gen.run.execute import phases_to_run
    from persona_gen.run.preflight import check_run

    cfg = load_config(config, set_ or [])
    root, rid = run_address(cfg, output, run_id, run, new=only not in ("plan", "pairs"))
    phases = phases_to_run(_phase(until, "--until") or "pairs", _phase(only, "--only"))
    return check_run(cfg, root, rid, phases, allow_template_change=allow_template_change)


def print_checks(report: Preflight, as_json: bool) -> None:
    """The checks on stdout (a table, or one JSON object); any failure then raises the
    error that lists them, one line each on stderr, with its exit code."""
    import json

    if as_json:
        typer.echo(json.dumps(report.as_json(), separators=(",", ":")))
    else:
        typer.echo(report.table())
    if not report.ok:
        raise report.error()


def _interrupt_on_sigterm() -> None:
    """`ray job stop` and schedulers send SIGTERM: end like Ctrl-C, so the manifest records
    the run as failed (interrupted) instead of a silent stop. Main thread only."""
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    run_uri: RunUriOpt = None,
    until: PhaseOpt = None,
    only: OnlyOpt = None,
    progress: ProgressOpt = None,
    allow_template_change: TemplateChangeOpt = False,
    check: CheckOpt = False,
    json_: RunJsonOpt = False,
) -> None:
    """Run (or resume) a run (census sample, personas, prompts, plan, originals, critiques, revisions, verification) into OUTPUT/RUN_ID/.

    Every model stage runs on Ray Data with engine actors (RAY_ADDRESS or a local Ray) and commits Parquet blocks as it goes. Re-running with the same --run-id resumes: committed blocks are never generated again, and nothing is written twice. --until PHASE stops after a phase and writes exactly what the whole run writes there, so the whole run carries on from it.

    Before Ray starts, every run checks its models, engines, inputs, output, run id, an existing run's config and the engine layout, and reports every problem at once (exit 65); --check runs only these checks.
    """  # typer keeps line breaks: one line per paragraph
    if check:
        print_checks(check_view(config, set_, output, run_id, run_uri, until=until, only=only,
                                allow_template_change=allow_template_change), json_)
        return
    summary = run_view(config, set_, output, run_id, run_uri, until=until, only=only,
                       progress=progress, allow_template_change=allow_template_change)
    if json_:
        echo_json(summary_json(summary))
        return
    console = Console()
    console.print(summary_table(summary))
    if summary.example:
        console.print("[bold]Example pair[/bold]")
        for key, value in summary.example.items():
            console.print(f"[cyan]{key}[/cyan]: {value}")
    if "pairs" in summary.phases:
        console.print(f"dataset: {summary.dataset_uri}")
    else:
        console.print(f"run {summary.run_id}: phases done: {', '.join(summary.phases)} "
                      f"-> {summary.base_uri}")


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """What `run --json` prints: the run, its phases done, rows and tokens per stage."""
    return {
        "run_id": summary.run_id, "uri": summary.base_uri, "phases": summary.phases,
        "seconds": round(summary.seconds, 3),
        "dataset": summary.dataset_uri if "pairs" in summary.phases else None,
        "stages": {name: rec.model_dump(mode="json") for name, rec in summary.stages.items()},
        "example": summary.example or None,
    }


def summary_table(summary: RunSummary) -> Table:
    table = Table(title=f"run {summary.run_id} ({summary.seconds:.0f} s) -> {summary.base_uri}")
    for col in ("stage", "done", "planned", "errors", "prompt tok", "output tok", "model s"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, rec in summary.stages.items():
        table.add_row(name, f"{rec.done:,}", f"{rec.planned:,}", f"{rec.errors:,}",
                      f"{rec.prompt_tokens:,}", f"{rec.output_tokens:,}", f"{rec.seconds:.1f}")
    return table


def run_state(ref: RunRef, stale_after_s: float | None = None) -> dict[str, Any]:
    """A run's state from storage alone: the manifest's status (`stale` when a running
    run's heartbeat is older than run.stale_after_s) and rows per stage."""
    from persona_gen.errors import UserError
    from persona_gen.run.config import normalized
    from persona_gen.run.manifest import effective_status, heartbeat_age_s
    from persona_gen.run.quality import summary as quality_summary
    from persona_gen.run.recipe import recipe
    from persona_gen.run.status import run_status
    from persona_gen.storage import objects

    if not objects.exists(ref.manifest):
        raise UserError(f"no run '{ref.run_id}' here (no manifest.json)", source=ref.uri)
    manifest = objects.read_json(ref.manifest)
    try:
        run_cfg = normalized(manifest.get("config", {}))
    except UserError as exc:
        raise UserError(f"{exc}; was it written by another version?",
                        source=ref.manifest.uri) from None
    limit = stale_after_s if stale_after_s is not None else run_cfg.run.stale_after_s
    age = heartbeat_age_s(manifest)
    stages = []
    for st in run_status(ref, recipe(run_cfg)):
        stages.append({"stage": st.stage, "done": st.done, "planned": st.planned,
                       "errors": st.errors, "blocks": st.blocks,
                       "pct": round(100 * (st.done + st.errors) / st.planned, 1)
                       if st.planned else None})
    return {
        "run_id": ref.run_id, "uri": ref.uri,
        "status": effective_status(manifest, limit),
        "failure": manifest.get("failure"),
        "phases": manifest.get("phases") or [],
        "attempts": manifest.get("attempts", 1),
        "updated_at": manifest.get("updated_at"),
        "heartbeat_at": manifest.get("heartbeat_at"),
        "heartbeat_age_s": None if age is None else round(age, 1),
        "stale_after_s": limit,
        # Engines alive / planned, as the driver's node watch last saw them, and nodes lost.
        "engines": manifest.get("engines") or None,
        "node_losses": len(manifest.get("node_losses") or []),
        "stages": stages,
        # Cut rows per stage and the figures the paper reports (persona_gen.run.quality).
        "quality": quality_summary(ref, recipe(run_cfg)),
    }


def state_table(state: dict[str, Any]) -> Table:
    phases = ", ".join(state["phases"]) or "none yet"
    title = (f"run {state['run_id']}: {state['status']} (phases done: {phases}; attempt "
             f"{state['attempts']}, heartbeat {state['heartbeat_at']}")
    if state["heartbeat_age_s"] is not None:
        title += f", {state['heartbeat_age_s']:.0f} s ago"
    title += ")"
    engines = state.get("engines")
    if engines:
        title += f"\nengines alive {engines['alive']} / planned {engines['planned']}"
        if state.get("node_losses"):
            title += f"; nodes lost: {state['node_losses']}"
    if state["failure"]:
        title += f"\nfailed: {state['failure']['reason']}"
    table = Table(title=title)
    for col in ("stage", "done", "planned", "errors", "blocks", "%"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for st in state["stages"]:
        table.add_row(st["stage"], f"{st['done']:,}",
                      f"{st['planned']:,}" if st["planned"] else "-", f"{st['errors']:,}",
                      str(st["blocks"]), "-" if st["pct"] is None else f"{st['pct']:.1f}")
    return table


def status(
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    run: RunUriOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Print the status again every --interval seconds until the run is no "
        "longer running; the exit code is then the run's (0 complete or partial, else the "
        "failed run's code, 4 when stale).")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1,
                                            help="Seconds between --watch updates.")] = 10.0,
    stale_after: Annotated[float | None, typer.Option(
        "--stale-after", min=0.0, help="Seconds without a heartbeat after which a running run "
        "shows as stale (default: the run's run.stale_after_s).")] = None,
) -> None:
    """Status (running, complete, partial, failed or stale) and rows done and planned per stage, read from storage alone (works from any machine)."""
    import json
    import time

    from persona_gen.run.config import load_config
    from persona_gen.run.quality import lines as quality_lines

    ref = run_ref(load_config(config, set_ or []), output, run_id, run)
    console = Console()
    while True:
        state = run_state(ref, stale_after)
        if json_:
            typer.echo(json.dumps(state, separators=(",", ":")))
        else:
            console.print(state_table(state))
            for line in quality_lines(state["quality"]):
                typer.echo(line)
        if not watch or state["status"] != "running":
            break
        time.sleep(interval)
    if watch:
        raise typer.Exit(_watch_exit_code(state))


def _watch_exit_code(state: dict[str, Any]) -> int:
    from persona_gen.errors import EXIT_BUG, EXIT_INFRASTRUCTURE

    if state["status"] in ("complete", "partial"):
        return 0
    if state["status"] == "stale":
        return EXIT_INFRASTRUCTURE
    return int((state["failure"] or {}).get("exit_code", EXIT_BUG))
