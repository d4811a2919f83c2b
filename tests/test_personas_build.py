"""Persona stages and the build loop, driven by a deterministic no-model engine."""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from persona_gen.engines.base import ChatRequest, ChatResult, Engine
from persona_gen.errors import DataError, UserError
from persona_gen.hashing import stable_seed
from persona_gen.personas.attributes import CENSUS_EXTRAS, LLM_ATTRIBUTES, PERSONA_ATTRIBUTES
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.consistency import ConsistencyStage
from persona_gen.personas.enrich import EnrichStage
from persona_gen.personas.record import Persona
from persona_gen.pipeline.stage import ModelStage, run_in_process
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from tests.pipeline_helpers import personas_with


class ScriptedJsonEngine:
    """A deterministic engine with no model: it fills each JSON-schema request from the schema.

    String fields read '<field> of <persona id>' (cut to maxLength), booleans are true
    unless the persona is listed in `inconsistent`. `garbled` request ids get a truncated
    JSON text; `overrides` maps a request id to the object to answer instead.
    """

    def __init__(self, name: str = "scripted", *, garbled: Iterable[str] = (),
                 inconsistent: Iterable[str] = (), overrides: dict[str, dict[str, Any]] | None = None,
                 parsed: bool = True) -> None:
        self.name = name
        self.garbled = set(garbled)
        self.inconsistent = set(inconsistent)
        self.overrides = overrides or {}
        self.parsed = parsed
        self.seen: list[ChatRequest] = []

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        self.seen += requests
        return [self._answer(r) for r in requests]

    def _answer(self, req: ChatRequest) -> ChatResult:
        if req.id in self.garbled:
            return ChatResult(id=req.id, texts=['{"detailed_job_description": "Drives a'])
        persona_id = req.id.split(":")[1]
        obj = self.overrides.get(req.id)
        if obj is None:
            obj = {}
            for key, spec in (req.json_schema or {}).get("properties", {}).items():
                if spec.get("type") == "boolean":
                    obj[key] = persona_id not in self.inconsistent
                else:
                    obj[key] = f"{key} of {persona_id}"[: spec.get("maxLength", 500)]
        return ChatResult(id=req.id, texts=[json.dumps(obj)], parsed=[obj] if self.parsed else [])

    def close(self) -> None:
        return None


def census_rows(rows: list[dict[str, Any]], source: str = "test.csv") -> pa.Table:
    """A census-like table: sampler columns with real ACS labels, overridable per row."""
    base: dict[str, Any] = {
        "source": source, "pwgtp": 40, "age": 38, "sex": "Female",
        "race": "White alone", "ancestry": "German", "household_language": "English only",
        "education": "Bachelor's degree", "employment_status": "Civilian employed, at work",
        "class_of_worker": "Local government employee (city, county, etc.)",
        "industry_category": "EDU-Elementary And Secondary Schools",
        "occupation_category": "EDU-Elementary And Middle School Teachers",
        "income": 61_000, "marital_status": "Now married, spouse present",
        "household_type": None, "family_presence_and_age": "Females with own children 6 to 17 years only",
        "place_of_birth": "Ohio", "citizenship": "Born in the United States",
        "veteran_status": "Never served in the military", "disability": "Without a disability",
        "health_insurance": "With health insurance coverage", "cognitive_difficulty": "No",
        "ability_to_speak_english": "Speaks only English", "vision_difficulty": "No",
        "fertility": "Did not give birth within the past 12 months", "hearing_difficulty": "No",
        "hispanic_origin": "Not Spanish/Hispanic/Latino", "state": "Ohio", "income_decile": 6,
    }
    full = [{**base, "persona_id": f"p{i}", "record_id": f"r{i}", **row} for i, row in enumerate(rows)]
    types = {"age": pa.int32(), "income": pa.int64(), "pwgtp": pa.int64(), "income_decile": pa.int32()}
    names = list(full[0])
    return pa.table({n: pa.array([r[n] for r in full], types.get(n, pa.string())) for n in names})


# --- stages ----------------------------------------------------------------------------


