"""Spot-safe runs on a Ray cluster of several raylets on this machine (`make test-spot`).

A head with no GPU (the on-demand node) and GPU worker nodes (spot): engines are `sim`
hosts taking one GPU each (Ray schedules by the GPUs `ray start --num-gpus` declares; none
exist here), so they sit on the worker nodes only, as on a real cluster. Each scenario is
one `ray job submit` of jobs/generate_feedback.py; a worker node is lost by SIGKILL of its
whole process group while pairs stream, or drained first with Ray's own `ray drain-node`.

The scenarios share one cluster and run in order (each leaves the nodes the next uses):
1. two engine nodes, one lost: the same submission finishes on the other, complete;
2. drain: a node drained with a deadline, then killed at it; no block lost or doubled;
3. the only engine node lost, a replacement joins within capacity_wait_s: complete;
4. the only engine node lost, none joins: exit 5 after about capacity_wait_s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.pipeline_helpers import read_folder, write_config, write_prompt_file
from tests.ray_nodes import Cluster, start_cluster

pytestmark = pytest.mark.spot

CENSUS = "data/census-excerpt/national2019.csv.gz"
STEP_MS = 60
"""Simulated decode step: 32 tokens take about 2 s a call, 6 s a block of three stages."""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("spot-models")
    (folder / "sim-spot.yaml").write_text(yaml.safe_dump({
        "name": "sim-spot", "engine": "sim", "max_model_len": 8192, "runs_on": ["cpu", "gpu"],
        "sim": {"model": "llama-3.1-8b-instruct", "gpu_class": "H100", "step_ms": STEP_MS,
                "median_len": 32, "sigma": 0.1, "max_len": 32, "time_scale": 1.0}}))
    return folder


@pytest.fixture(scope="module")
def cluster(models_dir: Path) -> Iterator[Cluster]:
    c = start_cluster({"PERSONA_GEN_MODELS_DIR": str(models_dir)})
    try:
        yield c
    finally:
        c.stop()


def _config(tmp_path: Path, engines: int, personas: int = 4, **pipeline: object) -> Path:
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 8)
    return write_config(
        tmp_path / "job.yaml", Path(CENSUS), prompts, str(tmp_path / "out"),
        personas={"n": personas},
        plan={"train_pairs_per_persona": 3, "seen_test_pairs_per_persona": 1,
              "heldout_test_pairs_per_persona": 1},
        stages={"defaults": {"model": "sim-spot"}},
        pipeline={"batch_size": 4, "actors": engines, "num_gpus_per_actor": 1,
                  "num_cpus_per_actor": 0.25, "num_cpus_per_worker": 0.25,
                  "blocks_in_flight": 2, **pipeline})


def _submit(cluster: Cluster, sid: str, cfg: Path, run_id: str) -> None:
    res = cluster.ray("job", "submit", "--address", cluster.dashboard, "--submission-id", sid,
                      "--no-wait", "--working-dir", ".", "--", "python",
                      "jobs/generate_feedback.py", "--config", str(cfg), "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr


def _job_status(cluster: Cluster, sid: str) -> str:
    """SUCCEEDED, FAILED, STOPPED or RUNNING (`ray job status` says "Job 'x' succeeded")."""
    res = cluster.ray("job", "status", "--address", cluster.dashboard, sid)
    text = (res.stdout + res.stderr).lower()
    for word, status in (("succeeded", "SUCCEEDED"), ("failed", "FAILED"),
                         ("stopped", "STOPPED")):
        if f"' {word}" in text or f"' was {word}" in text:
            return status
    return "RUNNING"


def _wait_job(cluster: Cluster, sid: str, timeout_s: float = 300) -> tuple[str, str]:
    deadline = time.monotonic() + timeout_s
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        status = _job_status(cluster, sid)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(2)
    logs = cluster.ray("job", "logs", "--address", cluster.dashboard, sid).stdout
    return status, logs


def _wait_pairs(run: Path, cluster: Cluster, sid: str, timeout_s: float = 240) -> None:
    """Until the pairs phase has committed its first block (pairs are streaming)."""
    def streaming() -> bool:
        if _job_status(cluster, sid) in ("SUCCEEDED", "FAILED", "STOPPED"):
            raise AssertionError(f"the job ended before pairs streamed: "
                                 f"{cluster.ray('job', 'logs', '--address', cluster.dashboard, sid).stdout[-3000:]}")
        # The pairs phase's first stage (feedback/originals belongs to the prompts phase).
        folder = run / "feedback" / "critiques"
        return folder.exists() and any(folder.glob("*.parquet"))

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if streaming():
            return
        time.sleep(0.5)
    raise AssertionError("no pair was committed in time")


def _events(logs: str, event: str) -> list[dict]:
    out = []
    for line in logs.splitlines():
        if f'"{event}"' in line and "{" in line:
            try:
                out.append(json.loads(line[line.find("{"):]))
            except json.JSONDecodeError:
                continue
    return out


def _exactly_once(run: Path) -> None:
    """Every planned pair once, a verdict per pair, no temporaries left."""
    plan, _ = read_folder(str(run), "plan")
    planned = sorted(plan.column("pair_id").to_pylist())
    pairs, _ = read_folder(str(run), "feedback/pairs")
    assert sorted(pairs.column("pair_id").to_pylist()) == planned
    verdicts, _ = read_folder(str(run), "feedback/verification")
    assert sorted(verdicts.column("pair_id").to_pylist()) == planned
    assert not [p for p in run.rglob("*") if p.name.startswith(".tmp-")]


def test_a_node_lost_mid_stream_the_same_submission_finishes(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    a = cluster.add_worker("spot_a")
    cluster.add_worker("spot_b")
    cfg = _config(tmp_path, engines=2, capacity_wait_s=120)
    run = tmp_path / "out" / "lost"
    _submit(cluster, "pg-lost", cfg, "lost")
    _wait_pairs(run, cluster, "pg-lost")
    cluster.lose(a)
    status, logs = _wait_job(cluster, "pg-lost")
    assert status == "SUCCEEDED", logs[-5000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["attempts"] == 1
    (loss,) = manifest["node_losses"]
    assert loss["engines_lost"] == 1 and loss["blocks_redone"] >= 0
    assert loss["node_loss_budget"] == 3 and loss["capacity_wait_s"] == 120
    assert _events(logs, "node_lost") and _events(logs, "waiting_for_capacity")
    _exactly_once(run)


def test_a_draining_node_hands_its_blocks_back(cluster: Cluster, tmp_path: Path) -> None:
    if not cluster.workers:  # spot_b, left by the first scenario (started here when alone)
        cluster.add_worker("spot_b")
    c = cluster.add_worker("spot_c")
    # Twice the pairs, one block in flight: the pairs phase outlasts the drain's deadline.
    cfg = _config(tmp_path, engines=2, personas=8, blocks_in_flight=1, drain_margin_s=4)
    run = tmp_path / "out" / "drained"
    _submit(cluster, "pg-drain", cfg, "drained")
    _wait_pairs(run, cluster, "pg-drain")
    node = cluster.node_id("spot_c")
    assert node is not None
    # Ray's own drain API, as an autoscaler sends it on a spot notice (the CLI calls
    # GcsClient.drain_node): a deadline, after which the cloud takes the node.
    deadline_s = 12
    res = cluster.ray("drain-node", "--address", cluster.gcs, "--node-id", node,
                      "--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message",
                      "spot notice (test)", "--deadline-remaining-seconds", str(deadline_s))
    assert res.returncode == 0, res.stdout + res.stderr
    time.sleep(deadline_s)
    assert _job_status(cluster, "pg-drain") == "RUNNING"  # the drain came mid-stream
    cluster.lose(c)
    status, logs = _wait_job(cluster, "pg-drain")
    assert status == "SUCCEEDED", logs[-5000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    resent = _events(logs, "engine_call_resent")
    assert all("draining" in e["reason"] or "lost" in e["reason"] for e in resent)
    _exactly_once(run)


def test_the_only_engine_node_lost_and_a_replacement_joins(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    # spot_b, left by the first scenarios (started here when this one runs alone)
    (b,) = cluster.workers or [cluster.add_worker("spot_b")]
    cfg = _config(tmp_path, engines=1, capacity_wait_s=150)
    run = tmp_path / "out" / "replaced"
    _submit(cluster, "pg-replaced", cfg, "replaced")
    _wait_pairs(run, cluster, "pg-replaced")
    cluster.lose(b)
    time.sleep(5)
    cluster.add_worker("spot_d")
    status, logs = _wait_job(cluster, "pg-replaced")
    assert status == "SUCCEEDED", logs[-5000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    (loss,) = manifest["node_losses"]
    assert loss["engines_lost"] == 1 and loss["waited_s"] is not None
    assert manifest["engines"]["alive"] == manifest["engines"]["planned"] == 1
    _exactly_once(run)


def test_the_only_engine_node_lost_and_none_joins(cluster: Cluster, tmp_path: Path) -> None:
    (d,) = cluster.workers or [cluster.add_worker("spot_d")]
    wait_s = 20
    cfg = _config(tmp_path, engines=1, capacity_wait_s=wait_s)
    run = tmp_path / "out" / "starved"
    _submit(cluster, "pg-starved", cfg, "starved")
    _wait_pairs(run, cluster, "pg-starved")
    cluster.lose(d)
    killed = time.monotonic()
    status, logs = _wait_job(cluster, "pg-starved")
    took = time.monotonic() - killed
    assert status == "FAILED", logs[-5000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["failure"]["exit_code"] == 5
    assert "pipeline.capacity_wait_s" in manifest["failure"]["reason"]
    # The wait counts from when Ray declares the node dead (10-30 s after the kill); then
    # the workers see the verdict within seconds and the driver exits.
    assert wait_s <= took <= wait_s + 90, took
    lines = [ln for ln in logs.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "capacity_wait_s" in lines[0], logs[-3000:]
