"""The run's quality figures (truncation, consistency, classifier, verification) from storage."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from persona_gen.cli.main import app
from persona_gen.run import quality
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig, load_config
from persona_gen.run.execute import execute
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef
from tests.pipeline_helpers import read_folder, write_config, write_prompt_file

runner = CliRunner()


def test_wilson_interval_brackets_the_share():
    lo, hi = quality.wilson(96, 100)
    assert lo < 0.96 < hi and hi - lo < 0.1
    assert quality.wilson(0, 0) == (0.0, 1.0)
    assert quality.wilson(10, 10)[1] == 1.0


def test_cut_rows_are_counted_per_stage_from_the_committed_blocks(tmp_path):
    run = RunRef.at(str(tmp_path), "r")
    critique = R.stage("critique")
    objects.write_table_atomic(run.child(critique.writes, "a.parquet"), pa.table({
        "critique_finish_reason": ["stop", "length", "length", None],
        "critique_retried": [True, True, False, False]}))
    objects.write_table_atomic(run.child(critique.writes, "b.parquet"), pa.table({
        "critique_finish_reason": ["length"], "critique_retried": [True]}))
    # A block from before finish reasons were stored counts its rows and no cuts.
    objects.write_table_atomic(run.child(critique.writes, "c.parquet"), pa.table({"x": [1, 2]}))
    counts = quality.truncation(run, [critique])
    assert counts == {"critique": {"rows": 7, "retried": 3, "cut": 3}}
    text = quality.lines({"truncation": counts})
    assert text == ["cut at the token limit (retried / still cut, of rows): critique 3/3 of 7"]


def _prompt_stats(run: RunRef, rows: int, steps: list[tuple[str, int, int]]) -> None:
    objects.write_json_atomic(run.child(R.PROMPT_STATS), {
        "classifier": "m", "rows": rows,
        "steps": [{"name": n, "seen": seen, "kept": kept} for n, seen, kept in steps]})


def test_the_kept_share_is_after_every_filter_as_the_papers_is(tmp_path):
    """The paper's 3,868 of 8,011 is the share left after all its filters; ours is the same
    kind of figure (the product of every filter's kept share; `limit` is a subset, not a
    filter), and the warning fires on it, not on the classifier's share of its candidates."""
    run = RunRef.at(str(tmp_path), "r")
    # The classifier keeps 97% of its candidates, but the rule filters already halved the
    # source: 50% survive in all, near the paper's 48.3%: no warning.
    _prompt_stats(run, 200, [("empty", 200, 200), ("question_mark", 200, 120),
                             ("min_words", 120, 100), ("controversy", 100, 97)])
    k = quality.classifier(run)
    assert (k["kept"], k["candidates"], k["classifier_share"]) == (97, 100, 0.97)
    assert k["share"] == 0.485 and k["paper_share"] == 0.4828 and "note" not in k
    # A seeded `limit` subset changes the counts the classifier sees, not the share.
    _prompt_stats(run, 200, [("question_mark", 200, 120), ("min_words", 120, 100),
                             ("limit", 100, 10), ("controversy", 10, 9)])
    assert quality.classifier(run)["share"] == 0.45
    # The classifier keeps 45% of its candidates (close to the paper's 48% if compared
    # wrongly), but only 9% of the source survives: warned.
    _prompt_stats(run, 1000, [("question_mark", 1000, 300), ("min_words", 300, 200),
                              ("controversy", 200, 90)])
    k = quality.classifier(run)
    assert k["classifier_share"] == 0.45 and k["share"] == 0.09
    assert "far from the paper's 48%" in k["note"]
    line = next(ln for ln in quality.lines({"classifier": k}) if ln.startswith("prompts kept"))
    assert line.startswith("prompts kept after every filter: 9.0% of the source")
    assert "paper: 48.3% after every filter" in line


@pytest.fixture(scope="module")
def echo_run(tmp_path_factory, census_dir, ray_local):
    tmp = tmp_path_factory.mktemp("quality")
    prompts = write_prompt_file(tmp / "prompts.jsonl", 12)
    cfg_path = write_config(
        tmp / "job.yaml", census_dir / "nist-acs-2019" / "national2019.csv", prompts,
        str(tmp / "out"), personas={"n": 6, "on_inconsistent": "drop"},
        stages={"consistency": {"enabled": True}, "controversy": {"enabled": True},
                "critique": {"max_tokens": 24}, "revision": {"max_tokens": 16}},
        plan={"train_pairs_per_persona": 2, "seen_test_pairs_per_persona": 1,
              "heldout_test_pairs_per_persona": 1})
    cfg = load_config(cfg_path)
    execute(cfg, RunRef.at(cfg.run.output, "q1"), progress=False)
    return tmp, cfg


