"""Where bench outputs live inside a run: `<run>/bench/...`.

Tables are addressed by name; `read` accepts either one Parquet file (`answers.parquet`,
what the in-process runner writes) or a folder of parts (`answers/`, what a distributed
writer produces), so the report works on both.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from persona_gen.storage.objects import exists, read_table, write_table_atomic
from persona_gen.storage.runref import RunRef
from persona_gen.storage.uri import Location

FOLDER = "bench"
"""Where a run keeps its bench: `<run>/bench/`."""
REQUESTS = "requests"
ANSWERS = "answers"
"""One row per sample, with the answer and any answer error."""
JUDGMENTS = "judgments"
"""One row per judged sample: critiques, verdict, judge error."""
ACCURACY = "metrics/accuracy"
LOO_KAPPA = "metrics/loo_kappa"
PASS_AT_K_CURVE = "metrics/pass_at_k_curve"
"""pass@k for k = 1..k per model and mode (written with the report)."""
INTERSECTIONALITY = "metrics/intersectionality"
"""Accuracy per population of bench.intersections (bench run writes it: it needs personas)."""
TOKENS = "metrics/tokens"
"""Prompt and output tokens per model and mode, answers and judging (written with the report)."""
HUMAN_ITEMS = "human/items"
HUMAN_RATINGS = "human/ratings"
HUMAN_MAJORITY = "human/majority"
ROLEPLAY = "human/roleplay"
HUMAN_AGREEMENT = "human/agreement"
HUMAN_PERSONA_AGREEMENT = "human/persona_agreement"
"""Kappa per role-player, variant and persona (the per-persona distribution)."""


@dataclass(frozen=True)
class BenchLayout:
    base: Location

    @classmethod
    def of(cls, run: RunRef) -> BenchLayout:
        return cls(run.child(FOLDER))

    def file(self, name: str) -> Location:
        return self.base.child(f"{name}.parquet")

    def folder(self, name: str) -> Location:
        return self.base.child(name)

    def has(self, name: str) -> bool:
        return exists(self.file(name)) or exists(self.folder(name))

    def read(self, name: str) -> pa.Table | None:
        if exists(self.file(name)):
            return read_table(self.file(name))
        if exists(self.folder(name)):
            return read_table(self.folder(name))
        return None

    def write(self, name: str, table: pa.Table) -> Location:
        loc = self.file(name)
        write_table_atomic(loc, table)
        return loc

    @property
    def report(self) -> Location:
        return self.base.child("report")

    @property
    def sheets(self) -> Location:
        return self.base.child("human", "sheets")