def test_enrich_requests_carry_the_schema_and_the_rendered_persona() -> None:
    cfg = RunConfig.model_validate({"stages": {"enrich": {"field_max_chars": 90,
                                                          "max_tokens": 150}}})
    people = census_rows([{}, {"age": 70}])
    people = people.append_column("core_values", pa.array([["Thrift", "Faith"], ["Humor"]]))
    people = people.append_column("categories", pa.array([["Travel", "Music"], ["Sports"]]))
    people = people.append_column("persona_seed", pa.array([123, 456], pa.int64()))
    reqs = R.build(cfg, "enrich").requests(people)
    assert [r.id for r in reqs] == ["enrich:p0:0", "enrich:p1:0"]
    schema = reqs[0].json_schema
    assert schema is not None and list(schema["properties"]) == list(LLM_ATTRIBUTES)
    assert all(p["maxLength"] == 90 for p in schema["properties"].values())
    assert set(schema["required"]) == set(LLM_ATTRIBUTES)
    assert schema.get("additionalProperties") is False
    user = reqs[0].messages[-1].content
    assert "age: 38\nsex: Female" in user and "income: $61,000" in user
    assert "core values: Thrift; Faith" in user and "Travel, Music" in user
    assert "age: 70" in reqs[1].messages[-1].content
    # The row seed derives from the run seed, the stage and the row's own key.
    assert reqs[0].sampling.max_tokens == 150
    assert reqs[0].sampling.seed == stable_seed(0, "enrich", "enrich:p0:0") != reqs[1].sampling.seed


def test_enrich_results_turn_bad_answers_into_row_errors() -> None:
    stage = EnrichStage(max_chars=40)
    good = {name: f"short {name}" for name in LLM_ATTRIBUTES}
    answers = [
        ChatResult(id="a", texts=[json.dumps(good)]),                       # text only: parsed
        ChatResult(id="b", texts=["x"], parsed=[good]),                     # parsed object wins
        ChatResult(id="c", texts=['{"lifestyle": "Runs ev']),                # truncated JSON
        ChatResult(id="d", error="engine died"),
        ChatResult(id="e", texts=[json.dumps({**good, "hobby": "chess"})]),  # unknown key
        ChatResult(id="f", texts=[json.dumps({**good, "religion": "  "})]),  # blank field
        ChatResult(id="g", texts=[json.dumps({**good, "ideology": "x" * 41})]),  # too long
        ChatResult(id="h", texts=[""]),
    ]
    batch = pa.table({"persona_id": [f"p{i}" for i in range(len(answers))]})
    out = stage.results(batch, answers)
    errors = out.column("error").to_pylist()
    assert errors[:2] == [None, None]
    assert all(e is not None and e.startswith("enrich: ") for e in errors[2:])
    assert "invalid JSON" in errors[2] and "engine died" in errors[3]
    assert "hobby" in errors[4] and "religion" in errors[5] and "ideology" in errors[6]
    assert out.column("religion").to_pylist()[:3] == ["short religion", "short religion", None]


def test_judge_stage_reads_verdicts_and_errors() -> None:
    stage = ConsistencyStage(reason_max_chars=30)
    answers = [
        ChatResult(id="a", texts=['{"consistent": true, "reason": "fits"}']),
        ChatResult(id="b", texts=['{"consistent": false, "reason": "a minor with a big salary"}']),
        ChatResult(id="c", texts=['{"consistent": "maybe", "reason": "?"}']),
        ChatResult(id="d", texts=['{"consistent": tr']),
    ]
    out = stage.results(pa.table({"persona_id": ["a", "b", "c", "d"]}), answers)
    assert out.column("consistent").to_pylist() == [True, False, None, None]
    assert out.column("judge_reason").to_pylist()[:2] == ["fits", "a minor with a big salary"]
    assert [e is None for e in out.column("error").to_pylist()] == [True, True, False, False]
    reqs = stage.requests(census_rows([{}]))
    # Reason first: the verdict is decoded after the reasoning, not justified after it.
    assert list(reqs[0].json_schema["properties"]) == ["reason", "consistent"]
    assert "Persona:\nage: 38" in reqs[0].messages[-1].content


