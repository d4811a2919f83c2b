"""Look up a column by key for every row of a block: persona split, the judge's verdict.

The keyed tables are small next to the pairs (one short id and one code per pair or
persona), so they are held as sorted NumPy arrays and joined to each block with a binary
search: a block costs O(rows log n), with no hash table rebuilt per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


def _keys(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    # Fixed-width bytes sort and compare in C; ids are short, so the padding costs little.
    return np.array([b"" if v is None else v.encode() for v in column.to_pylist()], dtype=bytes)


@dataclass(frozen=True)
class KeyedColumn:
    """Values of one string column, addressable by a string key."""

    keys: np.ndarray
    codes: np.ndarray
    """Index into `labels` per key; -1 where the value is null."""
    labels: tuple[str, ...]

    @classmethod
    def build(cls, keys: pa.ChunkedArray | pa.Array,
              values: pa.ChunkedArray | pa.Array) -> KeyedColumn:
        k = _keys(keys)
        encoded = pa.chunked_array(values).cast(pa.string()).combine_chunks().dictionary_encode()
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        order = np.argsort(k, kind="stable")
        return cls(k[order], codes[order], tuple(encoded.dictionary.to_pylist()))

    def __len__(self) -> int:
        return len(self.keys)

    def counts(self) -> dict[str, int]:
        """Rows per value (nulls under '')."""
        values, n = np.unique(self.codes, return_counts=True)
        return {(self.labels[v] if v >= 0 else ""): int(c) for v, c in zip(values, n, strict=True)}

    def lookup(self, keys: pa.ChunkedArray | pa.Array) -> pa.Array:
        """The value for each key, null where the key is unknown or its value is null."""
        if not len(self.keys):
            return pa.nulls(len(keys), pa.string())
        want = _keys(keys)
        pos = np.searchsorted(self.keys, want)
        pos = np.minimum(pos, len(self.keys) - 1)
        found = self.keys[pos] == want
        codes = np.where(found, self.codes[pos], -1)
        labels = pa.array(self.labels, pa.string())
        return pa.DictionaryArray.from_arrays(
            pa.array(codes, pa.int32(), mask=codes < 0), labels).cast(pa.string())
