"""`persona-gen plan`: which prompts each persona answers."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from persona_gen.cli.options import ConfigOpt, SetOpt

if TYPE_CHECKING:
    import pyarrow as pa

    from persona_gen.storage.layout import RunLayout
    from persona_gen.storage.uri import Location

PLAN_FILE = "plan.parquet"
# The files the pipeline's persona and prompt steps leave in a run (feedback/folders.py).
PERSONAS_FILE = "personas.parquet"
PROMPTS_FILE = "prompts.parquet"


def plan(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    personas: Annotated[int | None, typer.Option(
        "--personas", min=1, help="Plan over N synthetic persona ids instead of the run's.")] = None,
    prompts: Annotated[int | None, typer.Option(
        "--prompts", min=1, help="With --personas: M synthetic prompt ids, the configured "
        "share held out.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Overrides run.seed.")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="Folder to write plan.parquet into (path, file:// or s3://); "
        "default: the run's plan/ folder.")] = None,
) -> None:
    """Assign prompts to personas, with stable pair ids.

    Per persona: train pairs and seen-prompt test pairs from the train prompts, test pairs from the held-out prompts (BRIEF 2.3). With --config, from the run's personas/ and prompts/; with --personas N --prompts M, over synthetic ids (for sizing).
    """  # typer keeps line breaks: one line per paragraph
    from persona_gen.config import load_config
    from persona_gen.errors import ConfigError
    from persona_gen.plan.assign import build_plan
    from persona_gen.storage import objects
    from persona_gen.storage.layout import RunLayout
    from persona_gen.storage.uri import resolve

    cfg = load_config(config, set_ or [])
    seed = cfg.run.seed if seed is None else seed
    if (personas is None) != (prompts is None):
        raise ConfigError("--personas and --prompts go together", source="plan")
    layout = None
    if cfg.run.run_id:
        layout = RunLayout.at(cfg.run.output, cfg.run.run_id, cfg.storage)
    if personas is None or prompts is None:
        if layout is None:
            raise ConfigError("name the run to plan from (--set run.run_id=ID), or pass "
                              "--personas N --prompts M for synthetic ids", source="run.run_id")
        persona_ids, train, heldout = _run_inputs(layout)
    else:
        persona_ids, train, heldout = _synthetic_inputs(personas, prompts,
                                                        cfg.prompts.heldout_fraction)
    if out:
        target = resolve(out, cfg.storage)
    elif layout is not None:
        target = layout.plan
    else:
        raise ConfigError("say where to write the plan: --out URI or --set run.run_id=ID",
                          source="plan")

    start = time.perf_counter()
    table = build_plan(persona_ids, train, heldout, cfg.plan, seed)
    seconds = time.perf_counter() - start
    objects.write_table_atomic(target.child(PLAN_FILE), table)

    qtype = table.column("question_type").to_pylist()
    seen = sum(table.column("seen").to_pylist())
    summary = Table(title="plan")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for what, value in (
        ("personas", f"{len(persona_ids):,}"),
        ("train / held-out prompts", f"{len(train):,} / {len(heldout):,}"),
        ("pairs", f"{table.num_rows:,}"),
        ("train pairs", f"{qtype.count('train'):,}"),
        ("test pairs (seen prompts)", f"{seen:,}"),
        ("test pairs (held-out prompts)", f"{qtype.count('test') - seen:,}"),
        ("seconds to build", f"{seconds:.2f}"),
    ):
        summary.add_row(what, value)
    console = Console()
    console.print(summary)
    console.print(f"wrote {target.child(PLAN_FILE).uri}")


def _synthetic_inputs(n_personas: int, n_prompts: int,
                      heldout_fraction: float) -> tuple[list[str], list[str], list[str]]:
    from persona_gen.plan.ids import synthetic_ids

    n_heldout = math.floor(n_prompts * heldout_fraction + 0.5)
    prompt_ids = synthetic_ids("prompt", n_prompts)
    return (synthetic_ids("persona", n_personas), prompt_ids[: n_prompts - n_heldout],
            prompt_ids[n_prompts - n_heldout:])


def _run_inputs(layout: RunLayout) -> tuple[list[str], list[str], list[str]]:
    from persona_gen.errors import DataError

    personas = _read_columns(layout.personas.child(PERSONAS_FILE), ["persona_id"],
                             "run the personas step first")
    prompts = _read_columns(layout.prompts.child(PROMPTS_FILE), ["prompt_id", "split"],
                            "run `persona-gen prompts build` first")
    ids = prompts.column("prompt_id").to_pylist()
    splits = prompts.column("split").to_pylist()
    odd = sorted({s for s in splits if s not in ("train", "heldout")}, key=str)
    if odd:
        raise DataError(f"column 'split' must be 'train' or 'heldout', found {odd[0]!r}",
                        source=layout.prompts.child(PROMPTS_FILE).uri)
    train = [i for i, s in zip(ids, splits, strict=True) if s == "train"]
    heldout = [i for i, s in zip(ids, splits, strict=True) if s == "heldout"]
    return personas.column("persona_id").to_pylist(), train, heldout


def _read_columns(loc: Location, columns: list[str], hint: str) -> pa.Table:
    import pyarrow as pa

    from persona_gen.errors import DataError
    from persona_gen.storage import objects

    if not objects.exists(loc):
        raise DataError(f"not found; {hint}", source=loc.uri)
    try:
        table = objects.read_table(loc)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", source=loc.uri) from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"no column '{missing[0]}'", source=loc.uri)
    if table.num_rows == 0:
        raise DataError(f"has no rows; {hint}", source=loc.uri)
    return table.select(columns)
