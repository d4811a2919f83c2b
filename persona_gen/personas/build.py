"""The persona pipeline: census rows -> traits -> rules -> enrich -> judge -> resample -> split.

Each round works on the persona slots still open. With `on_inconsistent: replace`, a slot
keeps the persona id of the census row it started with (so ids are unique and stable across
resamples); its census record may be replaced by a fresh draw (`resample`), and its traits
are redrawn with the round number as `attempt`. With `drop`, a rejected person is gone, and
when the build is asked to keep a number of personas (`keep`, the run's personas.n) each
later round draws the next census people in draw order (`more`) for the ones still missing;
the first `keep` survivors in draw order are kept, so the kept personas are the census draw
minus the rejects, never a choice by attributes. The model stages arrive built (the recipe
builds them from the config's `stages` section), each with its engine, and run through
`runner` (in-process by default; the run passes the Ray Data runner).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.errors import DataError
from persona_gen.log import get_logger
from persona_gen.personas.attributes import CENSUS_ATTRIBUTES, CENSUS_EXTRAS
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.lists import CuratedLists, load_lists
from persona_gen.personas.procedural import add_procedural
from persona_gen.personas.record import Persona, extra_fields, persona_schema
from persona_gen.personas.render import render_persona
from persona_gen.personas.rules import RULES_BY_NAME, violations
from persona_gen.personas.split import assign_splits
from persona_gen.personas.stats import PersonaStats
from persona_gen.personas.tables import ensure_string_columns, take_rows
from persona_gen.pipeline.columns import with_columns
from persona_gen.pipeline.stage import Bound, Runner, in_process

Resample = Callable[[int], pa.Table]
"""Given a count, that many fresh census rows (same columns as the census table)."""
Draw = Callable[[int], pa.Table]
"""Given a count, the next that many census people in draw order (the census draw
extended), each with a persona id not used before."""

SHORTFALL_SD = 2.0
"""A top-up round draws enough people that it falls short only about 2.5% of the time
(two standard deviations of the binomial count of survivors)."""
MAX_DRAW_FACTOR = 20
"""At most this many people drawn per person missing in one round (a judge that rejects
nearly everyone would otherwise ask for the whole census)."""


def next_draw(missing: float, survival: float) -> int:
    """People to draw so that about `missing` more survive, when a share `survival` does.

    The smallest m with m*s - k*sqrt(m*s*(1-s)) >= missing (normal approximation, k =
    SHORTFALL_SD): x = sqrt(m*s) solves x^2 - k*sqrt(1-s)*x - missing = 0.
    """
    if missing <= 0:
        return 0
    s = min(max(survival, 1e-6), 1.0)
    half = SHORTFALL_SD * math.sqrt(1 - s) / 2
    m = (half + math.sqrt(half * half + missing)) ** 2 / s
    return int(min(max(math.ceil(m - 1e-9), math.ceil(missing)),
                   MAX_DRAW_FACTOR * math.ceil(missing)))


def planned_draws(n: int, rejected_share: float, rounds: int) -> int:
    """Census people a `drop` build draws to keep n, when a share `rejected_share` of them is
    rejected: the build's own rounds (`next_draw`) with the expected survivors (the cost plan
    uses this)."""
    survival = 1.0 - rejected_share
    drawn, survivors = float(n), n * survival
    for _ in range(rounds - 1):
        extra = next_draw(n - survivors, survival)
        if not extra:
            break
        drawn += extra
        survivors += extra * survival
    return math.ceil(drawn)


_NUMERIC = ("age", "income")


def prepare_census(census: pa.Table, what: str = "census table") -> pa.Table:
    """Check the columns we rely on and add absent attributes as null strings."""
    for col in ("persona_id", "age"):
        if col not in census.column_names:
            raise DataError(f"missing column '{col}'", source=what)
    ids = census.column("persona_id").to_pylist()
    if None in ids or len(set(ids)) != len(ids):
        raise DataError("persona_id must be present and unique in every row", source=what)
    if census.column("age").null_count:
        raise DataError("age is null in some rows", source=what)
    if census.schema.field("persona_id").type != pa.string():
        ids_text = pc.cast(census.column("persona_id"), pa.string())
        census = with_columns(census, {"persona_id": ids_text})
    text_cols = [c for c in CENSUS_ATTRIBUTES if c not in _NUMERIC]
    census = ensure_string_columns(census, [*text_cols, "source", "record_id"])
    if "income" not in census.column_names:
        census = census.append_column("income", pa.nulls(census.num_rows, pa.int64()))
    return census


class _Round:
    """Bookkeeping for one round: which slots go back, which are lost for good."""

    def __init__(self) -> None:
        self.retry: list[str] = []
        self.lost: list[str] = []


def add_rule_violations(table: pa.Table) -> pa.Table:
    """Add `rule_violations` (list of broken rule names, empty when clean) to each row."""
    names = [violations(row) for row in table.to_pylist()]
    return with_columns(table, {"rule_violations": pa.array(names, pa.list_(pa.string()))})


def _screen(table: pa.Table, stats: PersonaStats, can_resample: bool, rnd: _Round,
            drop: bool = False) -> pa.Table:
    """Apply the named rules; count every broken rule; keep only clean rows.

    drop: a broken persona is lost for good (on_inconsistent: drop)."""
    table = add_rule_violations(table)
    broken_lists = table.column("rule_violations").to_pylist()
    ids = table.column("persona_id").to_pylist()
    for pid, broken in zip(ids, broken_lists, strict=True):
        for name in broken:
            stats.count("rejections", name)
        if broken:
            stats.rejected_by_rule += 1
            # Without a fresh census draw, a rule that reads only census fields fails again.
            fixable = can_resample or not all(RULES_BY_NAME[n].census_only for n in broken)
            (rnd.retry if fixable and not drop else rnd.lost).append(pid)
    return take_rows(table, [not b for b in broken_lists])


def _split_errors(table: pa.Table, stage: str, stats: PersonaStats, rnd: _Round) -> pa.Table:
    """Rows whose model output was unusable go back for another round."""
    if "error" not in table.column_names:
        return table
    bad = pc.is_valid(table.column("error")).to_pylist()
    stats.count("invalid_outputs", stage, sum(bad))
    stats.sample_errors(stage, [e for e in table.column("error").to_pylist() if e is not None])
    ids = table.column("persona_id").to_pylist()
    rnd.retry += [pid for pid, b in zip(ids, bad, strict=True) if b]
    # Drop `error` so the next stage's runner starts from a table without one.
    return take_rows(table, [not b for b in bad]).drop_columns(["error"])


def _replacements(
    pending: pa.Table, ids: list[str], resample: Resample | None, stats: PersonaStats
) -> pa.Table:
    """Census rows for the slots going back: fresh draws if we can, else the same people."""
    if resample is None:
        return pending.filter(pc.is_in(pending.column("persona_id"), pa.array(ids, pa.string())))
    fresh = resample(len(ids))
    if fresh.num_rows < len(ids):
        raise DataError(f"resample returned {fresh.num_rows} rows for {len(ids)}", source="census")
    fresh = fresh.slice(0, len(ids))
    stats.resampled += fresh.num_rows
    stats.drawn += fresh.num_rows
    # The slot keeps its persona id; the census record id stays in provenance.
    fresh = with_columns(fresh, {"persona_id": pa.array(ids, pa.string())})
    return prepare_census(fresh, "resampled census rows")


def _column_or_nulls(table: pa.Table, name: str) -> list[Any]:
    """A runner may return only failed rows, without the stage's output columns."""
    if name in table.column_names:
        return table.column(name).to_pylist()
    return [None] * table.num_rows


