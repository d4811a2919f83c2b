"""Benchmark options."""

from __future__ import annotations

from typing import Literal

from persona_gen.config.base import StrictModel

Mode = Literal["baseline", "output_only", "cot", "summary"]


class BenchConfig(StrictModel):
    models: list[str] = ["smollm2-135m-instruct"]
    judge_model: str = "smollm2-135m-instruct"
    modes: list[Mode] = ["baseline", "output_only", "cot", "summary"]
    k: int = 1
    bootstrap_samples: int = 1000