def test_stages_are_model_stages_that_travel_to_workers() -> None:
    for stage in (EnrichStage(), ConsistencyStage()):
        assert isinstance(stage, ModelStage)
        assert pickle.loads(pickle.dumps(stage)) == stage
    empty = run_in_process(EnrichStage(), ScriptedJsonEngine(), census_rows([{}]).slice(0, 0))
    assert empty.num_rows == 0 and "error" in empty.column_names
    assert isinstance(ScriptedJsonEngine(), Engine)


# --- the build loop --------------------------------------------------------------------


def test_build_without_models_applies_rules_splits_and_renders() -> None:
    census = census_rows([{}, {"age": 16, "income": 150_000, "education": "Grade 10"},
                          {"age": 44}, {"age": 19, "education": "Doctorate degree"}, {"age": 61}])
    out, stats = personas_with(census, None, None, PersonasConfig(test_fraction=0.5), seed=3)
    assert out.column("persona_id").to_pylist() == ["p0", "p2", "p4"]
    assert stats.rejections == {"minor_high_income": 1, "degree_too_young": 1}
    # No resample function: census-only failures cannot be fixed, so they are dropped at once.
    assert (stats.kept, stats.dropped, stats.rounds, stats.resampled) == (3, 2, 1, 0)
    assert sorted(out.column("split").to_pylist()) == ["test", "test", "train"]  # round(1.5)
    assert stats.splits == {"train": 1, "test": 2}
    assert out.schema.field("age").type == pa.int32() and out.schema.field("income").type == pa.int64()
    assert out.column_names[:2] == ["persona_id", "split"]
    assert set(PERSONA_ATTRIBUTES) | set(CENSUS_EXTRAS) <= set(out.column_names)
    row = out.to_pylist()[0]
    persona = Persona.from_row(row)
    assert persona.provenance.record_id == "r0" and persona.provenance.source == "test.csv"
    assert row["persona_text"].startswith("age: 38\nsex: Female\nrace: White alone")
    assert "big_five_scores: Openness: " in row["persona_text"]
    assert "detailed_job_description" not in row["persona_text"]  # no enrichment engine


def test_build_with_models_counts_invalid_outputs_and_judge_rejections() -> None:
    census = census_rows([{}, {"age": 25}, {}, {}])
    enrich = ScriptedJsonEngine(
        "enricher",
        garbled={"enrich:p2:0"},                                    # fixed on attempt 1
        overrides={"enrich:p1:0": {**{a: "Plain text." for a in LLM_ATTRIBUTES},
                                   "detailed_job_description": "Retired after 30 years of mining."}},
    )
    judge = ScriptedJsonEngine("judge", inconsistent={"p3"}, parsed=False)
    cfg = PersonasConfig(max_resamples=2)
    out, stats = personas_with(census, enrich, judge, cfg, seed=5)

    assert out.column("persona_id").to_pylist() == ["p0", "p1", "p2"]
    assert out.column("attempt").to_pylist() == [0, 1, 1]
    assert stats.invalid_outputs == {"enrich": 1}
    assert stats.error_samples["enrich"][0].startswith("enrich: invalid JSON")
    assert stats.rejections == {"retired_too_young": 1, "model_judge": 3}  # p3 on every round
    assert (stats.kept, stats.dropped, stats.rounds) == (3, 1, 3)
    # Round 0: 4 enriched, 2 judged (p1 broke a rule, p2's answer was garbled); round 1:
    # p1, p2, p3; round 2: p3 alone.
    assert stats.model_calls == {"enrich": 4 + 3 + 1, "consistency": 2 + 3 + 1}
    rows = {r["persona_id"]: r for r in out.to_pylist()}
    assert rows["p0"]["detailed_job_description"] == "detailed_job_description of p0"
    assert "religion: religion of p0" in rows["p0"]["persona_text"]
    assert rows["p0"]["enrich_model"] == "enricher" and rows["p0"]["judge_model"] == "judge"
    # A resampled persona gets new traits: its seed differs from its first draw.
    first = next(r for r in enrich.seen if r.id == "enrich:p1:0").sampling.seed
    again = next(r for r in enrich.seen if r.id == "enrich:p1:1").sampling.seed
    assert first != again
    for row in rows.values():
        Persona.from_row(row)