@pytest.mark.ray
def test_every_model_stage_stores_its_finish_reason_and_the_manifest_its_figures(echo_run):
    tmp, cfg = echo_run
    run = str(tmp / "out" / "q1")
    pairs, _ = read_folder(run, "feedback/pairs")
    for col in ("original_finish_reason", "critique_finish_reason", "revision_finish_reason",
                "critique_retried", "revision_retried"):
        assert col in pairs.column_names
    assert set(pairs.column("revision_finish_reason").to_pylist()) == {"stop"}
    for s in R.recipe(cfg):
        table, _ = read_folder(run, s.writes)
        assert f"{s.name}_finish_reason" in table.column_names, s.name
    m = json.loads((tmp / "out" / "q1" / "manifest.json").read_text())
    q = m["counts"]["quality"]
    assert set(q["truncation"]) == set(R.recipe(cfg).names)
    assert q["truncation"]["revision"] == {"rows": pairs.num_rows, "retried": 0, "cut": 0}
    assert q["verification"]["judged"] == pairs.num_rows and q["verification"]["paper_share"] == 0.96
    lo, hi = q["verification"]["ci95"]
    assert lo <= q["verification"]["share"] <= hi
    c = q["consistency"]
    assert c["on_inconsistent"] == "drop" and c["personas"] == 6 and c["paper_rate"] == 0.085
    assert c["rate"] == round((c["rejected_by_rule"] + c["rejected_by_judge"]) / 6, 4)
    assert q["classifier"]["candidates"] == 12 and q["classifier"]["paper_share"] == 0.4828
    # personas.n kept exactly under drop (the echo judge rejects about half), with the draws.
    p = m["counts"]["personas"]
    assert p["kept"] == p["requested"] == 6 and p["rejected_by_judge"] > 0
    assert p["drawn"] == p["kept"] + p["dropped"] + p["surplus"]
    assert c["kept"] == 6 and c["drawn"] == p["drawn"]
    # The kept personas' census fidelity, judged against sampling noise.
    f = q["fidelity"]
    assert f["n"] == 6 and f["threshold"] is None and f["attributes"]
    for a in f["attributes"]:
        assert a["flagged"] == (a["tvd"] > a["noise_p95"])
    # The limits a stage ran with are the configured ones, its retry twice that.
    assert (R.stage("critique").max_tokens(cfg), R.stage("critique").retry_max_tokens(cfg)) \
        == (24, 48)
    assert R.stage("revision").retry_max_tokens(cfg) == 32


@pytest.mark.ray
def test_status_prints_the_quality_summary(echo_run):
    tmp, _ = echo_run
    res = runner.invoke(app, ["status", "--output", str(tmp / "out"), "--run-id", "q1"])
    assert res.exit_code == 0, res.output
    assert "cut at the token limit" in res.output
    assert "consistency, first round:" in res.output and "paper: 8.5% dropped" in res.output
    assert "personas: kept 6 of 6 asked for, from " in res.output
    assert "census fidelity of the 6 kept personas" in res.output
    assert "attribute" in res.output and "expect" in res.output and "p95" in res.output
    assert "prompts kept after every filter" in res.output and "paper: 48.3%" in res.output
    assert "verification: judge preferred the revision in" in res.output
    assert "paper: 96.0%" in res.output


def test_retry_zero_turns_the_retry_off():
    cfg = RunConfig.model_validate({"stages": {
        "defaults": {"max_tokens": 40}, "original": {"retry_max_tokens": 0},
        "enrich": {"max_tokens": 100}}})
    assert (R.stage("original").max_tokens(cfg), R.stage("critique").max_tokens(cfg)) == (40, 40)
    assert R.stage("original").retry_max_tokens(cfg) is None
    assert R.stage("critique").retry_max_tokens(cfg) == 80
    assert R.stage("enrich").retry_max_tokens(cfg) == 200
    # The stored config validates again unchanged (status reads it back).
    again = RunConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg
