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
    threshold: float | None = Field(default=None, gt=0, le=1)
    """A fixed cap: attributes whose total-variation distance is above it are flagged,
    instead of those above their noise band. Default: none, the noise band decides (a fixed
    cap measures luck: at n = 1,586 an ideal draw's TVD on a 10-bin attribute is about 0.03)."""
    noise_draws: int = Field(default=2000, ge=100, le=100_000)
    """Ideal weighted draws of the same size simulated per attribute for its noise band
    (expected TVD and 95th percentile), from a fixed seed."""
    report: bool = True
    """The personas phase writes `personas/fidelity.json` for the kept personas (re-reads
    the census files once); `status` and the dataset card show it."""


class CensusConfig(StrictModel):
    sources: list[str] = []
    """PUMS person files (psam_p*.csv, csv_p??.zip) or NIST excerpt CSVs."""
    layout: Literal["auto", "pums", "nist"] = "auto"
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