def test_on_inconsistent_drop_drops_rejected_personas_and_keeps_their_count() -> None:
    # p1 breaks a rule (retired at 25), p3 is judged inconsistent, p2's enrichment answer is
    # garbled once (unusable output, not a verdict: asked again as the same person).
    census = census_rows([{}, {"age": 25}, {}, {}, {}])
    enrich = ScriptedJsonEngine(
        "enricher", garbled={"enrich:p2:0"},
        overrides={"enrich:p1:0": {**{a: "Plain text." for a in LLM_ATTRIBUTES},
                                   "detailed_job_description": "Retired after 30 years of mining."}})
    judge = ScriptedJsonEngine("judge", inconsistent={"p3"})
    draws: list[int] = []

    def resample(n: int) -> pa.Table:
        draws.append(n)
        return census_rows([{"age": 50}] * n)

    cfg = PersonasConfig(max_resamples=2, on_inconsistent="drop")
    out, stats = personas_with(census, enrich, judge, cfg, seed=5, resample=resample)
    assert draws == []  # never a new census person: the draw stays the census draw
    assert out.column("persona_id").to_pylist() == ["p0", "p2", "p4"]
    assert out.column("age").to_pylist() == [38, 38, 38]
    assert (stats.kept, stats.dropped, stats.resampled) == (3, 2, 0)
    assert stats.on_inconsistent == "drop"
    assert stats.rejections == {"retired_too_young": 1, "model_judge": 1}
    first = stats.first_round
    assert (first.personas, first.rejected_by_rule, first.judged, first.rejected_by_judge,
            first.unusable_output) == (5, 1, 3, 1, 1)
    # The same slots with `replace`: p1 and p3 get fresh census draws instead.
    _, stats2 = personas_with(census, ScriptedJsonEngine("enricher", overrides={
        "enrich:p1:0": {**{a: "Plain text." for a in LLM_ATTRIBUTES},
                        "detailed_job_description": "Retired after 30 years of mining."}}),
        ScriptedJsonEngine("judge", inconsistent={"p3"}), PersonasConfig(max_resamples=1),
        seed=5, resample=resample)
    assert draws == [2] and stats2.resampled == 2
    assert stats2.first_round.rejected_by_rule == 1 and stats2.first_round.rejected_by_judge == 1


def test_build_resamples_census_rows_for_census_failures() -> None:
    census = census_rows([{}, {"age": 16, "income": 300_000, "education": "Grade 11"}])
    draws: list[int] = []

    def resample(n: int) -> pa.Table:
        draws.append(n)
        return census_rows([{"age": 50}] * n, source=f"draw{len(draws)}.csv")

    out, stats = personas_with(census, None, None, PersonasConfig(), seed=1, resample=resample)
    assert draws == [1]
    assert out.column("persona_id").to_pylist() == ["p0", "p1"]  # the slot keeps its id
    replaced = out.to_pylist()[1]
    assert (replaced["age"], replaced["source"], replaced["attempt"]) == (50, "draw1.csv", 1)
    assert (stats.resampled, stats.kept, stats.dropped) == (1, 2, 0)
    assert stats.rejections == {"minor_high_income": 1}


def test_build_is_reproducible_from_the_seed() -> None:
    census = census_rows([{}, {"age": 30}, {"age": 52}, {"age": 77}])
    cfg = PersonasConfig()
    a, _ = personas_with(census, ScriptedJsonEngine(), ScriptedJsonEngine(), cfg, seed=9)
    b, _ = personas_with(census, ScriptedJsonEngine(), ScriptedJsonEngine(), cfg, seed=9)
    c, _ = personas_with(census, ScriptedJsonEngine(), ScriptedJsonEngine(), cfg, seed=10)
    assert a.equals(b)
    assert a.column("big_five_scores").to_pylist() != c.column("big_five_scores").to_pylist()


