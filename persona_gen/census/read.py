"""Stream census person records from CSV files and the Bureau's zip archives.

Memory stays bounded: pyarrow parses one block at a time and only the columns asked for
are converted (all as strings; callers convert what they need). A zip member is
decompressed as a stream, never extracted to disk.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from persona_gen.census.layouts import Layout, detect
from persona_gen.errors import DataError

DEFAULT_BLOCK_BYTES = 2 << 20  # small blocks: faster on wide PUMS rows, and less memory
_HEADER_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Part:
    """One CSV to read: a plain file, or one member of a zip archive."""

    path: str
    member: str | None = None

    @property
    def name(self) -> str:
        base = Path(self.path).name
        return f"{base}:{self.member}" if self.member else base

    @property
    def where(self) -> str:
        """How errors name it: the path as given, plus the member for archives."""
        return f"{self.path}:{self.member}" if self.member else self.path

    def open(self) -> IO[bytes]:
        if self.member is None:
            return open(self.path, "rb")
        try:
            # The member keeps the archive's file open after the ZipFile itself is closed.
            with zipfile.ZipFile(self.path) as archive:
                return archive.open(self.member)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"corrupt zip archive ({exc})", source=self.path) from None


def _zip_members(path: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"not a readable zip archive, corrupt or truncated ({exc})",
                        source=path) from None
    csvs = sorted(n for n in names if n.lower().endswith(".csv"))
    # Bureau archives also carry README PDFs; person files are psam_p*.csv (psam_pus*.csv
    # in the national archives).
    persons = [n for n in csvs if Path(n).name.lower().startswith("psam_p")]
    if persons:
        return persons
    if not csvs:
        raise DataError("zip archive holds no CSV file", source=path)
    return csvs


def expand(sources: Sequence[str]) -> list[Part]:
    """Files, archives and folders (their psam_p*.csv and csv_p*.zip) -> parts to read."""
    if not sources:
        raise DataError("no census source given (pass --source PATH)", source="--source")
    parts: list[Part] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            found = sorted(p for pattern in ("psam_p*.csv", "csv_p*.zip") for p in path.glob(pattern))
            if not found:
                raise DataError("folder holds no PUMS person file (psam_p*.csv or csv_p*.zip)",
                                source=src)
            for p in found:
                parts.extend(_file_parts(str(p)))
            continue
        if not path.exists():
            raise DataError("file not found", source=src)
        parts.extend(_file_parts(src))
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for part in parts:
        key = (str(Path(part.path).resolve()), part.member)
        if key not in seen:  # the same file twice would double its people's weight
            seen.add(key)
            unique.append(part)
    return unique


def _file_parts(path: str) -> list[Part]:
    if zipfile.is_zipfile(path) or path.lower().endswith(".zip"):
        return [Part(path, m) for m in _zip_members(path)]
    return [Part(path)]


def read_header(part: Part) -> list[str]:
    with part.open() as f:
        try:
            line = f.readline(_HEADER_MAX_BYTES)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"corrupt zip archive ({exc})", source=part.where) from None
    text = line.decode("utf-8-sig", errors="replace").strip()
    if not text:
        raise DataError("empty file (no header line)", source=part.where)
    return [c.strip().strip('"').strip() for c in text.split(",")]


def layout_of(part: Part, forced: str) -> Layout:
    return detect(read_header(part), forced, part.where)


def stream(part: Part, layout: Layout, columns: Sequence[str],
           block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """Record batches of `columns` (those the header has), every value a string or null."""
    wanted = [c for c in dict.fromkeys(columns) if layout.has(c)]
    convert = pacsv.ConvertOptions(
        include_columns=wanted,
        column_types={c: pa.string() for c in wanted},
        null_values=layout.null_values,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    read = pacsv.ReadOptions(block_size=block_bytes, use_threads=True)
    f = part.open()
    rows = 0
    try:
        reader = pacsv.open_csv(f, read_options=read, convert_options=convert)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            rows += batch.num_rows
            yield batch
    except pa.ArrowInvalid as exc:
        msg = str(exc).splitlines()[0]
        msg = msg if len(msg) <= 160 else msg[:157] + "..."  # it may quote a whole row
        raise DataError(f"not a valid CSV file after {rows:,} records: {msg}",
                        source=part.where) from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"corrupt zip archive ({exc})", source=part.where) from None
    finally:
        f.close()
    if rows == 0:
        raise DataError("no records (the file has a header line only)", source=part.where)


def ints(arr: pa.Array, column: str, part: Part, row0: int, *, allow_null: bool = False,
         decimals: bool = False) -> np.ndarray:
    """A string column as int64 (float64 with NaN for nulls where allowed).

    A bad value raises DataError naming the column, the value and its line (row0 is the
    number of records before this batch; line 1 is the header).
    """
    if arr.null_count and not allow_null:
        idx = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"column {column} is empty on line {row0 + idx + 2}", source=part.where)
    try:
        values = pc.round(pc.cast(arr, pa.float64())) if decimals else pc.cast(arr, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pattern = r"^[-+]?\d+(\.\d*)?$" if decimals else r"^[-+]?\d+$"
        ok = pc.fill_null(pc.match_substring_regex(arr, pattern), True).to_numpy(
            zero_copy_only=False)
        idx = int(np.flatnonzero(~ok)[0])
        raise DataError(
            f"column {column} has a non-numeric value {arr[idx].as_py()!r} on line "
            f"{row0 + idx + 2}",
            source=part.where,
        ) from None
    if allow_null:
        return values.to_numpy(zero_copy_only=False).astype(np.float64)
    return values.to_numpy(zero_copy_only=False).astype(np.int64)
