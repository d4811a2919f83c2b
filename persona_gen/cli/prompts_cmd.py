"""`persona-gen prompts ...`"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from persona_gen.cli.options import ConfigOpt, SetOpt

if TYPE_CHECKING:
    from persona_gen.engines.base import Engine

app = typer.Typer(help="Value-laden prompts: load, filter, topics, train/held-out split.",
                  no_args_is_help=True)

OutOpt = Annotated[
    str | None,
    typer.Option("--out", "-o", help="Folder to write prompts.parquet and stats.json into "
                 "(path, file:// or s3://); default: the run's prompts/ folder."),
]
PROMPTS_FILE = "prompts.parquet"
STATS_FILE = "stats.json"


@app.command("build")
def build(config: ConfigOpt = None, set_: SetOpt = None, out: OutOpt = None) -> None:
    """Load the prompt file, filter it (question mark, length, controversy classifier),
    assign topics and split train / held-out; write prompt_id, text, topic, split."""
    from persona_gen.config import load_config
    from persona_gen.prompts.build import build_prompts
    from persona_gen.storage import objects
    from persona_gen.storage.layout import RunLayout
    from persona_gen.storage.uri import resolve

    cfg = load_config(config, set_ or [])
    if out:
        target = resolve(out, cfg.storage)
    else:
        run_id = cfg.run.run_id or _new_run_id()
        target = RunLayout.at(cfg.run.output, run_id, cfg.storage).prompts
    engine = _classifier_engine(cfg.prompts.classifier_model, cfg.run.seed)
    try:
        table, stats = build_prompts(cfg.prompts, engine, cfg.run.seed, s3=cfg.storage)
    finally:
        if engine is not None:
            engine.close()
    # Everything is computed before the first write, so a bad input leaves nothing behind.
    objects.write_table_atomic(target.child(PROMPTS_FILE), table)
    objects.write_json_atomic(target.child(STATS_FILE), stats.model_dump(mode="json"))

    console = Console()
    steps = Table(title=f"prompt filters ({stats.rows:,} rows read)")
    for col in ("step", "seen", "kept", "rejected", "errors"):
        steps.add_column(col, justify="left" if col == "step" else "right")
    for s in stats.steps:
        steps.add_row(s.name, f"{s.seen:,}", f"{s.kept:,}", f"{s.rejected:,}", f"{s.errors:,}")
    if stats.classifier is None:
        steps.add_row("controversy", "-", "-", "-", "skipped")
    console.print(steps)
    topics = Table(title=f"topics (from {stats.topics_from})")
    for col in ("topic", "train", "heldout"):
        topics.add_column(col, justify="left" if col == "topic" else "right")
    for name, c in stats.topics.items():
        topics.add_row(name, str(c.train), str(c.heldout))
    topics.add_row("total", f"{stats.train:,}", f"{stats.heldout:,}")
    console.print(topics)
    console.print(f"wrote {table.num_rows:,} prompts to {target.child(PROMPTS_FILE).uri}")


def _new_run_id() -> str:
    from persona_gen.pipeline.manifest import new_run_id

    return new_run_id()


def _classifier_engine(model: str | None, seed: int) -> Engine | None:
    """The engine for the controversy filter, or None when the config skips that filter."""
    if not model:
        return None
    from persona_gen.engines.factory import create_engine

    return create_engine(model, seed=seed)
