"""One scanner for every count read off a run's committed files (status, the manifest's
stage records, quality): rows from Parquet footers, and, reading each file once, the sums
of integer columns and the rows where a column equals a value."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from persona_gen.storage import objects
from persona_gen.storage.retry import retrying
from persona_gen.storage.uri import Location

THREADS = 16
"""Files read at once: at paper scale a stage has about 310 files [derived: 317,200 rows /
1,024 per block], each a footer read, so latency, not bandwidth, bounds a scan."""


@dataclass
class Tally:
    rows: int = 0
    files: int = 0
    sums: dict[str, int] = field(default_factory=dict)
    """Per column: its sum (0 where a file lacks it)."""
    equal: dict[str, int] = field(default_factory=dict)
    """Per column: rows equal to the value asked for (0 where a file lacks it)."""


def tally(loc: Location, *, sums: tuple[str, ...] = (),
          equal: Mapping[str, Any] | None = None) -> Tally:
    """Counts over every Parquet file under a folder (none: all zero)."""
    equal = dict(equal or {})
    files = objects.list_files(loc, ".parquet")

    def one_once(path: str) -> Tally:
        with loc.fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            out = Tally(rows=pf.metadata.num_rows, files=1, sums=dict.fromkeys(sums, 0),
                        equal=dict.fromkeys(equal, 0))
            present = [c for c in dict.fromkeys((*sums, *equal)) if c in pf.schema_arrow.names]
            if not present:
                return out
            table = pf.read(columns=present)
            for c in sums:
                if c in present:
                    out.sums[c] = int(pc.sum(table.column(c)).as_py() or 0)
            for c, value in equal.items():
                if c in present:
                    out.equal[c] = int(pc.sum(pc.equal(table.column(c), value)).as_py() or 0)
            return out

    def one(path: str) -> Tally:
        return retrying("GET", loc.at(path), lambda: one_once(path))

    total = Tally(sums=dict.fromkeys(sums, 0), equal=dict.fromkeys(equal, 0))
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for part in pool.map(one, files):
            total.rows += part.rows
            total.files += part.files
            for c, v in part.sums.items():
                total.sums[c] += v
            for c, v in part.equal.items():
                total.equal[c] += v
    return total
