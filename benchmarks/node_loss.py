"""The wall-time cost of losing one engine node during a run (docs/cluster/spot.md).

    .venv/bin/python benchmarks/node_loss.py [--skip-measured] [--reload-s 120]

Tables on stdout (logs go to stderr):
1. measured here: a Ray cluster of raylets on this machine (a head with no GPU, two worker
   nodes declaring one GPU each), the same small job submitted twice with `ray job submit`:
   once undisturbed, once with one worker node SIGKILLed as the first pair is committed and
   a replacement node started at once (as a spot replacement joins). Engines are `sim`
   hosts (echo's text; placed on the GPU nodes, each decode step 120 ms), so the run takes
   tens of seconds and the loss lands mid-stream. Cost = the driver's run time (run_start
   to run_complete) with the loss minus without; submit-to-end wall times are shown too
   (they add the upload and the job's start, which vary with the machine's load). The
   manifest's loss record gives the engines lost and blocks redone.
2. derived for the paper config (jobs/configs/paper_8xh100.yaml: 8 engines of Llama 3.1 8B
   on one 8 x H100 node, batch_size 1,024, 4 blocks in flight): time lost = the work of the
   blocks in flight on the lost node, redone (each block redoes only its current step: the
   steps before are committed), from the `sim` engine's stream time for those requests on
   one engine, plus the engines' reload (`--reload-s`, an assumption: weights from the
   node's local cache, CUDA graphs), plus the wait for a replacement node, which depends on
   the cloud and is not counted here.

Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from persona_gen.engines.registry import get_spec  # noqa: E402
from persona_gen.engines.sim import draw_length, sim_settings, stream_seconds  # noqa: E402
from persona_gen.run.config import load_config  # noqa: E402

CENSUS = "data/census-excerpt/national2019.csv.gz"
STEP_MS = 120


def _job(cluster: object, folder: Path, run_id: str, kill: bool) -> tuple[float, dict]:
    from tests.pipeline_helpers import write_config, write_prompt_file

    prompts = write_prompt_file(folder / "prompts.jsonl", 10)
    cfg = write_config(
        folder / f"{run_id}.yaml", Path(CENSUS), prompts, str(folder / "out"),
        personas={"n": 4},
        plan={"train_pairs_per_persona": 3, "seen_test_pairs_per_persona": 1,
              "heldout_test_pairs_per_persona": 1},
        stages={"defaults": {"model": "sim-spot"}},
        pipeline={"batch_size": 4, "actors": 2, "num_gpus_per_actor": 1,
                  "num_cpus_per_actor": 0.25, "num_cpus_per_worker": 0.25,
                  "blocks_in_flight": 2, "capacity_wait_s": 300})
    c = cluster  # tests.ray_nodes.Cluster
    started = time.monotonic()
    res = c.ray("job", "submit", "--address", c.dashboard, "--submission-id", run_id,  # type: ignore[attr-defined]
                "--no-wait", "--working-dir", ".", "--", "python", "jobs/generate_feedback.py",
                "--config", str(cfg), "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    run = folder / "out" / run_id
    killed = not kill
    while True:
        status = c.ray("job", "status", "--address", c.dashboard, run_id).stdout  # type: ignore[attr-defined]
        if any(s in status.lower() for s in ("succeeded", "failed", "stopped")):
            break
        critiques = run / "feedback" / "critiques"  # the pairs phase's first stage
        if not killed and critiques.exists() and any(critiques.glob("*.parquet")):
            victim = c.workers[0]  # type: ignore[attr-defined]
            c.lose(victim)  # type: ignore[attr-defined]
            c.add_worker(f"spare_{int(time.time())}")  # type: ignore[attr-defined]
            killed = True
        time.sleep(0.5)
    wall = time.monotonic() - started
    assert "succeeded" in status.lower(), status
    manifest = json.loads((run / "manifest.json").read_text())
    # The driver's own time (run_start to run_complete), free of submission and upload noise.
    logs = c.ray("job", "logs", "--address", c.dashboard, run_id).stdout  # type: ignore[attr-defined]
    for line in logs.splitlines():
        if '"run_complete"' in line:
            manifest["_run_s"] = json.loads(line[line.find("{"):])["seconds"]
    return wall, manifest


def measured(console: Console) -> None:
    from tests.ray_nodes import start_cluster

    folder = Path(tempfile.mkdtemp(prefix="pg-nodeloss-"))
    models = folder / "models"
    models.mkdir()
    (models / "sim-spot.yaml").write_text(yaml.safe_dump({
        "name": "sim-spot", "engine": "sim", "max_model_len": 8192, "runs_on": ["cpu", "gpu"],
        "sim": {"model": "llama-3.1-8b-instruct", "gpu_class": "H100", "step_ms": STEP_MS,
                "median_len": 32, "sigma": 0.1, "max_len": 32, "time_scale": 1.0}}))
    cluster = start_cluster({"PERSONA_GEN_MODELS_DIR": str(models)})
    try:
        cluster.add_worker("spot_a")
        cluster.add_worker("spot_b")
        base, quiet = _job(cluster, folder, "undisturbed", kill=False)
        lost, manifest = _job(cluster, folder, "one-node-lost", kill=True)
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    loss = (manifest.get("node_losses") or [{}])[0]
    t = Table(title="\\[measured] one node lost mid-run: 2 sim engines on 2 worker raylets, "
                    "30 pairs x 3 stages, batch_size 4, replacement started at once")
    for col in ("run", "submit to end s", "driver run s", "engines lost", "blocks redone",
                "s to full capacity", "cost of the loss s (driver)"):
        t.add_column(col, justify="left" if col == "run" else "right")
    q, r = quiet.get("_run_s"), manifest.get("_run_s")
    t.add_row("undisturbed", f"{base:.1f}", f"{q}", "-", "-", "-", "-")
    t.add_row("one node lost", f"{lost:.1f}", f"{r}", str(loss.get("engines_lost", "?")),
              str(loss.get("blocks_redone", "?")),
              str(loss.get("waited_s") or "not back before the end"),
              f"{r - q:.1f}" if q is not None and r is not None else "?")
    console.print(t)


def derived(console: Console, reload_s: float) -> None:
    cfg = load_config(ROOT / "jobs/configs/paper_8xh100.yaml", [])
    p = cfg.pipeline
    spec = get_spec("sim")
    settings = sim_settings(spec)
    sim = spec.sim
    assert sim is not None
    t = Table(title=f"\\[derived] one node lost, paper config: {p.actors} engines of "
                    f"{settings.model} on one 8 x {settings.gpu_class} node, batch_size "
                    f"{p.batch_size}, {p.blocks_in_flight} blocks in flight (sim engine)")
    for col in ("stage in flight", "requests redone per engine", "redo s (all in flight)",
                "redo s (half done, mean)", "reload s (assumed)", "time lost s (mean)"):
        t.add_column(col, justify="left" if col.startswith("stage") else "right")
    # Prompt sizes as the cost plan assumes them: a 600-token persona block shared by the
    # block's rows, plus the stage's own part (the original's 512 tokens, and so on).
    for stage, own, cap in (("critique", 700, cfg.stages.critique.max_tokens),
                            ("revision", 1100, cfg.stages.revision.max_tokens),
                            ("verify", 1400, cfg.stages.verify.max_tokens)):
        n = p.batch_size * p.blocks_in_flight
        seqs = [(own, draw_length(sim, f"{stage}-{i}", cap or 512), i % 8, 600)
                for i in range(n)]
        redo = stream_seconds(seqs, sim, settings.max_num_seqs, settings.kv_cache_tokens_estimate)
        t.add_row(stage, f"{n:,}", f"{redo:.0f}", f"{redo / 2:.0f}", f"{reload_s:.0f}",
                  f"{redo / 2 + reload_s:.0f}")
    console.print(t)
    console.print("Engines of the lost node come back together (on the replacement), so the "
                  "redo runs on all of them at once: the run loses one engine's redo time "
                  "plus the reload, plus the cloud's time to bring the replacement node.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-measured", action="store_true")
    ap.add_argument("--reload-s", type=float, default=120.0,
                    help="engine reload time assumed for the derived table (8B from the "
                         "node's local cache, CUDA graphs)")
    args = ap.parse_args()
    console = Console()
    if not args.skip_measured:
        measured(console)
    derived(console, args.reload_s)


if __name__ == "__main__":
    main()
