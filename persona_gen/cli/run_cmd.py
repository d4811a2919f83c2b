"""`persona-gen run` and `persona-gen status`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from persona_gen.cli.options import ConfigOpt, SetOpt

OutputOpt = Annotated[
    str | None,
    typer.Option("--output", "-o", help="Root URI for runs (path, file:// or s3://bucket/prefix); "
                 "overrides run.output."),
]
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Run id; an existing id resumes that run where it stopped."),
]


def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bars (default: on a terminal).")] = None,
) -> None:
    """Run the whole job (census sample, personas, prompts, plan, originals, critiques, revisions, verification) into OUTPUT/RUN_ID/.

    Every model stage runs on Ray Data with engine actors (RAY_ADDRESS or a local Ray) and commits Parquet blocks as it goes. Re-running with the same --run-id resumes: committed blocks are never generated again, and nothing is written twice.
    """  # typer keeps line breaks: one line per paragraph
    from persona_gen.config import load_config
    from persona_gen.feedback.job import run_job, summary_table

    cfg = load_config(config, set_ or [])
    summary = run_job(cfg, output=output, run_id=run_id, progress=progress)
    console = Console()
    console.print(summary_table(summary))
    if summary.example:
        console.print("[bold]Example pair[/bold]")
        for key, value in summary.example.items():
            console.print(f"[cyan]{key}[/cyan]: {value}")
    console.print(f"dataset: {summary.dataset_uri}")


def status(
    output: Annotated[str, typer.Option("--output", "-o", help="Root URI the run was written to.")],
    run_id: Annotated[str, typer.Option("--run-id", help="The run to inspect.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Rows done and planned per stage, read from storage alone (works from any machine)."""
    from persona_gen.config import load_config
    from persona_gen.feedback.folders import stages_for
    from persona_gen.pipeline.status import run_status
    from persona_gen.storage import objects
    from persona_gen.storage.layout import RunLayout

    cfg = load_config(config, set_ or [])
    layout = RunLayout.at(output, run_id, cfg.storage)
    if not objects.exists(layout.manifest):
        from persona_gen.errors import UserError

        raise UserError(f"no run '{run_id}' here (no manifest.json)", source=layout.base.uri)
    manifest = objects.read_json(layout.manifest)
    table = Table(title=f"run {run_id}: {manifest.get('status', '?')} "
                        f"(attempt {manifest.get('attempts', 1)}, updated {manifest.get('updated_at')})")
    for col in ("stage", "done", "planned", "errors", "blocks", "%"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for st in run_status(layout, stages_for(manifest.get("config", {}))):
        pct = f"{100 * (st.done + st.errors) / st.planned:.1f}" if st.planned else "-"
        table.add_row(st.stage, f"{st.done:,}", f"{st.planned:,}" if st.planned else "-",
                      f"{st.errors:,}", str(st.blocks), pct)
    Console().print(table)
