"""cluster/slurm/persona-gen.sbatch on a real one-node Slurm cluster (tests/slurm_cluster.py):
sbatch the echo job, scancel it while pair blocks stream out, sbatch the same command again;
the second job resumes and every planned pair is there exactly once.

Needs root and Debian's slurm-wlm and munge: `make test-slurm` installs them and runs this
(marker `slurm`); elsewhere it is skipped with the reason. It prints the job ids, the pair
blocks at the cancel and the pairs at the end (run with -s to see them).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_gen.storage.local_server import free_ports
from tests.pipeline_helpers import read_folder, write_config, write_prompt_file
from tests.slurm_cluster import LocalSlurm, missing

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cluster" / "slurm" / "persona-gen.sbatch"
EXCERPT = ROOT / "data" / "census-excerpt" / "national2019.csv.gz"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    why = missing()
    if why:
        pytest.skip(f"Slurm cluster not available: {why}")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), cpus=os.cpu_count() or 2)
    try:
        cluster.start()
    except RuntimeError as exc:
        pytest.skip(f"Slurm cluster did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _pair_blocks(run: Path) -> int:
    folder = run / "feedback" / "pairs"
    return len(list(folder.glob("*.parquet"))) if folder.exists() else 0


def _ray_processes(tmp: str) -> list[int]:
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if tmp in " ".join(p.info["cmdline"] or []):
                found.append(p.info["pid"])
        except psutil.Error:
            continue
    return found


def test_sbatch_echo_run_scancel_and_resubmit_resumes_exactly_once(slurm: LocalSlurm,
                                                                   tmp_path: Path) -> None:
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 80)
    runs = tmp_path / "shared" / "runs"  # the "shared filesystem": every node is this one
    cfg = write_config(tmp_path / "job.yaml", EXCERPT, prompts, str(runs),
                       personas={"n": 60},
                       plan={"train_pairs_per_persona": 3, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 1},
                       pipeline={"batch_size": 8})
    run = runs / "slurm-echo"
    port, dashboard, client = free_ports(3)
    ray_tmp = Path(f"/tmp/pg-slurm-{os.getpid()}")  # short: Ray's socket paths have a limit
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "PERSONA_GEN_RAY_PORT": str(port), "PERSONA_GEN_RAY_DASHBOARD_PORT": str(dashboard),
           "PERSONA_GEN_RAY_CLIENT_PORT": str(client), "PERSONA_GEN_RAY_TMP": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    # This machine has one node and no GPUs: the script's #SBATCH lines are overridden on
    # the command line, as a site would for a smaller allocation.
    submit = ["sbatch", "--parsable", "--nodes=1", f"--cpus-per-task={slurm.cpus}",
              "--gpus-per-task=0", "--time=20", f"--output={tmp_path}/slurm-%j.log",
              str(SCRIPT), "--config", str(cfg), "--run-id", "slurm-echo", "--no-progress"]

    def log_of(job: str, tail: int = 4000) -> str:
        f = tmp_path / f"slurm-{job}.log"
        return f.read_text(errors="replace")[-tail:] if f.exists() else "(no log)"

    first = slurm.run(*submit, env=env).stdout.strip().split(";")[0]
    deadline = time.monotonic() + 400
    while _pair_blocks(run) < 3:
        state = slurm.job_state(first)
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {first}: {state}\n" \
            f"{log_of(first)}\n{slurm.log_tail()}"
        assert time.monotonic() < deadline, f"no pair blocks from job {first}:\n{log_of(first)}"
        time.sleep(0.5)
    slurm.run("scancel", first)
    while slurm.job_state(first) not in ("CANCELLED", "COMPLETED", "FAILED", ""):
        assert time.monotonic() < deadline + 120, slurm.job_state(first)
        time.sleep(0.5)
    time.sleep(2)  # the step's processes are gone once the state says so; let files settle
    at_cancel = _pair_blocks(run)

    second = slurm.run(*submit, env=env).stdout.strip().split(";")[0]
    deadline = time.monotonic() + 600
    while (state := slurm.job_state(second)) not in ("COMPLETED", "FAILED", "CANCELLED",
                                                     "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
        assert time.monotonic() < deadline, f"job {second} still {state}:\n{log_of(second)}"
        time.sleep(1)
    assert state == "COMPLETED" and slurm.job_exit(second) == "0:0", \
        f"job {second}: {state} {slurm.job_exit(second)}\n{log_of(second)}"

    plan, _ = read_folder(str(run), "plan")
    pairs, _ = read_folder(str(run), "feedback/pairs")
    verdicts, _ = read_folder(str(run), "feedback/verification")
    planned = plan.column("pair_id").to_pylist()
    got = pairs.column("pair_id").to_pylist()
    total = _pair_blocks(run)
    print(f"\nslurm: job {first} cancelled with {at_cancel}/{total} pair blocks committed; "
          f"job {second} resumed and completed; {len(got)} pairs for {len(planned)} planned, "
          f"{len(set(got))} distinct")
    assert 0 < at_cancel < total, "the cancel did not land mid-pairs"
    assert len(got) == len(set(got)), "a pair was written twice"
    assert sorted(got) == sorted(planned) and len(planned) == 300
    assert sorted(verdicts.column("pair_id").to_pylist()) == sorted(planned)
    assert not list(run.rglob(".tmp-*")), "temporary files left behind"
    assert "Ray is up on 1 node(s)" in log_of(second, tail=0)
    assert "persona-gen run exited with 0" in log_of(second, tail=0)
    # Slurm ended the Ray steps with the jobs: nothing of either cluster is left running.
    deadline = time.monotonic() + 30
    while _ray_processes(str(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _ray_processes(str(ray_tmp)), "Ray processes outlived the Slurm jobs"
