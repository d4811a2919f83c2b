"""A run folder's Parquet blocks, schema-checked from their footers before any row is read.

Blocks are written independently (and a resumed run may mix blocks from several
attempts), so one Arrow schema is agreed first: the column set and, per column, the
type most blocks carry. A block that disagrees fails the export with one line naming
the file. The one tolerated difference is a null-typed column (a block whose rows all
failed has no values to type it by), which is cast to the agreed type as it is read;
`string` and `large_string` are treated as one type for the same reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from persona_gen.errors import DataError
from persona_gen.storage import objects
from persona_gen.storage.uri import Location


class BlockSchemaError(DataError):
    """A block's columns or types disagree with the rest of its folder."""


@dataclass(frozen=True)
class Block:
    path: str
    uri: str
    rows: int
    schema: pa.Schema


@dataclass(frozen=True)
class BlockSet:
    """The blocks of one folder and the schema every one of them is read into."""

    loc: Location
    blocks: tuple[Block, ...]
    schema: pa.Schema

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.blocks)

    def tables(self, columns: list[str] | None = None) -> Iterator[tuple[Block, pa.Table]]:
        """Each block, read whole (a block is one committed batch) and cast to the agreed schema."""
        schema = self.schema if columns is None else pa.schema(
            [self.schema.field(c) for c in columns])
        for block in self.blocks:
            with self.loc.fs.open_input_file(block.path) as f:
                table = pq.read_table(f, columns=schema.names)
            yield block, conform(table, schema, block.uri)


def _same(a: pa.DataType, b: pa.DataType) -> bool:
    strings = (pa.string(), pa.large_string())
    return a == b or (a in strings and b in strings)


def conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """`table` in `schema`'s column order and types; only null-typed columns are cast."""
    arrays = []
    for field in schema:
        col = table.column(field.name)
        if col.type != field.type:
            if not (pa.types.is_null(col.type) or _same(col.type, field.type)):
                raise BlockSchemaError(
                    f"column '{field.name}' is {col.type} where the run's blocks have "
                    f"{field.type}", source=where)
            col = col.cast(field.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def _footer(loc: Location, path: str, uri: str) -> Block:
    try:
        with loc.fs.open_input_file(path) as f:
            meta = pq.ParquetFile(f).metadata
            return Block(path, uri, meta.num_rows, meta.schema.to_arrow_schema())
    except (pa.ArrowInvalid, OSError) as exc:
        raise BlockSchemaError(f"not a readable Parquet block ({str(exc).splitlines()[0]})",
                               source=uri) from None


def scan(loc: Location, required: Mapping[str, pa.DataType], what: str) -> BlockSet:
    """Read every block's footer under `loc` and agree one schema, or fail naming a file.

    `required` columns must be present with that type (or null); every other column
    takes the type most blocks give it.
    """
    paths = objects.list_files(loc, ".parquet")
    if not paths:
        raise DataError(f"no {what} blocks (Parquet) found", source=loc.uri)
    blocks = [_footer(loc, p, loc.uri + p[len(loc.path):]) for p in paths]
    names = Counter(tuple(sorted(b.schema.names)) for b in blocks)
    expected_names = set(names.most_common(1)[0][0])
    for b in blocks:
        missing = [c for c in required if c not in b.schema.names]
        if missing:
            raise BlockSchemaError(f"{what} block lacks column(s) {', '.join(missing)}",
                                   source=b.uri)
        got = set(b.schema.names)
        if got != expected_names:
            extra, lacks = sorted(got - expected_names), sorted(expected_names - got)
            detail = "; ".join(
                part for part in (f"has {', '.join(extra)}" if extra else "",
                                  f"lacks {', '.join(lacks)}" if lacks else "") if part)
            raise BlockSchemaError(f"{what} block's columns differ from the other blocks' "
                                   f"({detail})", source=b.uri)
    order = [f.name for f in blocks[0].schema]
    fields = []
    for name in order:
        types = Counter(str(b.schema.field(name).type) for b in blocks
                        if not pa.types.is_null(b.schema.field(name).type))
        by_name = {str(b.schema.field(name).type): b.schema.field(name).type for b in blocks}
        if name in required:
            typ = required[name]
        elif types:
            typ = by_name[types.most_common(1)[0][0]]
        else:
            typ = pa.null()
        fields.append(pa.field(name, typ))
    schema = pa.schema(fields)
    for b in blocks:
        for field in schema:
            got_type = b.schema.field(field.name).type
            if not (pa.types.is_null(got_type) or _same(got_type, field.type)):
                raise BlockSchemaError(
                    f"column '{field.name}' is {got_type} where the run's blocks have "
                    f"{field.type}", source=b.uri)
    return BlockSet(loc, tuple(blocks), schema)
