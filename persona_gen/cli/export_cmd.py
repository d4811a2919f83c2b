"""`persona-gen export`: publish a run as a Hugging Face dataset folder."""

from __future__ import annotations

from typing import Annotated

import typer

from persona_gen.cli.options import ConfigOpt, OutputOpt, RunIdOpt, RunUriOpt, SetOpt, run_ref
from persona_gen.export.rows import DataFormat


def export(
    to: Annotated[str, typer.Option(
        "--to", help="Folder to write (a path or s3://, gs://, az://bucket/prefix); must be empty or new.")],
    fmt: Annotated[DataFormat, typer.Option(
        "--format", help="paper: the paper's columns plus ids, splits and the verdict; "
        "trl-dpo: those plus TRL's conversational prompt/chosen/rejected; trl-dpo-only: ids, "
        "splits and prompt/chosen/rejected.")] = DataFormat.paper,
    verified_only: Annotated[bool, typer.Option(
        "--verified-only", help="Keep only pairs whose judge preferred the revision.")] = False,
    max_shard_mb: Annotated[int, typer.Option(
        "--max-shard-mb", min=1, help="Close a split file once this much data is in it.")] = 500,
    fidelity: Annotated[bool, typer.Option(
        "--fidelity/--no-fidelity", help="Compute the census fidelity table for the card when "
        "the run has no report (re-reads the census files it sampled).")] = True,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a non-empty target folder.")] = False,
    reasoning: Annotated[bool, typer.Option(
        "--reasoning", help="Keep the <stage>_reasoning columns of stages run with thinking "
        "on (left out by default).")] = False,
    run: RunUriOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write a folder that `datasets.load_dataset(FOLDER)` loads: data/ with train and test (the paper's question_type) and persona/prompt split columns, a `personas` config, and a README.md dataset card (counts, models, seed, census fidelity, verification, licences, citation).

    Reads and writes block by block; checks every block's schema before writing; the folder appears only when complete (on an object store, the card is uploaded last). Upload it with `hf upload <namespace>/<name> FOLDER . --repo-type dataset`.
    """  # typer keeps line breaks: one line per paragraph
    from persona_gen.export import ExportOptions, export_run
    from persona_gen.export.target import Target
    from persona_gen.log import configure
    from persona_gen.run.config import load_config
    from persona_gen.storage.uri import resolve

    cfg = load_config(config, set_ or [])
    configure(level=cfg.run.log_level)  # logs to stderr: stdout carries the result only
    ref = run_ref(cfg, output, run_id, run)
    target = Target(resolve(to, cfg.storage), overwrite=overwrite)
    opts = ExportOptions(fmt=fmt, verified_only=verified_only,
                         max_shard_bytes=max_shard_mb << 20, fidelity=fidelity,
                         reasoning=reasoning)
    result = export_run(ref, target, opts)
    typer.echo(result.target)
    for name, splits in result.splits.items():
        typer.echo(f"{name}: " + ", ".join(
            f"{s} {f.rows:,} rows in {len(f.files)} file(s)" for s, f in splits.items()))
    if result.dropped is not None:
        typer.echo(f"verified only: dropped {result.dropped:,} pairs the judge did not prefer")
