"""Read a PRISM-style prompt file (JSONL, CSV or Parquet) into a two-column table.

Output columns: `text` (string, may be null where a row had none) and `topic` (string,
null where the file has no topic column). Everything wrong with the file is a DataError
naming the file, so the CLI can print one line and write nothing.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from persona_gen.errors import DataError
from persona_gen.storage.objects import read_bytes
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import Location, resolve

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}
SCHEMA = pa.schema([("text", pa.string()), ("topic", pa.string())])


def detect_format(uri: str) -> str:
    suffix = PurePosixPath(uri).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise DataError(
            f"unknown prompt file type ({shown}); expected .jsonl, .csv or .parquet", source=uri
        )
    return fmt


def load_prompts(uri: str, text_column: str, topic_column: str | None = None,
                 s3: S3Settings | None = None) -> pa.Table:
    """Load prompts; `topic_column` is optional in the file, `text_column` is required."""
    fmt = detect_format(uri)
    loc = resolve(uri, s3)
    if loc.fs.get_file_info(loc.path).type != pafs.FileType.File:
        raise DataError("prompt file not found", source=uri)
    if fmt == "jsonl":
        table = _read_jsonl(loc, text_column, topic_column)
    elif fmt == "csv":
        table = _read_csv(loc, text_column, topic_column)
    else:
        table = _read_parquet(loc, text_column, topic_column)
    if table.num_rows == 0:
        raise DataError("prompt file has no rows", source=uri)
    return table


def _missing_column(uri: str, column: str, found: list[str]) -> DataError:
    listed = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
    return DataError(
        f"no text column '{column}' (found: {listed or 'none'}); set prompts.text_column",
        source=uri,
    )


def _read_jsonl(loc: Location, text_column: str, topic_column: str | None) -> pa.Table:
    # Parsed line by line rather than with pyarrow's reader: PRISM rows hold nested fields
    # whose inferred types can clash, and a bad line deserves its line number.
    data = read_bytes(loc)
    if not data.strip():
        raise DataError("prompt file is empty", source=loc.uri)
    texts: list[str | None] = []
    topics: list[str | None] = []
    keys: set[str] = set()
    seen_text = False
    for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"line {lineno}: not valid JSON ({exc.msg})", source=loc.uri) from None
        if not isinstance(row, dict):
            raise DataError(f"line {lineno}: expected a JSON object", source=loc.uri)
        keys.update(row)
        seen_text = seen_text or text_column in row
        texts.append(_as_text(row.get(text_column), text_column, lineno, loc.uri))
        topics.append(_as_topic(row.get(topic_column)) if topic_column else None)
    if not seen_text:
        raise _missing_column(loc.uri, text_column, sorted(keys))
    return pa.table({"text": pa.array(texts, pa.string()), "topic": pa.array(topics, pa.string())})


def _as_text(value: object, column: str | None, lineno: int, uri: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise DataError(
        f"line {lineno}: '{column}' must be a string, got {type(value).__name__}", source=uri
    )


def _as_topic(value: object) -> str | None:
    # Topics may be numbered clusters in someone else's file; their text form is enough.
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _read_csv(loc: Location, text_column: str, topic_column: str | None) -> pa.Table:
    data = read_bytes(loc)
    if not data.strip():
        raise DataError("prompt file is empty", source=loc.uri)
    wanted = [c for c in (text_column, topic_column) if c]
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            # Prompts are free text: quoted newlines are normal, and nothing is a number.
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in wanted}, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"not a readable CSV file ({_first_line(exc)})", source=loc.uri) from None
    return _select(table, loc.uri, text_column, topic_column)


def _read_parquet(loc: Location, text_column: str, topic_column: str | None) -> pa.Table:
    if loc.fs.get_file_info(loc.path).size == 0:
        raise DataError("prompt file is empty", source=loc.uri)
    try:
        table = pq.read_table(loc.path, filesystem=loc.fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({_first_line(exc)})",
                        source=loc.uri) from None
    return _select(table, loc.uri, text_column, topic_column)


def _select(table: pa.Table, uri: str, text_column: str, topic_column: str | None) -> pa.Table:
    if text_column not in table.column_names:
        raise _missing_column(uri, text_column, table.column_names)
    text = table.column(text_column)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)
            or pa.types.is_null(text.type)):
        raise DataError(f"column '{text_column}' must hold text, found {text.type}", source=uri)
    topic = pa.nulls(table.num_rows, pa.string())
    if topic_column and topic_column in table.column_names:
        try:
            topic = table.column(topic_column).cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(f"column '{topic_column}' cannot be read as topic names",
                            source=uri) from None
    return pa.table({"text": text.cast(pa.string()), "topic": topic}, schema=SCHEMA)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
