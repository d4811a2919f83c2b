"""The cluster path as users take it: `ray start --head`, then `ray job submit --working-dir .`
of jobs/generate_feedback.py with the echo model, the run read back from storage, and a
second submission with the same run id that rewrites nothing.

The head runs on free loopback ports with its own temp folder and its own token (Ray 2.60
turns token auth on for clusters it starts), so it touches neither ~/.ray nor another Ray on
this machine, and it is stopped through its own process id, never `ray stop`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline_helpers import read_folder, write_config, write_prompt_file
from tests.ray_nodes import Cluster, start_cluster

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The bundled excerpt, named relative to the repo: the job runs in Ray's copy of the working
# tree, so this also shows the census file travels with `--working-dir .`.
CENSUS = "data/census-excerpt/national2019.csv.gz"


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Cluster]:
    """A head alone (tests/ray_nodes.py): its own ports, temp folder and token. `ray start`
    records it under the head's temp folder (ray/ray_current_cluster), where a bare
    `ray.init()` with RAY_TMPDIR set to that folder looks for it."""
    cluster = start_cluster({})
    try:
        yield cluster
    finally:
        cluster.stop()


def _submit(head: Cluster, submission_id: str, *job_args: str) -> str:
    """`ray job submit` from the repo root; blocks until the job ends, returns its log."""
    res = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", head.dashboard,
         "--submission-id", submission_id, "--working-dir", ".", "--",
         "python", "jobs/generate_feedback.py", *job_args],
        cwd=ROOT, env=head.env, capture_output=True, text=True, timeout=240)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    status = subprocess.run(
        [str(BIN / "ray"), "job", "status", "--address", head.dashboard, submission_id],
        cwd=ROOT, env=head.env, capture_output=True, text=True, timeout=60)
    assert re.search(r"succeeded", status.stdout + status.stderr, re.I), (
        status.stdout + status.stderr + log[-4000:])
    return log


def test_submit_runs_the_job_and_a_resubmission_rewrites_nothing(ray_head: Cluster,
                                                                  tmp_path: Path) -> None:
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 10)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", Path(CENSUS), prompts, str(out),
                       personas={"n": 4},
                       plan={"train_pairs_per_persona": 3, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 1})
    args = ["--config", str(cfg), "--run-id", "submitted"]

    _submit(ray_head, "pg-first", *args)
    run = out / "submitted"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete", manifest.get("status")
    assert manifest["config"]["census"]["sources"] == [CENSUS]
    plan, _ = read_folder(str(run), "plan")
    pairs, _ = read_folder(str(run), "feedback/pairs")
    assert plan.num_rows > 0
    assert sorted(pairs.column("pair_id").to_pylist()) == sorted(plan.column("pair_id").to_pylist())
    verification, _ = read_folder(str(run), "feedback/verification")
    assert verification.num_rows == plan.num_rows

    files = sorted((run / "feedback").rglob("*.parquet"))
    assert files
    before = {p: p.stat().st_mtime_ns for p in files}

    _submit(ray_head, "pg-again", *args)
    after = {p: p.stat().st_mtime_ns for p in sorted((run / "feedback").rglob("*.parquet"))}
    assert after == before, "a resubmission with the same run id rewrote committed blocks"
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"



def _ray_ready(log: str) -> dict:
    for line in log.splitlines():
        if '"ray_ready"' in line:
            return json.loads(line[line.find("{"):])
    raise AssertionError(f"no ray_ready line in the log:\n{log[-3000:]}")


def test_run_beside_a_ray_start_cluster_starts_its_own_and_joins_it_when_told(
        ray_head: Cluster, tmp_path: Path) -> None:
    """A `ray start` cluster on the machine (recorded in Ray's temp folder) is not joined by
    accident: without an address the run starts a local instance; with RAY_ADDRESS it joins."""
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 8)
    cfg = write_config(tmp_path / "job.yaml", ROOT / CENSUS, prompts, str(tmp_path / "out"),
                       personas={"n": 2},
                       plan={"train_pairs_per_persona": 2, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 1})
    # `ray start` records the address once the head is up, a moment after the dashboard.
    address_file = Path(ray_head.head.temp) / "ray" / "ray_current_cluster"
    deadline = time.monotonic() + 60
    while not address_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    recorded = address_file.read_text().strip()
    assert recorded.rsplit(":", 1)[1] == ray_head.gcs.rsplit(":", 1)[1]
    env = {**ray_head.env, "RAY_TMPDIR": ray_head.head.temp}
    exe = [sys.executable, "-m", "persona_gen.cli.main", "run", "--config", str(cfg),
           "--no-progress", "--run-id"]

    alone = subprocess.run([*exe, "alone"], env=env, capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert _ray_ready(alone.stderr)["address"] == "local"

    joined = subprocess.run([*exe, "joined"], env={**env, "RAY_ADDRESS": recorded},
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert _ray_ready(joined.stderr)["address"] == recorded
