"""`persona-gen run` and `persona-gen status`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from persona_gen.cli.options import ConfigOpt, OutputOpt, RunIdOpt, RunUriOpt, SetOpt, run_ref

if TYPE_CHECKING:
    from persona_gen.run.job import JobSummary

PhaseOpt = Annotated[
    str | None,
    typer.Option("--until", help="Stop after this phase: personas, prompts, plan or pairs "
                 "(default: pairs, the whole job). A later run with the same --run-id carries on."),
]
OnlyOpt = Annotated[
    str | None,
    typer.Option("--only", help="Run just this phase (personas, prompts, plan or pairs); "
                 "the phases it reads must be done."),
]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal)."),
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
             progress: bool | None = None) -> JobSummary:
    """The job, whole or a part of it: what `run` and the per-phase commands all call."""
    from persona_gen.config import load_config
    from persona_gen.run.job import run_job

    cfg = load_config(config, set_ or [])
    ref = run_ref(cfg, output, run_id, run, new=only not in ("plan", "pairs"))
    return run_job(cfg, ref, until=_phase(until, "--until") or "pairs",
                   only=_phase(only, "--only"), progress=progress)


def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    until: PhaseOpt = None,
    only: OnlyOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Run the job (census sample, personas, prompts, plan, originals, critiques, revisions, verification) into OUTPUT/RUN_ID/.

    Every model stage runs on Ray Data with engine actors (RAY_ADDRESS or a local Ray) and commits Parquet blocks as it goes. Re-running with the same --run-id resumes: committed blocks are never generated again, and nothing is written twice. --until PHASE stops after a phase and writes exactly what the whole run writes there, so the whole run carries on from it.
    """  # typer keeps line breaks: one line per paragraph
    summary = run_view(config, set_, output, run_id, until=until, only=only, progress=progress)
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


def summary_table(summary: JobSummary) -> Table:
    table = Table(title=f"run {summary.run_id} ({summary.seconds:.0f} s) -> {summary.base_uri}")
    for col in ("stage", "done", "planned", "errors", "prompt tok", "output tok", "model s"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, rec in summary.stages.items():
        table.add_row(name, f"{rec.done:,}", f"{rec.planned:,}", f"{rec.errors:,}",
                      f"{rec.prompt_tokens:,}", f"{rec.output_tokens:,}", f"{rec.seconds:.1f}")
    return table


def status(
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    run: RunUriOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Rows done and planned per stage, read from storage alone (works from any machine)."""
    from persona_gen.config import load_config
    from persona_gen.config.run import RunConfig
    from persona_gen.errors import UserError
    from persona_gen.pipeline.status import run_status
    from persona_gen.run.recipe import recipe
    from persona_gen.storage import objects

    ref = run_ref(load_config(config, set_ or []), output, run_id, run)
    if not objects.exists(ref.manifest):
        raise UserError(f"no run '{ref.run_id}' here (no manifest.json)", source=ref.uri)
    manifest = objects.read_json(ref.manifest)
    try:
        run_cfg = RunConfig.model_validate(manifest.get("config", {}))
    except ValueError as exc:
        raise UserError(f"the stored config does not validate ({exc.__class__.__name__}); "
                        "was it written by another version?", source=ref.manifest.uri) from None
    phases = ", ".join(manifest.get("phases") or []) or "none yet"
    table = Table(title=f"run {ref.run_id}: {manifest.get('status', '?')} (phases done: "
                        f"{phases}; attempt {manifest.get('attempts', 1)}, updated "
                        f"{manifest.get('updated_at')})")
    for col in ("stage", "done", "planned", "errors", "blocks", "%"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for st in run_status(ref, recipe(run_cfg)):
        pct = f"{100 * (st.done + st.errors) / st.planned:.1f}" if st.planned else "-"
        table.add_row(st.stage, f"{st.done:,}", f"{st.planned:,}" if st.planned else "-",
                      f"{st.errors:,}", str(st.blocks), pct)
    Console().print(table)
    from persona_gen.run.quality import lines, summary  # cut rows, paper figures

    for line in lines(summary(ref, recipe(run_cfg))):
        print(line)
