"""Small-object and table I/O on any Location, with atomic writes for what readers trust."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from persona_gen.storage.retry import retrying
from persona_gen.storage.uri import Location

TEMP_PREFIX = ".tmp-"
"""Temporary objects start with this; listings skip every name starting with '.'."""


def write_bytes_atomic(loc: Location, data: bytes) -> None:
    """Readers see the old object or the new one, never a partial one; a writer killed
    mid-write leaves at most a hidden `.tmp-*` sibling (`remove_temporaries`).

    Per store (docs/storage.md): an S3 or GCS object appears only once its upload
    completes, so those are written in place. A local or shared filesystem gets a temporary
    sibling renamed over the target. Azure Blob through pyarrow creates the blob when the
    stream opens and fills it as it goes, so it too writes a temporary blob first, then
    moves it (hierarchical namespace: an atomic rename) or copies it server-side (flat
    namespace: the copy appears whole) and deletes the temporary.
    """
    if loc.scheme in ("s3", "gs"):
        def put() -> None:
            with loc.fs.open_output_stream(loc.path) as out:
                out.write(data)

        # The whole upload is retried (it completes on close): a retry rewrites the same object.
        retrying("PUT", loc, put)
        return
    parent = loc.path.rsplit("/", 1)[0]
    tmp = f"{parent}/{TEMP_PREFIX}{uuid.uuid4().hex}-{loc.path.rsplit('/', 1)[-1]}"

    def write_and_commit() -> None:
        try:
            if loc.is_local:
                loc.fs.create_dir(parent, recursive=True)
            with loc.fs.open_output_stream(tmp) as out:
                out.write(data)
            _commit(loc, tmp)
        except BaseException:
            _delete_quietly(loc.fs, tmp)
            raise

    retrying("PUT", loc, write_and_commit)


def _commit(loc: Location, tmp: str) -> None:
    """Make the finished temporary `tmp` the object at `loc` in one step readers can see."""
    if loc.scheme == "az":
        try:
            loc.fs.move(tmp, loc.path)
            return
        except NotImplementedError:
            pass  # a flat-namespace account: no rename
        loc.fs.copy_file(tmp, loc.path)
        _delete_quietly(loc.fs, tmp)
        return
    loc.fs.move(tmp, loc.path)


def upload_file(local: str | Path, loc: Location) -> None:
    """Copy a local file to `loc`, visible only once whole (as `write_bytes_atomic`),
    streaming rather than holding the file in memory."""
    src = str(local)
    local_fs = pafs.LocalFileSystem()
    if loc.scheme in ("s3", "gs"):
        retrying("PUT", loc, lambda: pafs.copy_files(src, loc.path, source_filesystem=local_fs,
                                                     destination_filesystem=loc.fs))
        return
    parent = loc.path.rsplit("/", 1)[0]
    tmp = f"{parent}/{TEMP_PREFIX}{uuid.uuid4().hex}-{loc.path.rsplit('/', 1)[-1]}"

    def copy_and_commit() -> None:
        try:
            if loc.is_local:
                loc.fs.create_dir(parent, recursive=True)
            pafs.copy_files(src, tmp, source_filesystem=local_fs, destination_filesystem=loc.fs)
            _commit(loc, tmp)
        except BaseException:
            _delete_quietly(loc.fs, tmp)
            raise

    retrying("PUT", loc, copy_and_commit)


def remove_temporaries(loc: Location) -> int:
    """Delete the `.tmp-*` leftovers of writers killed mid-write under `loc`; how many.

    Only a writer that is dead leaves one for good, so call it when no writer of this
    folder can be running (the run does, at its end)."""
    def listing() -> list[pafs.FileInfo]:
        if loc.fs.get_file_info(loc.path).type == pafs.FileType.NotFound:
            return []
        return loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True,
                                                      allow_not_found=True))

    stale = [f.path for f in retrying("LIST", loc, listing)
             if f.type == pafs.FileType.File and f.base_name.startswith(TEMP_PREFIX)]
    for path in stale:
        _delete_quietly(loc.fs, path)  # one left behind now goes at the next run's end
    return len(stale)


def write_json_atomic(loc: Location, obj: Any) -> None:
    write_bytes_atomic(loc, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_bytes(loc: Location) -> bytes:
    def get() -> bytes:
        with loc.fs.open_input_stream(loc.path) as f:
            return f.read()

    return retrying("GET", loc, get)


def read_json(loc: Location) -> Any:
    return json.loads(read_bytes(loc))


def exists(loc: Location) -> bool:
    return retrying("HEAD", loc, lambda: loc.fs.get_file_info(loc.path).type) \
        != pafs.FileType.NotFound


def list_files(loc: Location, suffix: str = "") -> list[str]:
    """Paths of files under `loc` (recursive, sorted); hidden temp files are skipped."""
    def listing() -> list[pafs.FileInfo]:
        if loc.fs.get_file_info(loc.path).type == pafs.FileType.NotFound:
            return []
        return loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True,
                                                      allow_not_found=True))

    out = [
        f.path for f in retrying("LIST", loc, listing)
        if f.type == pafs.FileType.File
        and not f.base_name.startswith(".")
        and f.path.endswith(suffix)
    ]
    return sorted(out)


def sizes(loc: Location) -> dict[str, int]:
    """Bytes of the file at `loc`, or of every file under the folder at `loc`, by path
    ({} when nothing is there; hidden temp files are skipped). One HEAD, plus one LIST for a
    folder: what preflight checks report for inputs."""
    def stat() -> dict[str, int]:
        info = loc.fs.get_file_info(loc.path)
        if info.type == pafs.FileType.File:
            return {info.path: int(info.size or 0)}
        if info.type == pafs.FileType.NotFound:
            return {}
        found = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True,
                                                       allow_not_found=True))
        return {f.path: int(f.size or 0) for f in found
                if f.type == pafs.FileType.File and not f.base_name.startswith(".")}

    return retrying("LIST", loc, stat)


def write_table_atomic(loc: Location, table: pa.Table) -> None:
    """One Parquet file, visible only once complete."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes_atomic(loc, sink.getvalue().to_pybytes())


def read_table(loc: Location, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file or every Parquet file under a folder into one table."""
    info = retrying("HEAD", loc, lambda: loc.fs.get_file_info(loc.path))
    if info.type == pafs.FileType.File:
        return read_file_table(loc, columns)
    files = list_files(loc, ".parquet")
    if not files:
        return pa.table({})
    tables = [read_file_table(loc.at(p), columns) for p in files]
    return pa.concat_tables(tables, promote_options="default")


def read_file_table(loc: Location, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (retried whole on a transient failure)."""
    return retrying("GET", loc, lambda: pq.read_table(loc.path, filesystem=loc.fs,
                                                      columns=columns))


def delete(loc: Location) -> None:
    _delete_quietly(loc.fs, loc.path)


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.delete_file(path)
