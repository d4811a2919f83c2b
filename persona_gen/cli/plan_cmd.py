"""`persona-gen plan`: which prompts each persona answers."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import ConfigOpt, OutputOpt, RunIdOpt, RunUriOpt, SetOpt

if TYPE_CHECKING:
    import pyarrow as pa

    from persona_gen.storage.runref import RunRef

PLAN_FILE = "plan.parquet"
"""The file a synthetic (--personas/--prompts) plan is written to, in --to."""


def plan(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    run: RunUriOpt = None,
    personas: Annotated[int | None, typer.Option(
        "--personas", min=1, help="Plan over N synthetic persona ids instead of a run's.")] = None,
    prompts: Annotated[int | None, typer.Option(
        "--prompts", min=1, help="With --personas: M synthetic prompt ids, the configured "
        "share held out.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Overrides run.seed.")] = None,
    out: Annotated[str | None, typer.Option(
        "--to", "--out", help="With --personas/--prompts: the folder to write plan.parquet into "
        "(path, file://, s3://, gs:// or az://).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Assign prompts to personas, with stable pair ids.

    Per persona: train pairs and seen-prompt test pairs from the train prompts, test pairs from the held-out prompts (PERSONA, arXiv 2407.17387). For a run (--run OUT/ID, or --run-id): the run's plan phase (`persona-gen run --only plan`), from its personas and prompts, written where the whole run writes it. With --personas N --prompts M: over synthetic ids, for sizing, into --to.
    """  # typer keeps line breaks: one line per paragraph
    from persona_gen.errors import ConfigError
    from persona_gen.run.config import load_config

    if (personas is None) != (prompts is None):
        raise ConfigError("--personas and --prompts go together", source="plan")
    if personas is None or prompts is None:
        if out:
            raise ConfigError("--to goes with --personas/--prompts; a run's plan is written "
                              "into the run", source="--to")
        if seed is not None:
            set_ = [*(set_ or []), f"run.seed={seed}"]
        from persona_gen.cli.run_cmd import run_view

        start = time.perf_counter()
        summary = run_view(config, set_, output, run_id, run, only="plan", progress=False)
        _report(_read_plan(summary.run), time.perf_counter() - start,
                summary.run.child("plan").uri, json_)
        return
    if not out:
        raise ConfigError("say where to write the plan: --to URI", source="plan")
    from persona_gen.plan.assign import build_plan
    from persona_gen.storage import objects
    from persona_gen.storage.uri import resolve

    cfg = load_config(config, set_ or [])
    target = resolve(out, cfg.storage).child(PLAN_FILE)
    persona_ids, train, heldout = _synthetic_inputs(personas, prompts,
                                                    cfg.prompts.heldout_fraction)
    start = time.perf_counter()
    table = build_plan(persona_ids, train, heldout, cfg.plan,
                       cfg.run.seed if seed is None else seed)
    seconds = time.perf_counter() - start
    objects.write_table_atomic(target, table)
    _report(table, seconds, target.uri, json_)


def _read_plan(run: RunRef) -> pa.Table:
    from persona_gen.run.recipe import PLAN
    from persona_gen.storage import objects

    return objects.read_table(run.child(PLAN))


def figures(table: pa.Table, seconds: float, where: str) -> dict[str, object]:
    """What `plan` reports: personas, prompts used, pairs by kind, and where it went."""
    qtype = table.column("question_type").to_pylist()
    seen = sum(table.column("seen").to_pylist())
    split = dict(zip(table.column("prompt_id").to_pylist(),
                     table.column("prompt_split").to_pylist(), strict=True))
    n_train = sum(1 for s in split.values() if s == "train")
    return {"uri": where, "personas": len(set(table.column("persona_id").to_pylist())),
            "train_prompts": n_train, "heldout_prompts": len(split) - n_train,
            "pairs": table.num_rows, "train_pairs": qtype.count("train"),
            "test_pairs_seen": seen, "test_pairs_heldout": qtype.count("test") - seen,
            "seconds": round(seconds, 3)}


def _report(table: pa.Table, seconds: float, where: str, as_json: bool = False) -> None:
    f = figures(table, seconds, where)
    if as_json:
        echo_json(f)
        return
    summary = Table(title="plan")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for what, value in (
        ("personas", f"{f['personas']:,}"),
        ("train / held-out prompts used", f"{f['train_prompts']:,} / {f['heldout_prompts']:,}"),
        ("pairs", f"{f['pairs']:,}"),
        ("train pairs", f"{f['train_pairs']:,}"),
        ("test pairs (seen prompts)", f"{f['test_pairs_seen']:,}"),
        ("test pairs (held-out prompts)", f"{f['test_pairs_heldout']:,}"),
        ("seconds to build", f"{seconds:.2f}"),
    ):
        summary.add_row(what, value)
    console = Console()
    console.print(summary)
    console.print(f"wrote {where}")


def _synthetic_inputs(n_personas: int, n_prompts: int,
                      heldout_fraction: float) -> tuple[list[str], list[str], list[str]]:
    from persona_gen.plan.ids import synthetic_ids

    n_heldout = math.floor(n_prompts * heldout_fraction + 0.5)
    prompt_ids = synthetic_ids("prompt", n_prompts)
    return (synthetic_ids("persona", n_personas), prompt_ids[: n_prompts - n_heldout],
            prompt_ids[n_prompts - n_heldout:])
