"""`export_run`: a run's pairs and personas as a Hugging Face dataset folder.

Order of work: read the manifest and every block's footer (a bad block fails here,
before anything is written), load the small keyed tables (persona splits, verdicts),
stream the pair blocks into split shards in a staging folder, write the personas config
and the card, then move or upload the folder into place.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from persona_gen.errors import DataError, UserError
from persona_gen.export import card, facts
from persona_gen.export import sources as S
from persona_gen.export.blocks import BlockSet, conform, scan
from persona_gen.export.lookup import KeyedColumn
from persona_gen.export.rows import QUESTION_TYPES, REQUIRED, DataFormat, shape
from persona_gen.export.shards import SplitFiles, SplitWriter
from persona_gen.export.target import CARD, Target
from persona_gen.log import get_logger
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

DEFAULT_SHARD_BYTES = 500 << 20
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")
PERSONAS_REQUIRED = {"persona_id": pa.string(), "split": pa.string()}
VERDICTS_REQUIRED = {"pair_id": pa.string(), "preferred": pa.string()}


@dataclass(frozen=True)
class ExportOptions:
    fmt: DataFormat = DataFormat.paper
    verified_only: bool = False
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    fidelity: bool = True
    """Compute the census fidelity table when the run has none (re-reads the census)."""
    reasoning: bool = False
    """Keep `<stage>_reasoning` columns (stages run with thinking on)."""


@dataclass(frozen=True)
class ExportResult:
    target: str
    splits: dict[str, dict[str, SplitFiles]]
    """config -> split -> its files (as named in the target) and rows."""
    dropped: int | None = None


@dataclass
class _Tally:
    """What streaming the pairs learns for the card."""

    dropped: dict[str, card.Dropped] = field(default_factory=dict)
    truncated: Counter[str] = field(default_factory=Counter)

    def drop(self, split: str, original: int, unjudged: int) -> None:
        d = self.dropped.get(split, card.Dropped(0, 0))
        self.dropped[split] = card.Dropped(d.original + original, d.unjudged + unjudged)


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
    return [c for c in schema.names if c.endswith("_finish_reason")]


def _write_pairs(pairs: BlockSet, splits: KeyedColumn, verdicts: KeyedColumn | None,
                 opts: ExportOptions, folder: Path, tally: _Tally) -> card.ConfigFiles:
    finish = finish_columns(pairs.schema)
    empty = pairs.schema.empty_table()
    schema = shape(empty, pa.nulls(0, pa.string()), pa.nulls(0, pa.string()), opts.fmt,
                   opts.reasoning).schema
    writers = {s: SplitWriter(folder, s, schema, opts.max_shard_bytes) for s in QUESTION_TYPES}
    for i, (block, table) in enumerate(pairs.tables()):
        _check_question_types(table, block.uri)
        preferred = (verdicts.lookup(table.column("pair_id")) if verdicts is not None
                     else pa.nulls(table.num_rows, pa.string()))
        for col in finish:
            tally.truncated[col] += pc.sum(pc.equal(table.column(col), "length")).as_py() or 0
        rows = shape(table, splits.lookup(table.column("persona_id")), preferred, opts.fmt,
                     opts.reasoning)
        is_revision = pc.fill_null(pc.equal(preferred, "revision"), False)
        original = pc.fill_null(pc.equal(preferred, "original"), False)
        for split, writer in writers.items():
            mask = pc.equal(table.column("question_type"), split)
            if opts.verified_only:
                tally.drop(split, pc.sum(pc.and_(mask, original)).as_py() or 0,
                           pc.sum(pc.and_(mask, pc.is_null(preferred))).as_py() or 0)
                mask = pc.and_(mask, is_revision)
            writer.write(rows.filter(mask))
        if (i + 1) % 100 == 0:
            get_logger(stage="export").info("export_progress", blocks=i + 1,
                                            of=len(pairs.blocks))
    files = tuple(w.close() for w in writers.values())
    if not any(f.rows for f in files):
        raise DataError("no pairs left to export" + (
            " (the judge preferred none of the revisions)" if opts.verified_only else ""),
            source=pairs.loc.uri)
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
    if opts.verified_only and verdicts is None:
        raise UserError("--verified-only needs verification verdicts; this run has none "
                        "(feedback.verify was off?)", source=ref.child(S.VERIFICATION).uri)
    log = get_logger(stage="export")
    log.info("export_start", run=ref.uri, to=target.loc.uri, blocks=len(pairs.blocks),
             pairs=pairs.rows, format=opts.fmt.value, verified_only=opts.verified_only)
    splits = KeyedColumn.build(personas.column("persona_id"), personas.column("split"))
    tally = _Tally()
    with target.staging() as stage:
        configs = (
            _write_pairs(pairs, splits, verdicts, opts, stage / "data", tally),
            _write_personas(personas, stage / "personas", opts.max_shard_bytes,
                            ref.child(S.PERSONAS).uri),
        )
        facts_ = card.CardFacts(
            run_id=ref.run_id, run_uri=ref.uri, status=str(manifest.get("status", "unknown")),
            code_version=str(manifest.get("code_version") or "not recorded"),
            seed=manifest.get("seed"), created_at=str(manifest.get("created_at") or ""),
            fmt=opts.fmt, configs=configs,
            stage_models=tuple(facts.stage_models(manifest)),
            fidelity=facts.fidelity(ref, manifest, opts.fidelity),
            consistency=tuple(facts.consistency(manifest)),
            verdicts=verdicts.counts() if verdicts is not None else None,
            dropped=tally.dropped if opts.verified_only else None,
            truncated=dict(tally.truncated) if finish_columns(pairs.schema) else None,
            prompts=facts.prompt_licence(manifest),
        )
        (stage / CARD).write_text(card.render(facts_), encoding="utf-8")
        target.publish(stage)
    result = ExportResult(
        target.loc.uri,
        {c.name: {s.split: _renamed(s, target, c.folder) for s in c.splits} for c in configs},
        sum(d.original + d.unjudged for d in tally.dropped.values())
        if opts.verified_only else None)
    log.info("export_done", to=target.loc.uri, dropped=result.dropped)
    return result


def _renamed(files: SplitFiles, target: Target, folder: str) -> SplitFiles:
    """The split's files as they are named in the target, not in the staging folder."""
    return SplitFiles(files.split, files.rows, tuple(
        target.loc.child(folder, Path(p).name).uri for p in files.files),
        files.num_bytes, files.file_bytes)