def _stamp(table: pa.Table, column: str, value: str) -> pa.Table:
    return with_columns(table, {column: pa.array([value] * table.num_rows, pa.string())})


def _output_row(row: dict[str, Any], split: str) -> dict[str, Any]:
    record_id = row.get("record_id")
    persona = Persona.from_row({
        **row,
        "split": split,
        "persona_text": render_persona(row),
        "record_id": None if record_id is None else str(record_id),
    })
    out = persona.to_row()
    out.update({k: row[k] for k in CENSUS_EXTRAS if k in row})  # kept for fidelity reports
    return out


def build_personas(
    census: pa.Table,
    cfg: PersonasConfig,
    seed: int,
    resample: Resample | None = None,
    *,
    enrich: Bound | None = None,
    consistency: Bound | None = None,
    lists: CuratedLists | None = None,
    runner: Runner | None = None,
    keep: int | None = None,
    more: Draw | None = None,
) -> tuple[pa.Table, PersonaStats]:
    """Personas for the census rows given (one slot each), and what happened on the way.

    enrich None: the six open-ended attributes stay empty. consistency None: only the named
    rules check consistency. keep and more (with `on_inconsistent: drop`): keep this many,
    drawing the next census people from `more` in later rounds while fewer survive.
    """
    log = get_logger(stage="personas")
    runner = runner or in_process()
    lists = lists or load_lists()
    census = prepare_census(census)
    order = census.column("persona_id").to_pylist()
    drop = cfg.on_inconsistent == "drop"
    topping_up = drop and keep is not None and more is not None
    stats = PersonaStats(requested=keep if topping_up else len(order), drawn=len(order))
    stats.on_inconsistent = cfg.on_inconsistent
    # Only `replace` draws new census people for a slot; with `drop`, a slot goes round again
    # only for unusable model output, and then as the same person.
    fresh = None if drop else resample
    first = stats.first_round
    kept: list[pa.Table] = []
    pending = census
    for attempt in range(cfg.max_resamples + 1):
        if pending.num_rows == 0:
            break
        stats.rounds += 1
        rnd = _Round()
        people = add_procedural(pending, seed, attempt, lists, cfg)
        seen = people.num_rows
        people = _screen(people, stats, fresh is not None, rnd, drop)
        unusable = 0
        if enrich is not None and people.num_rows:
            stats.count("model_calls", enrich.stage.name, people.num_rows)
            people = runner(enrich.stage, enrich.engine, people)
            before = people.num_rows
            people = _split_errors(people, enrich.stage.name, stats, rnd)
            unusable += before - people.num_rows
            people = _stamp(people, "enrich_model", enrich.engine.name)
            people = _screen(people, stats, fresh is not None, rnd, drop)  # rules on model text
        by_rule = seen - unusable - people.num_rows
        judged, by_judge = people.num_rows, 0
        if consistency is not None and people.num_rows:
            judge = consistency.stage
            stats.count("model_calls", judge.name, people.num_rows)
            people = runner(judge, consistency.engine, people)
            before = people.num_rows
            people = _split_errors(people, judge.name, stats, rnd)
            unusable += before - people.num_rows
            verdicts = _column_or_nulls(people, "consistent")
            ids = people.column("persona_id").to_pylist()
            inconsistent = [pid for pid, ok in zip(ids, verdicts, strict=True) if not ok]
            by_judge = len(inconsistent)
            stats.count("rejections", "model_judge", by_judge)
            stats.rejected_by_judge += by_judge
            (rnd.lost if drop else rnd.retry).extend(inconsistent)
            people = take_rows(people, [bool(v) for v in verdicts])
            people = _stamp(people, "judge_model", consistency.engine.name)
        if attempt == 0:
            first.personas, first.rejected_by_rule = seen, by_rule
            first.judged = judged if consistency is not None else 0
            first.rejected_by_judge, first.unusable_output = by_judge, unusable
        kept.append(people)
        stats.dropped += len(rnd.lost)
        survivors = sum(t.num_rows for t in kept)
        # People still missing once the ones going round again (unusable output) are counted.
        missing = (keep - survivors - len(rnd.retry)) if topping_up and keep else 0
        log.info("persona round", attempt=attempt, kept=people.num_rows,
                 retry=len(rnd.retry), lost=len(rnd.lost), survivors=survivors,
                 missing=max(missing, 0))
        if not rnd.retry and missing <= 0:
            break
        if attempt == cfg.max_resamples:
            stats.dropped += len(rnd.retry)
            if drop:  # with drop, only unusable output goes round again
                stats.unusable += len(rnd.retry)
            break
        pending = _replacements(pending, rnd.retry, fresh, stats)
        if missing > 0 and more is not None:
            # Survival so far, with one survivor and one loss added (never 0 or 1 on few people).
            decided = stats.drawn - len(rnd.retry)
            extra = _next_people(more, next_draw(missing, (survivors + 1) / (decided + 2)),
                                 set(order))
            order += extra.column("persona_id").to_pylist()
            stats.drawn += extra.num_rows
            pending = pa.concat_tables([pending, extra], promote_options="permissive")

    table, stats = _assemble(census, kept, order, cfg, seed, stats,
                             keep=keep if topping_up else None)
    if topping_up and keep is not None and stats.kept < keep:
        log.warning("personas_short", kept=stats.kept, wanted=keep, drawn=stats.drawn,
                    rounds=stats.rounds, note="raise personas.max_resamples for more rounds")
    return table, stats


