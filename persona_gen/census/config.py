"""Census sampling options."""

from __future__ import annotations

from typing import Literal

from persona_gen.config.base import StrictModel


class CensusConfig(StrictModel):
    sources: list[str] = []
    """PUMS person files (psam_p*.csv, csv_p??.zip) or NIST excerpt CSVs."""
    layout: Literal["auto", "pums", "nist"] = "auto"
    n: int = 1586
    states: list[str] = []
    """Two-letter state codes to keep; empty keeps all."""
    min_age: int = 18
    max_age: int | None = None