def test_build_rejects_a_census_table_it_cannot_use() -> None:
    with pytest.raises(DataError, match="unique"):
        personas_with(census_rows([{"persona_id": "x"}, {"persona_id": "x"}]), None, None,
                       PersonasConfig(), seed=1)
    with pytest.raises(DataError, match="age"):
        personas_with(pa.table({"persona_id": ["a"]}), None, None, PersonasConfig(), seed=1)


def test_build_skips_the_judge_when_configured_off() -> None:
    judge = ScriptedJsonEngine("judge", inconsistent={"p0"})
    out, stats = personas_with(census_rows([{}]), None, judge, PersonasConfig(), seed=1,
                               stages={"consistency": {"enabled": False}})
    assert out.num_rows == 1 and judge.seen == [] and "consistency" not in stats.model_calls
    assert out.column("judge_model").to_pylist() == [None]


# --- a run's personas from its config --------------------------------------------------


def test_a_runs_census_draw_and_resampling_build_the_personas(census_dir: Path,
                                                              tmp_path: Path) -> None:
    """The persona phase's method in-process: the run's census draw, a judge that rejects
    one persona's first draw, and a fresh census draw for that slot."""
    from persona_gen.run.config import load_config
    from persona_gen.run.draws import census_sampler, census_seed, resampler

    source = str(census_dir / "nist-acs-2019" / "ma2019.csv")
    cfg = load_config(None, [f"run.output={tmp_path}", "run.seed=4", f"census.sources=[{source}]",
                             "personas.n=12"])
    census = census_sampler(cfg, 12, census_seed(cfg))
    third = census.column("persona_id")[2].as_py()
    verdict = {"consistent": False, "reason": "contradiction"}
    engine = ScriptedJsonEngine("writer", overrides={f"consistency:{third}:0": verdict})
    table, stats = personas_with(census, engine, engine, cfg.personas, cfg.run.seed,
                                  resampler(cfg, census_sampler))
    assert table.num_rows == stats.kept == 12  # the rejected slot was resampled
    assert stats.rejections == {"model_judge": 1} and stats.resampled == 1
    redrawn = table.filter(pc.equal(table.column("persona_id"), third)).to_pylist()[0]
    assert redrawn["attempt"] == 1
    assert table.column("source").to_pylist()[0] == "ma2019.csv"
    assert all(t.startswith("age: ") for t in table.column("persona_text").to_pylist())


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI points structlog at the runner's stderr, closed after invoke: undo that."""
    import structlog

    from persona_gen.log import configure

    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        configure(json=False, stream=sys.stderr)


