"""`persona-gen prompts ...`"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import ConfigOpt, OutputOpt, RunIdOpt, RunUriOpt, SetOpt

app = typer.Typer(help="Value-laden prompts: load, filter, topics, train/held-out split.",
                  no_args_is_help=True)



@app.command("build")
def build(config: ConfigOpt = None, set_: SetOpt = None, output: OutputOpt = None,
          run_id: RunIdOpt = None, run: RunUriOpt = None, json_: JsonOpt = False) -> None:
    """The run's prompts phase (`persona-gen run --only prompts`): load the prompt file, filter it (question mark, length, `prompts.limit`, controversy classifier), answer each kept prompt once without a persona (the original), assign topics and split train / held-out; write <output>/<run_id>/prompts/prompts.parquet (prompt_id, text, topic, split) and stats.json. Prompts whose original answer failed are left out, as in the whole run."""
    from persona_gen.cli.run_cmd import run_view
    from persona_gen.prompts.stats import PromptStats
    from persona_gen.run.recipe import PROMPT_STATS, PROMPTS
    from persona_gen.storage import objects

    summary = run_view(config, set_, output, run_id, run, only="prompts", progress=False)
    ref = summary.run
    stats = PromptStats.model_validate(objects.read_json(ref.child(PROMPT_STATS)))
    if json_:
        echo_json({"run_id": summary.run_id, "uri": ref.child(PROMPTS).uri,
                   "stats": stats.model_dump(mode="json")})
        return
    console = Console()
    steps = Table(title=f"prompt filters ({stats.rows:,} rows read)")
    for col in ("step", "seen", "kept", "rejected", "errors"):
        steps.add_column(col, justify="left" if col == "step" else "right")
    for s in stats.steps:
        steps.add_row(s.name, f"{s.seen:,}", f"{s.kept:,}", f"{s.rejected:,}", f"{s.errors:,}")
    if stats.classifier is None:
        steps.add_row("controversy", "-", "-", "-", "skipped")
    steps.add_row("kept", "", f"{stats.kept:,}", "", "")
    console.print(steps)
    topics = Table(title=f"topics (from {stats.topics_from})")
    for col in ("topic", "train", "heldout"):
        topics.add_column(col, justify="left" if col == "topic" else "right")
    for name, c in stats.topics.items():
        topics.add_row(name, str(c.train), str(c.heldout))
    topics.add_row("total", f"{stats.train:,}", f"{stats.heldout:,}")
    console.print(topics)
    console.print(f"wrote {stats.kept:,} prompts to {ref.child(PROMPTS).uri}")
