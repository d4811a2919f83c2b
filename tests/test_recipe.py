"""The recipe: every stage declared once, switched by the config, and consistent with itself."""

from __future__ import annotations

import pytest

from persona_gen.config.run import RunConfig
from persona_gen.plan.assign import PLAN_SCHEMA
from persona_gen.prompts.build import OUTPUT_SCHEMA
from persona_gen.run import recipe as R

ALL = ["enrich", "consistency", "controversy", "original", "critique", "revision", "verify"]


def _cfg(**sections: dict) -> RunConfig:
    return RunConfig.model_validate(sections)


def test_the_default_config_enables_every_job_stage_in_order() -> None:
    rec = R.recipe(_cfg())
    assert rec.names == ALL
    assert [s.phase for s in rec] == ["personas"] * 2 + ["prompts"] * 2 + ["pairs"] * 3


@pytest.mark.parametrize(("sections", "missing"), [
    ({"prompts": {"classifier_model": None}}, "controversy"),
    ({"personas": {"model_consistency_check": False}}, "consistency"),
    ({"feedback": {"verify": False}}, "verify"),
])
def test_switches_remove_exactly_their_stage(sections: dict, missing: str) -> None:
    assert R.recipe(_cfg(**sections)).names == [n for n in ALL if n != missing]


def test_a_disabled_stage_passes_its_input_through() -> None:
    with_classifier = R.recipe(_cfg()).get("original")
    assert with_classifier.reads == R.stage("controversy").writes
    assert with_classifier.reads_where == ("controversy", "controversial")
    without = R.recipe(_cfg(prompts={"classifier_model": None})).get("original")
    assert without.reads == R.PROMPT_CANDIDATES and without.reads_where is None


def test_models_and_folders_come_from_the_declarations() -> None:
    cfg = _cfg(feedback={"model": "gen", "judge_model": "judge"},
               personas={"enrich_model": "writer", "judge_model": "checker"},
               prompts={"classifier_model": "sorter"})
    rec = R.recipe(cfg)
    assert {s.name: s.model(cfg) for s in rec} == {
        "enrich": "writer", "consistency": "checker", "controversy": "sorter",
        "original": "gen", "critique": "gen", "revision": "gen", "verify": "judge"}
    assert R.models(cfg) == ["checker", "gen", "judge", "sorter", "writer"]
    writes = [s.writes for s in R.all_stages()]
    assert len(writes) == len(set(writes)), "two stages write one folder"


def test_every_stage_declares_its_columns_and_token_counts() -> None:
    for s in R.all_stages():
        assert s.id_column in s.needs, s.name
        assert f"{s.name}_prompt_tokens" in s.adds and f"{s.name}_output_tokens" in s.adds
        assert s.build(_cfg()).name == s.name


@pytest.mark.parametrize("phase", ["prompts", "pairs"])
def test_each_chain_step_finds_the_columns_it_needs(phase: str) -> None:
    chain = R.chain(_cfg(), phase)
    start = OUTPUT_SCHEMA.names if phase == "prompts" else PLAN_SCHEMA.names
    have = set(start) | {lk.column for lk in chain.lookups}
    for step in chain.steps:
        declared = R.stage(step.name)
        assert set(declared.needs) <= have, (step.name, set(declared.needs) - have)
        have |= set(declared.adds)
        have -= set(step.drop) - {lk.column for lk in chain.lookups}
