"""Census sampling options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from persona_gen.config.base import StrictModel


class DownloadConfig(StrictModel):
    year: int = 2023
    period: Literal["1-Year", "5-Year"] = "1-Year"
    states: list[str] = []
    """Two-letter codes (or US for the national archive); empty: census.states."""
    dest: str = "data/census"
    """Local folder the archives download into (resumable staging when `to` is set)."""
    to: str | None = None
    """Also copy the archives here: a path, file://, s3://, gs:// or az://bucket/prefix URI (files land at
    TO/YEAR/PERIOD/csv_p{st}.zip, what census.sources then names)."""
    base_url: str | None = None
    """Mirror of the Bureau's PUMS folder; default: $PERSONA_GEN_PUMS_BASE_URL, else
    https://www2.census.gov/programs-surveys/acs/data/pums."""


class FidelityConfig(StrictModel):
    threshold: float = Field(default=0.05, gt=0, le=1)
    """Attributes whose total-variation distance is above this are flagged."""


class CensusConfig(StrictModel):
    sources: list[str] = []
    """PUMS person files (psam_p*.csv, csv_p??.zip) or NIST excerpt CSVs."""
    layout: Literal["auto", "pums", "nist"] = "auto"
    n: int = Field(default=1586, ge=1)
    seed: int | None = Field(default=None, ge=0)
    """Sampling seed; default: run.seed."""
    states: list[str] = []
    """Two-letter state codes to keep; empty keeps all."""
    min_age: int | None = 18
    max_age: int | None = None
    stratify: list[str] = []
    """Attributes to stratify on (e.g. state, sex, age in 10-year bins); empty: none."""
    block_mb: int = Field(default=2, ge=1, le=1024)
    """CSV read block size: memory per batch, not per file."""
    fidelity: FidelityConfig = Field(default_factory=FidelityConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
