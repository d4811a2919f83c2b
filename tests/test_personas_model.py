"""Personas end to end with the bundled model (SmolLM2-135M-Instruct on vLLM, CPU).

A 135M model writes poor prose and sometimes breaks the JSON; the point here is that the
whole path runs on a real engine: census draw, traits, rules, enrichment, model judge,
resampling, rendering, and that every unusable answer is counted, never fatal.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from persona_gen.engines.base import Engine
from persona_gen.personas.attributes import LLM_ATTRIBUTES
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.record import Persona
from persona_gen.pipeline.stage import in_process
from tests.pipeline_helpers import personas_with

pytestmark = pytest.mark.model


def test_personas_end_to_end_with_the_bundled_model(
    bundled_engine: Engine, census_dir: Path
) -> None:
    from persona_gen.census.sample import sample_people

    source = str(census_dir / "nist-acs-2019" / "national2019.csv")
    census = sample_people([source], n=5, seed=21)
    draws: list[int] = []

    def resample(n: int) -> pa.Table:
        draws.append(n)
        return sample_people([source], n=n, seed=1000 + len(draws))

    # Small answers: CPU decoding is slow and the JSON must fit in max_tokens.
    stages = {"enrich": {"max_tokens": 160, "field_max_chars": 60},
              "consistency": {"max_tokens": 64, "reason_max_chars": 80}}
    table, stats = personas_with(census, bundled_engine, bundled_engine,
                                 PersonasConfig(max_resamples=1), seed=21, resample=resample,
                                 stages=stages, runner=in_process(16))
    print("persona stats:", stats.model_dump_json())

    assert stats.kept + stats.dropped == stats.requested == 5
    assert stats.model_calls["enrich"] >= 5
    # Every enrichment answer was either used or counted as invalid.
    enriched = stats.model_calls["enrich"] - stats.invalid_outputs.get("enrich", 0)
    assert 0 < stats.model_calls["consistency"] <= enriched or enriched == 0
    judged_ok = stats.model_calls.get("consistency", 0) - stats.invalid_outputs.get(
        "consistency", 0) - stats.rejections.get("model_judge", 0)
    assert judged_ok == stats.kept
    assert len(draws) == (1 if stats.rounds == 2 else 0)
    for row in table.to_pylist():
        persona = Persona.from_row(row)  # valid record
        assert persona.provenance.enrich_model == bundled_engine.name
        assert all(getattr(persona, a) for a in LLM_ATTRIBUTES)
        assert persona.persona_text.startswith(f"age: {persona.age}\n")
        assert "detailed_job_description: " in persona.persona_text
        print(persona.persona_text, end="\n\n")


def test_unusable_model_answers_are_counted_not_fatal(
    bundled_engine: Engine, census_dir: Path
) -> None:
    """Too few tokens for the JSON: every answer is cut off, so every row fails, counted."""
    from persona_gen.census.sample import sample_people

    census = sample_people([str(census_dir / "nist-acs-2019" / "ma2019.csv")], n=2, seed=5)
    table, stats = personas_with(census, bundled_engine, bundled_engine,
                                 PersonasConfig(max_resamples=1), seed=5,
                                 stages={"enrich": {"max_tokens": 16, "field_max_chars": 60}})
    print("persona stats:", stats.model_dump_json())
    assert table.num_rows == 0
    assert (stats.kept, stats.dropped, stats.rounds) == (0, 2, 2)
    assert stats.invalid_outputs == {"enrich": 4} == stats.model_calls
    assert all(e.startswith("enrich: ") for e in stats.error_samples["enrich"])
