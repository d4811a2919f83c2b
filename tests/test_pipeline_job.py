"""The whole job on a local Ray with the no-model engine: errors, status, resume rules."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from persona_gen.cli.main import app, main
from persona_gen.run.config import load_config
from persona_gen.run.execute import execute
from persona_gen.storage.runref import RunRef
from tests.pipeline_helpers import read_folder, write_config, write_prompt_file

pytestmark = pytest.mark.ray
runner = CliRunner()
POISON = "Should " + " ".join(["everyone"] * 2100) + " agree?"


@pytest.fixture(scope="module")
def poisoned_run(tmp_path_factory, census_dir, ray_local):
    tmp = tmp_path_factory.mktemp("poison")
    prompts = write_prompt_file(tmp / "prompts.jsonl", 12, extra=[POISON])
    cfg_path = write_config(tmp / "job.yaml", census_dir / "nist-acs-2019" / "national2019.csv",
                            prompts, str(tmp / "out"), personas={"n": 4},
                            plan={"train_pairs_per_persona": 4, "seen_test_pairs_per_persona": 1,
                                  "heldout_test_pairs_per_persona": 2},
                            # 1 poisoned prompt of 13 is 7.7%: allowed here, so the run
                            # completes (tests/test_operations.py fails one over the limit).
                            pipeline={"max_error_fraction": 0.1})
    cfg = load_config(cfg_path)
    summary = execute(cfg, RunRef.at(cfg.run.output, "p1"), progress=False)
    return tmp, cfg_path, summary


def test_poisoned_row_ends_in_errors_and_the_rest_completes(poisoned_run):
    tmp, _, summary = poisoned_run
    run = str(tmp / "out" / "p1")
    errors, _ = read_folder(run, "errors/original")
    assert errors.num_rows == 1
    assert "over the model's context" in errors.column("reason")[0].as_py()
    assert errors.column("stage")[0].as_py() == "original"
    prompts, _ = read_folder(run, "prompts/prompts.parquet")
    assert POISON not in prompts.column("text").to_pylist()
    plan, _ = read_folder(run, "plan")
    pairs, _ = read_folder(run, "feedback/pairs")
    assert sorted(pairs.column("pair_id").to_pylist()) == sorted(plan.column("pair_id").to_pylist())
    assert summary.stages["original"].errors == 1
    assert summary.stages["revision"].done == plan.num_rows > 0


def test_status_reads_progress_from_storage(poisoned_run):
    tmp, _, summary = poisoned_run
    res = runner.invoke(app, ["status", "--output", str(tmp / "out"), "--run-id", "p1"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.strip("│ ").startswith("revision"))
    done = summary.stages["revision"].done
    assert f"{done:,}" in line and "100.0" in line
    orig = next(ln for ln in res.output.splitlines() if ln.strip("│ ").startswith("original"))
    assert " 1 " in orig  # the poisoned prompt's error


def test_manifest_says_what_produced_the_dataset(poisoned_run):
    tmp, _, _ = poisoned_run
    m = json.loads((tmp / "out" / "p1" / "manifest.json").read_text())
    assert m["status"] == "complete" and m["run_id"] == "p1"
    assert m["config"]["personas"]["n"] == 4 and m["seed"] == 11
    assert "ray" in m["packages"] and m["code_version"]
    assert m["models"]["echo"]["engine"] == "echo"
    assert m["counts"]["plan"]["pairs"] == m["stages"]["critique"]["planned"]


def test_rerun_of_a_complete_run_generates_nothing(poisoned_run):
    tmp, cfg_path, _ = poisoned_run
    before = {p: p.stat().st_mtime_ns for p in (tmp / "out" / "p1" / "feedback").rglob("*.parquet")}
    cfg = load_config(cfg_path)
    summary = execute(cfg, RunRef.at(cfg.run.output, "p1"), progress=False)
    after = {p: p.stat().st_mtime_ns for p in (tmp / "out" / "p1" / "feedback").rglob("*.parquet")}
    assert before == after
    assert summary.stages["revision"].done > 0


def test_resume_with_a_different_config_is_refused(poisoned_run, capsys):
    _, cfg_path, _ = poisoned_run
    with pytest.raises(SystemExit) as ex:
        main(["run", "--config", str(cfg_path), "--run-id", "p1", "--set", "run.seed=12",
              "--no-progress"])
    assert ex.value.code == 65
    err = capsys.readouterr().err
    assert "different configuration (run.seed changed)" in err


def test_unknown_status_run_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as ex:
        main(["status", "--output", str(tmp_path), "--run-id", "nope"])
    assert ex.value.code == 65
    assert "no run 'nope' here" in capsys.readouterr().err


def test_until_plan_then_the_whole_run_equals_one_whole_run(tmp_path, census_dir, ray_local):
    """`run --until plan` writes what the whole run writes up to the plan; the whole run
    with the same id then carries on (the plan is not rebuilt) to the same dataset."""
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 10)
    cfg_path = write_config(tmp_path / "job.yaml",
                            census_dir / "nist-acs-2019" / "national2019.csv", prompts,
                            str(tmp_path / "out"), personas={"n": 3},
                            plan={"train_pairs_per_persona": 3, "seen_test_pairs_per_persona": 1,
                                  "heldout_test_pairs_per_persona": 1})
    args = ["run", "--config", str(cfg_path), "--no-progress"]
    res = runner.invoke(app, [*args, "--run-id", "staged", "--until", "plan"])
    assert res.exit_code == 0, res.output
    staged = tmp_path / "out" / "staged"
    assert not (staged / "feedback" / "pairs").exists()
    m = json.loads((staged / "manifest.json").read_text())
    assert m["status"] == "partial" and m["phases"] == ["personas", "prompts", "plan"]
    plan_files = {p: p.stat().st_mtime_ns for p in (staged / "plan").glob("*.parquet")}
    assert plan_files

    res = runner.invoke(app, [*args, "--run-id", "staged"])
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in (staged / "plan").glob("*.parquet")} == plan_files
    res = runner.invoke(app, [*args, "--run-id", "whole"])
    assert res.exit_code == 0, res.output

    def dataset(run_id: str) -> list[dict]:
        pairs, _ = read_folder(str(tmp_path / "out" / run_id), "feedback/pairs")
        return sorted(pairs.to_pylist(), key=lambda r: r["pair_id"])

    assert dataset("staged") == dataset("whole") and len(dataset("whole")) == 3 * 5
    m = json.loads((staged / "manifest.json").read_text())
    assert m["status"] == "complete" and m["phases"] == ["personas", "prompts", "plan", "pairs"]


def test_manifest_lists_exactly_the_stages_the_config_enables(poisoned_run):
    tmp, _, _ = poisoned_run
    m = json.loads((tmp / "out" / "p1" / "manifest.json").read_text())
    # No consistency judge, no classifier in this config: those stages are not there.
    assert set(m["stages"]) == {"enrich", "original", "critique", "revision", "verify"}
    assert all(m["stages"][s]["output_tokens"] > 0 for s in m["stages"])


def test_resume_with_a_changed_template_is_refused_unless_allowed(poisoned_run, capsys,
                                                                   tmp_path):
    """Kept last: it records a template change in the shared run's manifest."""
    from persona_gen.pipeline.template import shipped

    _, cfg_path, _ = poisoned_run
    manifest = cfg_path.parent / "out" / "p1" / "manifest.json"
    before = json.loads(manifest.read_text())["templates"]["critique"]
    assert before["sha256"] == shipped("critique").sha256
    args = ["run", "--config", str(cfg_path), "--run-id", "p1", "--no-progress"]
    # The same text from another file is the same template: it resumes.
    same = tmp_path / "same.jinja"
    same.write_text(shipped("critique").text)
    res = runner.invoke(app, [*args, "--set", f"stages.critique.template={same}"])
    assert res.exit_code == 0, res.output

    edited = tmp_path / "critique.jinja"
    edited.write_text(shipped("critique").text.replace("Be specific and brief.", "Be brief."))
    with pytest.raises(SystemExit) as ex:
        main([*args, "--set", f"stages.critique.template={edited}"])
    assert ex.value.code == 65
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "prompt template of stage critique" in err and "--allow-template-change" in err
    assert json.loads(manifest.read_text())["templates"]["critique"]["sha256"] == before["sha256"]

    res = runner.invoke(app, [*args, "--set", f"stages.critique.template={edited}",
                              "--allow-template-change"])
    assert res.exit_code == 0, res.output
    m = json.loads(manifest.read_text())
    assert m["templates"]["critique"]["text"] == edited.read_text()
    (change,) = m["template_changes"]
    assert change["stage"] == "critique" and change["from"] == before["sha256"]
