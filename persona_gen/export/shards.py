"""Split files in the Hub's naming (`train-00000-of-00004.parquet`), each of bounded size.

Rows arrive block by block and leave in row groups of a bounded size, so memory holds
at most one row group per split. A shard closes once the Arrow bytes written to it pass
the limit (`datasets.push_to_hub` bounds its shards the same way). The shard count is
known only at the end, so shards are written under provisional names in a local staging
folder and renamed when the split closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 4096
ROW_GROUP_BYTES = 64 << 20


@dataclass(frozen=True)
class SplitFiles:
    split: str
    rows: int
    files: tuple[str, ...]
    num_bytes: int
    """Arrow (in-memory) bytes, as the card's `num_bytes` counts them."""
    file_bytes: int
    """Paths, or URIs once published."""


@dataclass
class SplitWriter:
    """Streams one split of one config into `folder/<split>-NNNNN-of-MMMMM.parquet`."""

    folder: Path
    split: str
    schema: pa.Schema
    max_shard_bytes: int
    rows: int = 0
    num_bytes: int = 0
    _pending: list[pa.Table] = field(default_factory=list)
    _pending_rows: int = 0
    _pending_bytes: int = 0
    _writer: pq.ParquetWriter | None = None
    _shard_bytes: int = 0
    _shards: list[Path] = field(default_factory=list)

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        self.rows += table.num_rows
        self.num_bytes += table.nbytes
        if (self._pending_rows >= ROW_GROUP_ROWS
                or self._pending_bytes >= min(ROW_GROUP_BYTES, self.max_shard_bytes)):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        group = pa.concat_tables(self._pending)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_table(group, row_group_size=group.num_rows)
        self._shard_bytes += group.nbytes
        if self._shard_bytes >= self.max_shard_bytes:
            self._close_shard()

    def _open(self) -> None:
        path = self.folder / f".{self.split}-{len(self._shards):05d}.parquet"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._shards.append(path)

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer, self._shard_bytes = None, 0

    def close(self) -> SplitFiles:
        """Flush, and give the shards their final names. An empty split gets no file:
        `datasets` refuses to load a declared split without rows."""
        self._flush()
        self._close_shard()
        n = len(self._shards)
        final = []
        for i, path in enumerate(self._shards):
            dest = self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            path.rename(dest)
            final.append(str(dest))
        return SplitFiles(self.split, self.rows, tuple(final), self.num_bytes,
                          sum(Path(p).stat().st_size for p in final))
