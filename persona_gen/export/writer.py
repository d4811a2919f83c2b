"""`export_run`: a run's pairs and personas as a Hugging Face dataset folder.

Order of work: read the manifest and every block's footer (a bad block fails here,
before anything is written), load the small keyed tables (persona splits, verdicts),
stream the pair blocks into split shards in a staging folder (applying the pair filter),
write the personas config, the run's resolved config and the card, then move or upload the
folder into place.

The pair filter: the DPO formats keep by default only the pairs whose judge preferred the
revision and whose two sides (original, revision) ended before their token limits, since a
DPO trainer takes every row as "chosen beats rejected"; `--all-pairs` keeps every pair. The
paper format keeps every pair (as the paper released them) unless `--verified-only`. The
card says which filter ran and how many pairs each step dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from persona_gen.errors import DataError, UserError
from persona_gen.export import card, facts
from persona_gen.export import sources as S
from persona_gen.export.blocks import BlockSet, conform, scan
from persona_gen.export.lookup import KeyedColumn
from persona_gen.export.rows import (
    CHOSEN_FINISH,
    FINISH_SUFFIX,
    QUESTION_TYPES,
    REJECTED_FINISH,
    REQUIRED,
    DataFormat,
    PersonaTurn,
    shape,
)
from persona_gen.export.shards import SplitFiles, SplitWriter
from persona_gen.export.target import CARD, RUN_CONFIG, Target
from persona_gen.log import get_logger
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

DEFAULT_SHARD_BYTES = 500 << 20
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")
PERSONAS_REQUIRED = {"persona_id": pa.string(), "split": pa.string()}
VERDICTS_REQUIRED = {"pair_id": pa.string(), "preferred": pa.string()}


@dataclass(frozen=True)
class PairFilter:
    """Which pairs an export keeps."""

    verified: bool = False
    """Only pairs whose judge preferred the revision."""
    complete: bool = False
    """Only pairs whose original and revision both ended before their token limits."""

    @classmethod
    def choose(cls, fmt: DataFormat, verified_only: bool = False,
               all_pairs: bool = False) -> PairFilter:
        """The DPO formats filter by default; the paper format keeps every pair."""
        if all_pairs and verified_only:
            raise UserError("--all-pairs keeps every pair and --verified-only only the "
                            "verified ones: give one of them", source="--all-pairs")
        if all_pairs:
            return cls()
        if fmt.dpo:
            return cls(verified=True, complete=True)
        return cls(verified=verified_only)

    @property
    def active(self) -> bool:
        return self.verified or self.complete


@dataclass(frozen=True)
class ExportOptions:
    fmt: DataFormat = DataFormat.paper
    verified_only: bool = False
    all_pairs: bool = False
    persona_turn: PersonaTurn = PersonaTurn.system
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    fidelity: bool = True
    """Compute the census fidelity table when the run has none (re-reads the census)."""
    reasoning: bool = False
    """Keep `<stage>_reasoning` columns (stages run with thinking on)."""

    @property
    def pair_filter(self) -> PairFilter:
        return PairFilter.choose(self.fmt, self.verified_only, self.all_pairs)


@dataclass(frozen=True)
class ExportResult:
    target: str
    splits: dict[str, dict[str, SplitFiles]]
    """config -> split -> its files (as named in the target) and rows."""
    pair_filter: PairFilter = field(default_factory=PairFilter)
    dropped: dict[str, card.Dropped] | None = None
    """Per split, what each step of the DPO filter drops (applied or not)."""

    @property
    def dropped_total(self) -> int | None:
        """Pairs the applied filter left out; None when no filter ran."""
        if not self.pair_filter.active or self.dropped is None:
            return None
        return sum(d.applied(self.pair_filter.verified, self.pair_filter.complete)
                   for d in self.dropped.values())


@dataclass
class _Tally:
    """What streaming the pairs learns for the card."""

    dropped: dict[str, card.Dropped] = field(default_factory=dict)
    truncated: Counter[str] = field(default_factory=Counter)
    example: dict[str, Any] | None = None
    """The first row written to the first split (for the card)."""

    def drop(self, split: str, original: int, unjudged: int, cut: int) -> None:
        """Add one block's counts for a split."""
        d = self.dropped.get(split, card.Dropped(0, 0, 0))
        self.dropped[split] = card.Dropped(d.original + original, d.unjudged + unjudged,
                                           d.cut + cut)


