"""`persona-gen export`: publish a run as a Hugging Face dataset folder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import ConfigOpt, OutputOpt, RunIdOpt, RunUriOpt, SetOpt, run_ref
from persona_gen.export.rows import DataFormat, PersonaTurn

if TYPE_CHECKING:
    from persona_gen.export.writer import ExportResult


def export(
    to: Annotated[str, typer.Option(
        "--to", help="Folder to write (a path or s3://, gs://, az://bucket/prefix); must be empty or new.")],
    fmt: Annotated[DataFormat, typer.Option(
        "--format", help="paper: the paper's columns plus ids, splits, the verdict and the "
        "finish reasons, every pair; trl-dpo: those plus TRL's conversational "
        "prompt/chosen/rejected; trl-dpo-only: ids, splits, verdict, finish reasons and "
        "prompt/chosen/rejected. The trl formats keep by default only the pairs whose judge "
        "preferred the revision and where neither side was cut at its token limit.")
    ] = DataFormat.paper,
    all_pairs: Annotated[bool, typer.Option(
        "--all-pairs", help="Export every pair, also with the trl formats (the card still "
        "counts what the DPO filter would drop).")] = False,
    verified_only: Annotated[bool, typer.Option(
        "--verified-only", help="Keep only pairs whose judge preferred the revision (the "
        "paper format; the trl formats do so by default).")] = False,
    persona_turn: Annotated[PersonaTurn, typer.Option(
        "--persona-turn", help="trl formats: where the persona goes, framed as the "
        "attributes of the user being answered. system: the system turn; user: before the "
        "instruction in the user turn (chat templates without a system role, e.g. Gemma); "
        "none: nowhere.")] = PersonaTurn.system,
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
    json_: JsonOpt = False,
) -> None:
    """Write a folder that `datasets.load_dataset(FOLDER)` loads: data/ with train and test (the paper's question_type) and persona/prompt split columns, a `personas` config, the run's resolved config (run_config.yaml) and a README.md dataset card (splits, the pair filter's counts, an example row, models, sampling settings and templates, personas and census fidelity, bias and limitations, licences, citation; no location of the run).

    Reads and writes block by block; checks every block's schema before writing; the folder appears only when complete (on an object store, the card is uploaded last).

    Upload it with the Hub's tool (`hf auth login` first; copy an s3:// export down first, e.g. with `aws s3 sync`): `hf upload <namespace>/<name> FOLDER . --repo-type dataset` (huggingface_hub 2.x splits a large folder into several commits and resumes when run again); with huggingface_hub 1.x, a large export goes up with `hf upload-large-folder <namespace>/<name> FOLDER --repo-type dataset`.
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
    opts = ExportOptions(fmt=fmt, verified_only=verified_only, all_pairs=all_pairs,
                         persona_turn=persona_turn, max_shard_bytes=max_shard_mb << 20,
                         fidelity=fidelity, reasoning=reasoning)
    # Contradictory flags fail before any work.
    opts.pair_filter  # noqa: B018
    if persona_turn is not PersonaTurn.system and not fmt.dpo:
        from persona_gen.errors import UserError

        raise UserError("only the trl formats have a prompt to put the persona in; add "
                        "--format trl-dpo or trl-dpo-only", source="--persona-turn")
    result = export_run(ref, target, opts)
    if json_:
        echo_json(result_json(result))
        return
    typer.echo(result.target)
    for name, splits in result.splits.items():
        typer.echo(f"{name}: " + ", ".join(
            f"{s} {f.rows:,} rows in {len(f.files)} file(s)" for s, f in splits.items()))
    if result.dropped_total is not None and result.dropped is not None:
        keep = result.pair_filter
        steps = []
        if keep.verified:
            steps += [f"judge preferred the original "
                      f"{sum(d.original for d in result.dropped.values()):,}",
                      f"not judged {sum(d.unjudged for d in result.dropped.values()):,}"]
        if keep.complete:
            steps.append(f"cut at the token limit {sum(d.cut for d in result.dropped.values()):,}")
        typer.echo(f"filtered: dropped {result.dropped_total:,} pairs ({'; '.join(steps)})")


def result_json(result: ExportResult) -> dict[str, Any]:
    """What `export --json` prints: the folder, rows and files per config and split, and
    what the pair filter dropped."""
    from dataclasses import asdict

    return {
        "target": result.target,
        "splits": {name: {s: {"rows": f.rows, "files": list(f.files), "num_bytes": f.num_bytes,
                              "file_bytes": f.file_bytes} for s, f in splits.items()}
                   for name, splits in result.splits.items()},
        "pair_filter": asdict(result.pair_filter),
        "dropped": result.dropped_total,
        "dropped_by_split": None if result.dropped is None else {
            s: asdict(d) for s, d in result.dropped.items()},
    }