def _next_people(more: Draw, count: int, used: set[str]) -> pa.Table:
    """The next `count` census people in draw order, checked like the first draw."""
    extra = prepare_census(more(count), "census draw (next people in draw order)")
    ids = extra.column("persona_id").to_pylist()
    if len(ids) != count or used.intersection(ids):
        raise DataError(f"the next {count} people in draw order came back as {len(ids)} rows "
                        "or with persona ids already used", source="census")
    return extra


def finalize_personas(
    table: pa.Table, cfg: PersonasConfig, seed: int, order: list[str] | None = None
) -> pa.Table:
    """Checked persona rows -> the personas table: split, persona_text, validated records.

    Rows are sorted by `order` (persona ids) when given; census extras present are kept.
    """
    schema = persona_schema(extra_fields(table))
    rows = table.to_pylist()
    if order is not None:
        position = {pid: i for i, pid in enumerate(order)}
        rows.sort(key=lambda r: position[r["persona_id"]])
    splits = assign_splits([r["persona_id"] for r in rows], cfg.test_fraction, seed)
    out_rows = [_output_row(r, splits[r["persona_id"]]) for r in rows]
    return pa.Table.from_pylist(out_rows, schema=schema)


def _assemble(
    census: pa.Table, kept: list[pa.Table], order: list[str], cfg: PersonasConfig, seed: int,
    stats: PersonaStats, keep: int | None = None,
) -> tuple[pa.Table, PersonaStats]:
    parts = [t for t in kept if t.num_rows] or [census.slice(0, 0)]
    survivors = pa.concat_tables(parts, promote_options="permissive")
    if keep is not None and survivors.num_rows > keep:
        # The first `keep` survivors in draw order; later ones were drawn for safety margin.
        position = {pid: i for i, pid in enumerate(order)}
        ranks = [position[p] for p in survivors.column("persona_id").to_pylist()]
        cut = sorted(ranks)[keep - 1]
        survivors = take_rows(survivors, [r <= cut for r in ranks])
    stats.surplus = sum(t.num_rows for t in kept) - survivors.num_rows
    table = finalize_personas(survivors, cfg, seed, order)
    stats.kept = table.num_rows
    splits = table.column("split").to_pylist()
    stats.splits = {s: splits.count(s) for s in ("train", "test")}
    if cfg.on_inconsistent == "drop":
        balanced = stats.kept + stats.dropped + stats.surplus == stats.drawn
    else:
        balanced = stats.kept + stats.dropped == stats.requested
    if not balanced:
        raise AssertionError(f"persona accounting is off: {stats.model_dump()}")
    return table, stats