def _manifest(ref: RunRef) -> dict[str, Any]:
    loc = ref.child(S.MANIFEST)
    if not objects.exists(loc):
        raise UserError(f"not a run: no {S.MANIFEST} here", source=ref.uri)
    try:
        manifest = objects.read_json(loc)
    except ValueError:
        raise DataError("not valid JSON", source=loc.uri) from None
    if not isinstance(manifest, dict):
        raise DataError("expected a JSON object", source=loc.uri)
    return manifest


def _personas(ref: RunRef) -> pa.Table:
    loc = ref.child(S.PERSONAS)
    if not objects.exists(loc):
        raise DataError("the run has no personas table", source=loc.uri)
    table = objects.read_table(loc).replace_schema_metadata(None)
    missing = [c for c in PERSONAS_REQUIRED if c not in table.column_names]
    if missing:
        raise DataError(f"personas table lacks column(s) {', '.join(missing)}", source=loc.uri)
    schema = pa.schema([pa.field(c, PERSONAS_REQUIRED.get(c, table.schema.field(c).type))
                        for c in table.column_names])
    return conform(table, schema, loc.uri)


def _verdicts(ref: RunRef) -> KeyedColumn | None:
    loc = ref.child(S.VERIFICATION)
    if not objects.list_files(loc, ".parquet"):
        return None
    blocks = scan(loc, VERDICTS_REQUIRED, "verification")
    parts = [t for _, t in blocks.tables(columns=list(VERDICTS_REQUIRED))]
    table = pa.concat_tables(parts)
    return KeyedColumn.build(table.column("pair_id"), table.column("preferred"))


def _check_question_types(table: pa.Table, where: str) -> None:
    found = set(pc.unique(table.column("question_type")).to_pylist())
    unknown = found - set(QUESTION_TYPES)
    if unknown:
        shown = ", ".join(sorted(repr(v) for v in unknown))
        raise DataError(f"question_type {shown} is not one of {', '.join(QUESTION_TYPES)}",
                        source=where)


def finish_columns(schema: pa.Schema) -> list[str]:
    """Per-stage finish reasons ('length' = stopped at max_tokens), where the run has them."""
    return [c for c in schema.names if c.endswith(FINISH_SUFFIX)]


def _cut(table: pa.Table, column: str) -> pa.ChunkedArray | pa.Array:
    if column not in table.column_names:
        return pa.array([False] * table.num_rows)
    return pc.fill_null(pc.equal(table.column(column), "length"), False)


def _write_pairs(pairs: BlockSet, splits: KeyedColumn, verdicts: KeyedColumn | None,
                 opts: ExportOptions, folder: Path, tally: _Tally) -> card.ConfigFiles:
    finish = finish_columns(pairs.schema)
    keep = opts.pair_filter
    empty = pairs.schema.empty_table()
    schema = shape(empty, pa.nulls(0, pa.string()), pa.nulls(0, pa.string()), opts.fmt,
                   opts.persona_turn, opts.reasoning).schema
    writers = {s: SplitWriter(folder, s, schema, opts.max_shard_bytes) for s in QUESTION_TYPES}
    for i, (block, table) in enumerate(pairs.tables()):
        _check_question_types(table, block.uri)
        preferred = (verdicts.lookup(table.column("pair_id")) if verdicts is not None
                     else pa.nulls(table.num_rows, pa.string()))
        for col in finish:
            tally.truncated[col] += pc.sum(pc.equal(table.column(col), "length")).as_py() or 0
        rows = shape(table, splits.lookup(table.column("persona_id")), preferred, opts.fmt,
                     opts.persona_turn, opts.reasoning)
        is_revision = pc.fill_null(pc.equal(preferred, "revision"), False)
        original = pc.fill_null(pc.equal(preferred, "original"), False)
        unjudged = pc.is_null(preferred)
        cut = pc.or_(_cut(table, CHOSEN_FINISH), _cut(table, REJECTED_FINISH))
        for split, writer in writers.items():
            mask = pc.equal(table.column("question_type"), split)
            # What the DPO filter drops, step by step (each count is of the pairs the step
            # before kept), counted whatever filter runs: the card says what it would drop.
            verified = pc.and_(mask, is_revision) if verdicts is not None else mask
            tally.drop(split,
                       pc.sum(pc.and_(mask, original)).as_py() or 0,
                       (pc.sum(pc.and_(mask, unjudged)).as_py() or 0) if verdicts else 0,
                       pc.sum(pc.and_(verified, cut)).as_py() or 0)
            if keep.verified:
                mask = verified
            if keep.complete:
                mask = pc.and_(mask, pc.invert(cut))
            out = rows.filter(mask)
            if tally.example is None and out.num_rows:
                tally.example = out.slice(0, 1).to_pylist()[0]
            writer.write(out)
        if (i + 1) % 100 == 0:
            get_logger(stage="export").info("export_progress", blocks=i + 1,
                                            of=len(pairs.blocks))
    files = tuple(w.close() for w in writers.values())
    if not any(f.rows for f in files):
        raise DataError("no pairs left to export" + (
            f" after the pair filter ({card.filter_words(keep)}); --all-pairs exports every "
            "pair" if keep.active else ""), source=pairs.loc.uri)
    return card.ConfigFiles("default", "data", schema, files)