@pytest.mark.ray
@pytest.mark.usefixtures("restore_logging", "ray_local")
def test_cli_builds_personas_with_the_echo_engine(census_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from persona_gen.cli.main import app
    from persona_gen.run.recipe import PERSONA_STATS, PERSONAS
    from persona_gen.storage import objects
    from persona_gen.storage.runref import RunRef

    source = census_dir / "nist-acs-2019" / "tx2019.csv"
    args = ["personas", "build", "--set", f"run.output={tmp_path}", "--set", "run.run_id=cli",
            "--set", f"census.sources=[{source}]", "--set", "personas.n=10",
            "--set", "stages.enrich.model=echo", "--set", "stages.consistency.model=echo"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    run = RunRef.at(str(tmp_path), "cli")
    stats = objects.read_json(run.child(PERSONA_STATS))
    # --json: the stats the run wrote, as one object on stdout alone.
    printed = json.loads(result.stdout)
    assert printed["stats"] == stats and printed["uri"].endswith("/cli/personas/personas.parquet")
    assert stats["kept"] + stats["dropped"] == 10 and stats["model_calls"]["enrich"] >= 10
    table = objects.read_table(run.child(PERSONAS))
    manifest = objects.read_json(run.manifest)
    assert manifest["counts"]["personas"] == stats and manifest["phases"] == ["personas"]
    assert manifest["status"] == "partial"
    assert manifest["stages"]["enrich"]["output_tokens"] > 0
    assert table.num_rows == stats["kept"]
    assert set(table.column("enrich_model").to_pylist()) <= {"echo"}

    bad = CliRunner().invoke(app, ["personas", "build", "--set", f"run.output={tmp_path}",
                                   "--set", "personas.n=3"])
    assert isinstance(bad.exception, UserError) and "census.sources" in str(bad.exception)


def test_build_copes_with_a_runner_that_returns_only_failed_rows() -> None:
    """A pipeline runner hands back failed rows as its inputs plus `error`, without the
    stage's own columns (persona_gen.feedback.persona_phase does so)."""

    def failing_runner(stage: ModelStage, engine: Engine, table: pa.Table) -> pa.Table:
        if stage.name == "enrich":
            return run_in_process(stage, engine, table)
        return table.append_column("error", pa.array(["worker died"] * table.num_rows))

    out, stats = personas_with(census_rows([{}, {}]), ScriptedJsonEngine(), ScriptedJsonEngine(),
                                PersonasConfig(max_resamples=1), seed=2, runner=failing_runner)
    assert out.num_rows == 0
    assert stats.invalid_outputs == {"consistency": 4} and stats.dropped == 2
    assert stats.error_samples["consistency"] == ["worker died"] * 3


# --- personas.n: the number kept (drop draws on in draw order) ---------------------------


def test_drop_draws_on_in_draw_order_until_exactly_n_are_kept(census_dir: Path) -> None:
    """A judge that rejects every fourth person in draw order (a known 25%): the build
    draws on from the run's census draw, in draw order, and keeps exactly personas.n, the
    first n survivors; the kept set is the draw minus the rejects."""
    from persona_gen.run.config import load_config
    from persona_gen.run.draws import DrawOrder

    n = 30
    source = str(census_dir / "nist-acs-2019" / "tx2019.csv")
    cfg = load_config(None, ["run.seed=4", f"census.sources=[{source}]", f"personas.n={n}",
                             "personas.on_inconsistent=drop"])
    draws = DrawOrder(cfg)
    census = draws.next(n)
    ids = census.column("persona_id").to_pylist()
    rejected = {pid for i, pid in enumerate(ids) if i % 4 == 0}

    class EveryFourth(ScriptedJsonEngine):
        """Rejects the persona at every fourth place of the draw order (ids are p<seed>-<place>)."""

        def _answer(self, req: ChatRequest) -> ChatResult:
            pid = req.id.split(":")[1]
            if int(pid.rsplit("-", 1)[1]) % 4 == 0:
                self.inconsistent.add(pid)
            return super()._answer(req)

    judge = EveryFourth("judge")
    table, stats = personas_with(census, None, judge, cfg.personas, cfg.run.seed,
                                 keep=n, more=draws.next)
    assert table.num_rows == stats.kept == n == stats.requested
    drawn = draws.table().column("persona_id").to_pylist()
    assert len(drawn) == stats.drawn > n
    # The census draw of `drawn` people (one draw, in order), minus the rejects, cut at n.
    survivors = [p for i, p in enumerate(drawn) if i % 4 != 0]
    assert table.column("persona_id").to_pylist() == survivors[:n]
    assert stats.rejected_by_judge == len(drawn[::4]) == stats.dropped
    assert stats.surplus == len(survivors) - n
    assert stats.kept + stats.dropped + stats.surplus == stats.drawn
    assert stats.first_round.personas == n and stats.first_round.rejected_by_judge == len(rejected)
    # Nobody is drawn twice, and no persona is chosen by its attributes: every drawn person
    # was either kept, rejected, or came after the n-th survivor.
    assert len(set(drawn)) == len(drawn)


def test_top_up_rounds_are_sized_from_the_survival_seen(census_dir: Path) -> None:
    from persona_gen.personas.build import next_draw, planned_draws

    assert next_draw(0, 0.5) == 0
    assert next_draw(1, 1.0) == 1
    # 135 missing at 91.5% survival: the expected 148 plus about two standard deviations.
    assert 150 <= next_draw(135, 0.915) <= 160
    # A judge rejecting nearly everyone cannot ask for the whole census in one round.
    assert next_draw(10, 0.0) == 200
    # The paper's figures: 1,586 kept at 8.5% rejected, in up to three rounds.
    assert planned_draws(1586, 0.085, 3) == 1586 + next_draw(1586 - 1586 * 0.915, 0.915)
