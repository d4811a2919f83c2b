"""The recipe: every stage declared once, switched by the config, and consistent with itself."""

from __future__ import annotations

import pytest

from persona_gen.plan.assign import PLAN_SCHEMA
from persona_gen.prompts.build import OUTPUT_SCHEMA
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig

ALL = ["enrich", "consistency", "controversy", "original", "critique", "revision", "verify"]


def _cfg(**sections: dict) -> RunConfig:
    return RunConfig.model_validate(sections)


def test_the_default_config_enables_every_job_stage_in_order() -> None:
    rec = R.recipe(_cfg())
    assert rec.names == ALL
    assert [s.phase for s in rec] == ["personas"] * 2 + ["prompts"] * 2 + ["pairs"] * 3


@pytest.mark.parametrize("missing", ["controversy", "consistency", "verify", "enrich"])
def test_switches_remove_exactly_their_stage(missing: str) -> None:
    cfg = _cfg(stages={missing: {"enabled": False}})
    assert R.recipe(cfg).names == [n for n in ALL if n != missing]


def test_a_disabled_stage_passes_its_input_through() -> None:
    with_classifier = R.recipe(_cfg()).get("original")
    assert with_classifier.reads == R.stage("controversy").writes
    assert with_classifier.reads_where == ("controversy", "controversial")
    without = R.recipe(_cfg(stages={"controversy": {"enabled": False}})).get("original")
    assert without.reads == R.PROMPT_CANDIDATES and without.reads_where is None


def test_models_and_folders_come_from_the_declarations() -> None:
    cfg = _cfg(stages={"defaults": {"model": "gen"}, "verify": {"model": "judge"},
                       "enrich": {"model": "writer"}, "consistency": {"model": "checker"},
                       "controversy": {"model": "sorter"}})
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


def test_every_stage_is_built_from_its_settings() -> None:
    """One constructor per stage: what the config says is what the built stage does."""
    cfg = _cfg(stages={"defaults": {"temperature": 0.3, "max_tokens": 77},
                       "critique": {"max_tokens": 55, "retry_max_tokens": 0},
                       "enrich": {"field_max_chars": 50}, "bench_judge": {"critique_chars": 99},
                       "bench_answer": {"max_tokens_by_mode": {"cot": 11}}})
    for s in R.all_stages():
        built = s.build(cfg)
        want = s.settings(cfg)
        sampling = getattr(built, "sampling", None)
        if sampling is not None:
            assert (sampling.temperature, sampling.max_tokens) == (0.3, want.max_tokens), s.name
        assert want.temperature == 0.3, s.name  # stages.defaults fills every stage
    assert R.build(cfg, "critique").sampling.max_tokens == 55
    assert R.build(cfg, "critique").retry_max_tokens is None
    assert R.build(cfg, "revision").retry_max_tokens == 154  # twice its limit
    assert R.build(cfg, "enrich").max_chars == 50
    assert R.build(cfg, "bench_judge").critique_chars == 99
    assert R.build(cfg, "bench_answer").max_tokens_for("cot") == 11
    assert R.build(cfg, "bench_answer").max_tokens_for("summary") == 768  # default kept


def test_built_in_defaults_hold_where_the_config_is_silent() -> None:
    cfg = _cfg()
    assert R.settings(cfg, "consistency").temperature == 0.0  # a judge is greedy
    assert R.settings(cfg, "verify").temperature == 0.0
    assert R.settings(cfg, "enrich").temperature == 0.8
    assert R.settings(cfg, "critique").temperature == 0.7
    assert R.build(cfg, "controversy").sampling.seed is None  # no per-request seed
    assert R.build(cfg, "critique").sampling.seed == 0


def test_the_phase_graph_is_declared_once() -> None:
    assert R.PHASES == ("personas", "prompts", "plan", "pairs")
    assert R.phase("plan").needs == (R.PERSONAS, R.PROMPTS)
    assert R.maker(R.PLAN) == "plan"
    for p in R.GRAPH:
        for table in p.needs:
            assert R.PHASES.index(R.maker(table)) < R.PHASES.index(p.name)


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


def test_thinking_is_a_stage_setting() -> None:
    """stages.<name>.thinking reaches the built stage's requests; the cost plan counts its
    budget; a stage without a switch refuses it in one line."""
    from persona_gen.cost.estimate import workload_from_config
    from persona_gen.errors import ConfigError

    cfg = _cfg(stages={"defaults": {"thinking": "off"},
                       "critique": {"thinking": "on", "thinking_budget": 64}})
    critique = R.build(cfg, "critique")
    assert critique.thinking.on and critique.thinking.budget == 64
    assert not R.build(cfg, "revision").thinking.on
    assert "critique_reasoning" in critique.reasoning_columns()
    planned = {s.stage: s.reasoning_tokens for s in workload_from_config(cfg).stages}
    assert planned["critique"] == 64 and planned["revision"] == 0
    with pytest.raises(ConfigError, match=r"stages\.bench_answer\.thinking"):
        _cfg(stages={"bench_answer": {"thinking": "on"}})
