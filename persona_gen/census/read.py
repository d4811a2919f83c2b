"""Stream census person records from CSV files and the Bureau's zip archives, on any storage.

Sources are paths, file://, s3://, gs:// or az:// URIs, resolved by persona_gen.storage; plain CSVs may be
gzip/bz2/zstd-compressed (by extension).

Memory stays bounded: pyarrow parses one block at a time and only the columns asked for
are converted (all as strings; callers convert what they need). A zip member is
decompressed as a stream, never extracted to disk.
"""

from __future__ import annotations

import fnmatch
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

from persona_gen.census.layouts import Layout, detect
from persona_gen.errors import DataError
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import Location, resolve

DEFAULT_BLOCK_BYTES = 2 << 20  # small blocks: faster on wide PUMS rows, and less memory
_HEADER_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Part:
    """One CSV to read: a plain (or gzip/bz2/zstd-compressed) file, or one member of a zip
    archive, on any storage the storage module resolves (a path, file://, s3://, gs://, az://)."""

    path: str
    """The source as the user gave it (a path or URI): errors name it so."""
    member: str | None = None
    loc: Location | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        base = PurePosixPath(self.path.rstrip("/")).name
        return f"{base}:{self.member}" if self.member else base

    @property
    def where(self) -> str:
        """How errors name it: the path as given, plus the member for archives."""
        return f"{self.path}:{self.member}" if self.member else self.path

    def _location(self) -> Location:
        return self.loc if self.loc is not None else resolve(self.path)

    def open(self) -> IO[bytes]:
        loc = self._location()
        if self.member is None:
            try:
                # "detect": .gz/.bz2/.zst by extension, so compressed excerpts read as they are.
                return loc.fs.open_input_stream(loc.path, compression="detect")
            except OSError as exc:
                raise DataError(f"cannot open ({_first_line(exc)})", source=self.path) from None
        try:
            # The member keeps the archive's file open after the ZipFile itself is closed.
            # A random-access file, so zipfile seeks to the central directory and reads the
            # member as a stream: on S3 that is ranged GETs, never a full download.
            with zipfile.ZipFile(_random_access(loc, self.path)) as archive:
                return archive.open(self.member)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"corrupt zip archive ({exc})", source=self.path) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _random_access(loc: Location, shown: str) -> IO[bytes]:
    try:
        return loc.fs.open_input_file(loc.path)  # type: ignore[return-value]
    except OSError as exc:
        raise DataError(f"cannot open ({_first_line(exc)})", source=shown) from None


def _is_zip(loc: Location, shown: str) -> bool:
    if loc.path.lower().endswith(".zip"):
        return True
    if loc.path.lower().endswith((".gz", ".bz2", ".zst", ".csv")):
        return False
    with _random_access(loc, shown) as f:
        return zipfile.is_zipfile(f)


def _zip_members(loc: Location, shown: str) -> list[str]:
    try:
        with _random_access(loc, shown) as f, zipfile.ZipFile(f) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"not a readable zip archive, corrupt or truncated ({exc})",
                        source=shown) from None
    csvs = sorted(n for n in names if n.lower().endswith(".csv"))
    # Bureau archives also carry README PDFs; person files are psam_p*.csv (psam_pus*.csv
    # in the national archives).
    persons = [n for n in csvs if PurePosixPath(n).name.lower().startswith("psam_p")]
    if persons:
        return persons
    if not csvs:
        raise DataError("zip archive holds no CSV file", source=shown)
    return csvs


# What a folder of census files may hold: the Bureau's person files and archives.
_FOLDER_PATTERNS = ("psam_p*.csv", "csv_p*.zip")


def expand(sources: Sequence[str], s3: S3Settings | None = None) -> list[Part]:
    """Files, archives and folders (their psam_p*.csv and csv_p*.zip) -> parts to read.

    Each source is a path, file://, s3://, gs:// or az:// URI, read through
    persona_gen.storage (storage settings: `s3`, else the environment).
    """
    if not sources:
        raise DataError("no census source given (pass --source PATH)", source="--source")
    parts: list[Part] = []
    for src in sources:
        try:
            loc = resolve(src, s3)
            info = loc.fs.get_file_info(loc.path)
        except OSError as exc:
            raise DataError(f"cannot read ({_first_line(exc)})", source=src) from None
        if info.type == pafs.FileType.Directory:
            sel = pafs.FileSelector(loc.path, recursive=False)
            found = sorted(
                f.path for f in loc.fs.get_file_info(sel)
                if f.type == pafs.FileType.File
                and any(fnmatch.fnmatch(f.base_name, pat) for pat in _FOLDER_PATTERNS)
            )
            if not found:
                raise DataError("folder holds no PUMS person file (psam_p*.csv or csv_p*.zip)",
                                source=src)
            for path in found:
                rel = path[len(loc.path.rstrip("/")) + 1:]
                child = loc.child(rel)
                parts.extend(_file_parts(f"{src.rstrip('/')}/{rel}", child))
            continue
        if info.type != pafs.FileType.File:
            raise DataError("file not found", source=src)
        parts.extend(_file_parts(src, loc))
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for part in parts:
        key = (part.loc.uri if part.loc else part.path, part.member)
        if key not in seen:  # the same file twice would double its people's weight
            seen.add(key)
            unique.append(part)
    return unique


def _file_parts(shown: str, loc: Location) -> list[Part]:
    if _is_zip(loc, shown):
        return [Part(shown, m, loc) for m in _zip_members(loc, shown)]
    return [Part(shown, None, loc)]


def read_header(part: Part) -> list[str]:
    with part.open() as f:
        try:
            line = _first_line_bytes(f)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            what = "corrupt zip archive" if part.member else "corrupt or unreadable file"
            raise DataError(f"{what} ({exc})", source=part.where) from None
    text = line.decode("utf-8-sig", errors="replace").strip()
    if not text:
        raise DataError("empty file (no header line)", source=part.where)
    return [c.strip().strip('"').strip() for c in text.split(",")]


def _first_line_bytes(f: IO[bytes]) -> bytes:
    # pyarrow streams have no readline: read small chunks up to the first newline.
    buf = b""
    while len(buf) < _HEADER_MAX_BYTES:
        chunk = f.read(64 << 10)
        if not chunk:
            break
        buf += chunk
        if b"\n" in chunk:
            break
    return buf.split(b"\n", 1)[0]


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
    except OSError as exc:
        # A broken compressed stream, or storage that failed mid-read (S3 network errors).
        raise DataError(f"read failed after {rows:,} records ({_first_line(exc)})",
                        source=part.where) from None
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
