"""The whole job with the bundled model on vLLM CPU through a real local Ray, to a local
folder, with every feedback column filled. The same job's storage on S3, GCS and Azure is
tests/test_stores.py (make test-cloud): the store sits below the engines, so an echo run
killed and resumed there covers what a model run to a store would."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from persona_gen.run.config import load_config
from persona_gen.run.execute import DATASET_COLUMNS, execute
from persona_gen.storage.runref import RunRef
from tests.pipeline_helpers import read_folder, write_config, write_prompt_file

pytestmark = [pytest.mark.model, pytest.mark.ray]
MODEL = "smollm2-135m-instruct"


def _config(tmp_path, census_dir, output: str, **sections):
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 4)
    base = {
        # Three people, one resample each: the 135M judge rejects about half of them.
        "personas": {"n": 3},
        "plan": {"train_pairs_per_persona": 1, "seen_test_pairs_per_persona": 0,
                 "heldout_test_pairs_per_persona": 1},
        "prompts": {"heldout_fraction": 0.5},
        "stages": {"defaults": {"model": MODEL, "max_tokens": 32},
                   "verify": {"max_tokens": 48},
                   "enrich": {"max_tokens": 200, "field_max_chars": 60}},
        # The 135M model's JSON fails now and then; _check_dataset accounts for every row.
        "pipeline": {"num_cpus_per_actor": 1, "max_error_fraction": 1.0},
    }
    for key, value in sections.items():
        if key == "stages":
            for name, settings in value.items():
                base["stages"].setdefault(name, {}).update(settings)
        else:
            base.setdefault(key, {}).update(value)
    return load_config(write_config(tmp_path / "job.yaml",
                                    census_dir / "nist-acs-2019" / "national2019.csv",
                                    prompts, output, **base))


def _check_dataset(run: str) -> None:
    plan, _ = read_folder(run, "plan")
    pairs, _ = read_folder(run, "feedback/pairs")
    failed: set[str] = set()
    for stage in ("critique", "revision"):
        errors, _ = read_folder(run, f"errors/{stage}")
        failed |= set(errors.column("id").to_pylist()) if errors.num_rows else set()
    # Every planned pair is in the dataset or recorded as a generation error, never both.
    # (A verification error leaves the pair in the dataset, without a verdict.)
    done = set(pairs.column("pair_id").to_pylist())
    assert done | failed == set(plan.column("pair_id").to_pylist()) and not done & failed
    assert pairs.num_rows >= 1
    for col in DATASET_COLUMNS:
        assert pairs.column(col).null_count == 0, col
        if pairs.schema.field(col).type == "string":
            assert pc.min(pc.utf8_length(pairs.column(col))).as_py() > 0, col
    assert pc.all(pc.greater(pairs.column("revision_output_tokens"), 0)).as_py()
    verdicts, _ = read_folder(run, "feedback/verification")
    assert set(verdicts.column("preferred").to_pylist()) <= {"revision", "original"}


def test_model_run_to_a_local_folder(tmp_path, census_dir, ray_local):
    # No model judge here: the 135M judge calls about 9 in 10 of its own enriched personas
    # "Unrealistic" (which ones depends on the CPU's kernels), so with it on, a small run can
    # keep nobody. The judge's own run is the next test.
    cfg = _config(tmp_path, census_dir, str(tmp_path / "out"),
                  personas={"max_resamples": 1},
                  stages={"controversy": {"enabled": True}})
    summary = execute(cfg, RunRef.at(cfg.run.output, "local"), progress=False)
    _check_dataset(str(tmp_path / "out" / "local"))
    assert summary.stages["enrich"].done >= 1
    assert summary.stages["controversy"].done == 4
    # Every model stage of the real model reports its tokens.
    assert list(summary.stages) == ["enrich", "controversy", "original", "critique",
                                    "revision", "verify"]
    for name, rec in summary.stages.items():
        assert rec.output_tokens > 0 and rec.prompt_tokens > 0, name


def test_model_consistency_judge_in_the_job(tmp_path, census_dir, ray_local):
    """The persona phase with the model judge on: every judged slot is kept or dropped, and
    the judge's tokens reach the run's summary (whatever its verdicts were)."""
    cfg = _config(tmp_path, census_dir, str(tmp_path / "out"),
                  personas={"n": 2, "max_resamples": 0}, stages={"consistency": {"enabled": True}})
    summary = execute(cfg, RunRef.at(cfg.run.output, "judged"), until="personas",
                      progress=False)
    judge = summary.stages["consistency"]
    assert judge.prompt_tokens > 0 and judge.output_tokens > 0
    personas, _ = read_folder(str(tmp_path / "out" / "judged"),
                               "personas/personas.parquet")
    stats = json.loads((tmp_path / "out" / "judged" / "personas" / "stats.json").read_text())
    assert stats["kept"] == personas.num_rows and stats["kept"] + stats["dropped"] == 2
    assert stats["model_calls"]["consistency"] == stats["first_round"]["judged"] >= 1
    assert set(personas.column("judge_model").to_pylist()) <= {MODEL}
