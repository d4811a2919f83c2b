"""Code normalisation shared by the codebook builder and the readers.

The Bureau writes character codes zero-padded ("01", "0170") in some places and not in
others; the NIST excerpt writes them bare. Dropping leading zeros makes every source
agree, so lookups never depend on how a file was written.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def normalize_code(code: str) -> str:
    code = code.strip()
    if code.isdigit():
        return code.lstrip("0") or "0"
    return code


def normalize_codes(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Vectorised `normalize_code` over a string array; nulls stay null."""
    trimmed = pc.utf8_trim_whitespace(arr)
    digits = pc.utf8_is_digit(trimmed)
    stripped = pc.utf8_ltrim(trimmed, characters="0")
    stripped = pc.if_else(pc.equal(stripped, ""), pa.scalar("0"), stripped)
    out = pc.if_else(digits, stripped, trimmed)
    # Empty strings are blanks (N/A), i.e. null.
    return pc.if_else(pc.equal(out, ""), pa.scalar(None, pa.string()), out)