def _write_personas(personas: pa.Table, folder: Path, max_bytes: int,
                    where: str) -> card.ConfigFiles:
    values = pc.unique(personas.column("split")).to_pylist()
    if None in values or any(not _SPLIT_NAME.match(v) for v in values):
        raise DataError(f"persona split values {values} are not all split names", source=where)
    order = sorted(values, key=lambda v: (v not in ("train", "test"), v != "train", v))
    files = []
    for split in order:
        writer = SplitWriter(folder, split, personas.schema, max_bytes)
        writer.write(personas.filter(pc.equal(personas.column("split"), split)))
        files.append(writer.close())
    return card.ConfigFiles("personas", "personas", personas.schema, tuple(files))


def export_run(ref: RunRef, target: Target, opts: ExportOptions) -> ExportResult:
    manifest = _manifest(ref)
    target.check()
    pairs = scan(ref.child(S.PAIRS), REQUIRED, "pairs")
    personas = _personas(ref)
    verdicts = _verdicts(ref)
    keep = opts.pair_filter
    if keep.verified and verdicts is None:
        why = ("--verified-only needs" if opts.verified_only else
               f"--format {opts.fmt.value} keeps by default only pairs whose judge preferred "
               "the revision, which needs")
        raise UserError(f"{why} verification verdicts; this run has none (stages.verify "
                        "was off?)" + ("" if opts.verified_only else
                                       "; --all-pairs exports every pair"),
                        source=ref.child(S.VERIFICATION).uri)
    log = get_logger(stage="export")
    log.info("export_start", run=ref.uri, to=target.loc.uri, blocks=len(pairs.blocks),
             pairs=pairs.rows, format=opts.fmt.value, verified=keep.verified,
             complete=keep.complete, persona_turn=opts.persona_turn.value)
    splits = KeyedColumn.build(personas.column("persona_id"), personas.column("split"))
    tally = _Tally()
    with target.staging() as stage:
        configs = (
            _write_pairs(pairs, splits, verdicts, opts, stage / "data", tally),
            _write_personas(personas, stage / "personas", opts.max_shard_bytes,
                            ref.child(S.PERSONAS).uri),
        )
        config = facts.public_config(manifest)
        (stage / RUN_CONFIG).write_text(
            facts.CONFIG_NOTE + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
            encoding="utf-8")
        models = facts.stage_models(manifest)
        facts_ = card.CardFacts(
            run_id=ref.run_id, status=str(manifest.get("status", "unknown")),
            code_version=str(manifest.get("code_version") or "not recorded"),
            seed=manifest.get("seed"), created_at=str(manifest.get("created_at") or ""),
            fmt=opts.fmt, configs=configs,
            stage_models=tuple(models),
            fidelity=facts.fidelity(ref, manifest, opts.fidelity),
            consistency=tuple(facts.consistency(manifest)),
            verdicts=verdicts.counts() if verdicts is not None else None,
            pair_filter=keep,
            dropped=tally.dropped,
            finish_recorded=tuple(c for c in (CHOSEN_FINISH, REJECTED_FINISH)
                                  if c in pairs.schema.names),
            truncated=dict(tally.truncated) if finish_columns(pairs.schema) else None,
            prompts=facts.prompt_licence(manifest),
            model_terms=tuple(facts.model_terms(manifest, models)),
            persona_turn=opts.persona_turn,
            example=tally.example,
            settings=facts.settings(manifest),
            templates=facts.templates(manifest),
        )
        (stage / CARD).write_text(card.render(facts_), encoding="utf-8")
        target.publish(stage)
    result = ExportResult(
        target.loc.uri,
        {c.name: {s.split: _renamed(s, target, c.folder) for s in c.splits} for c in configs},
        keep, tally.dropped)
    log.info("export_done", to=target.loc.uri, dropped=result.dropped_total)
    return result


def _renamed(files: SplitFiles, target: Target, folder: str) -> SplitFiles:
    """The split's files as they are named in the target, not in the staging folder."""
    return SplitFiles(files.split, files.rows, tuple(
        target.loc.child(folder, Path(p).name).uri for p in files.files),
        files.num_bytes, files.file_bytes)
