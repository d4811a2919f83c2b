"""Paper-scale scheduling rehearsal with the `sim` engine (a continuous-batching GPU server in
time only: an 8B model on one H100 by default, persona_gen/models/sim.yaml), with the engine
settings the real engine resolves (max_num_seqs, KV-cache capacity) and the hosts' bounded
admission.

    .venv/bin/python benchmarks/sim_scale.py [--time-scale 0.05] [--skip-paper] [--skip-sweep]

Tables on stdout (logs go to stderr):
0. the engine settings simulated (the sim's `engine_settings` line).
1. blocks in flight: the same pairs through one sim engine with 1 block in flight (each
   block's batch drains before the next arrives) and with 4, at batch_size 1024 (the paper
   config) and 256 (the default): simulated busy time against the ideal (every request of
   the engine in one continuous stream, under the same settings).
2. paper scale: 317,200 pairs x 3 stages through 8 sim engines at batch_size 1024 with the
   default blocks in flight, on inputs sized as `cost` assumes (a 600-token persona, a
   512-token original): busy time vs ideal, wall time, the peak RSS of the driver and the
   local Ray together, and the simulated output tok/s per engine beside `cost`'s figure
   for the same settings and sequence sizes (they should agree within 10%).

Simulated time runs 1/time_scale times faster than the wall clock while the orchestration
runs at its real speed, so any gap it leaves is magnified by the same factor: a
pessimistic rehearsal. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_overhead import PeakMemory

from persona_gen import log
from persona_gen.cost.derive import rate_with_settings
from persona_gen.cost.tables import load_table
from persona_gen.engines.settings import EngineSettings
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from persona_gen.run.synthetic import write_synthetic_inputs
from persona_gen.storage.runref import RunRef


def sim_models(folder: Path, time_scale: float) -> None:
    """A `sim` model with this run's time scale, replacing the shipped one."""
    shipped = Path(__file__).resolve().parents[1] / "persona_gen" / "models" / "sim.yaml"
    spec = yaml.safe_load(shipped.read_text())
    spec["sim"]["time_scale"] = time_scale
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sim.yaml").write_text(yaml.safe_dump(spec))
    os.environ["PERSONA_GEN_MODELS_DIR"] = str(folder)


def rehearse(personas: int, prompts: int, block: int, engines: int, in_flight: int,
             persona_words: int = 120, original_words: int = 48) -> dict:
    cfg = RunConfig.model_validate({
        "stages": {"defaults": {"model": "sim", "max_tokens": 512}},
        "pipeline": {"batch_size": block, "actors": engines, "blocks_in_flight": in_flight,
                     "num_cpus_per_actor": 0.1, "num_cpus_per_worker": 0.1,
                     "local_num_cpus": 2},
    })
    with tempfile.TemporaryDirectory() as tmp:
        run = RunRef.at(tmp, "sim")
        planned = write_synthetic_inputs(run, personas, prompts, 0, cfg.plan, block,
                                         persona_words=persona_words,
                                         original_words=original_words)
        with PeakMemory() as mem, ray_session(cfg.pipeline), \
                EngineHosts(cfg.pipeline, run.run_id, log_json=True) as hosts:
            import ray

            hosts.get("sim")  # started before the clock: engine start is not the subject
            t0 = time.perf_counter()
            results = run_chains([R.chain(cfg, "pairs")], run, cfg.pipeline, hosts=hosts)
            wall = time.perf_counter() - t0
            stats = ray.get([h.stats.remote() for h in hosts.get("sim")])
            settings = hosts.settings["sim"]
    pairs = sum(s.rows for r in results for s in r.steps if s.stage == "revision")
    busy = sum(s["busy_s"] for s in stats)
    ideal = sum(s["ideal_s"] for s in stats)
    n = sum(s["sequences"] for s in stats)
    return {"planned": planned, "pairs": pairs, "wall_s": wall, "busy_s": busy,
            "ideal_s": ideal, "span_s": max(s["span_s"] for s in stats),
            "fraction": ideal / busy if busy else 0.0, "peak_gib": mem.peak / 2**30,
            "sequences": n, "settings": settings,
            "tok_s_per_engine": sum(s["tokens"] / s["busy_s"] for s in stats) / len(stats),
            "own_tokens": sum(s["mean_own_tokens"] * s["sequences"] for s in stats) / n,
            "context_tokens": sum(s["mean_context_tokens"] * s["sequences"] for s in stats) / n,
            "peak_running": max(s["peak_running"] for s in stats),
            "admission_peak": max(s["admission_peak"] for s in stats)}


def plan_cost_rate(settings: dict, own: float, context: float) -> tuple[float, int]:
    """`cost`'s output tok/s per engine (and running sequences) for the model and GPU the
    sim stands for, at the same resolved settings and sequence sizes."""
    table = load_table()
    resolved = EngineSettings.model_validate(
        {k: v for k, v in settings.items() if k != "admission_limit"})
    entry = table.entry(resolved.model, resolved.gpu_class, field="sim.model")
    out_s, _, running = rate_with_settings(table, entry, resolved, round(own), round(context))
    return out_s, running


def settings_table(settings: dict) -> Table:
    t = Table(title=f"engine settings simulated: {settings['model']} on {settings['gpu_class']}"
                    " (the sim's engine_settings line)")
    for c in ("max_num_seqs", "max_num_batched_tokens", "KV cache tokens (estimate)",
              "admission limit", "prefix caching", "tensor parallel", "dtype"):
        t.add_column(c, justify="right")
    t.add_row(f"{settings['max_num_seqs']:,}", f"{settings['max_num_batched_tokens']:,}",
              f"{settings['kv_cache_tokens_estimate']:,}", f"{settings['admission_limit']:,}",
              str(settings["enable_prefix_caching"]), str(settings["tensor_parallel_size"]),
              settings["dtype"])
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--time-scale", type=float, default=0.05,
                    help="wall seconds per simulated second at paper scale")
    ap.add_argument("--sweep-time-scale", type=float, default=0.02)
    ap.add_argument("--sweep-personas", type=int, default=80)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-paper", action="store_true")
    args = ap.parse_args()
    console = Console(width=160)
    log.configure()  # logs to stderr: stdout carries the tables
    models = Path(tempfile.mkdtemp(prefix="sim-models-"))
    shown = False
    if not args.skip_sweep:
        sim_models(models, args.sweep_time_scale)
        t = Table(title=f"sim, 1 engine, {args.sweep_personas} personas x 200 prompts: blocks in "
                        "flight vs one continuous stream")
        for c in ("batch_size", "blocks in flight", "pairs", "busy s (sim)", "ideal s (sim)",
                  "ideal/busy", "wall s"):
            t.add_column(c, justify="right")
        for block in (1024, 256):
            for in_flight in (1, 4):
                r = rehearse(args.sweep_personas, 3868, block, 1, in_flight)
                if not shown:
                    console.print(settings_table(r["settings"]))
                    shown = True
                t.add_row(str(block), str(in_flight), f"{r['pairs']:,}", f"{r['busy_s']:,.0f}",
                          f"{r['ideal_s']:,.0f}", f"{r['fraction']:.3f}", f"{r['wall_s']:.0f}")
        console.print(t)
    if not args.skip_paper:
        sim_models(models, args.time_scale)
        # Inputs sized as `cost` assumes them (persona 600, original 512 tokens).
        r = rehearse(1586, 3868, 1024, 8, 4, persona_words=600, original_words=512)
        if not shown:
            console.print(settings_table(r["settings"]))
        t = Table(title=f"sim at paper scale: 8 engines, batch_size 1024, 4 blocks in flight, "
                        f"time scale {args.time_scale}")
        for c in ("pairs", "sequences", "busy s (sim, sum)", "ideal s (sim, sum)",
                  "ideal/busy (target >= 0.95)", "span s (sim)", "wall s", "peak RSS GiB",
                  "peak running / admitted"):
            t.add_column(c, justify="right")
        t.add_row(f"{r['pairs']:,}", f"{r['sequences']:,}", f"{r['busy_s']:,.0f}",
                  f"{r['ideal_s']:,.0f}", f"{r['fraction']:.3f}", f"{r['span_s']:,.0f}",
                  f"{r['wall_s']:.0f}", f"{r['peak_gib']:.2f}",
                  f"{r['peak_running']:,} / {r['admission_peak']:,}")
        console.print(t)
        plan, running = plan_cost_rate(r["settings"], r["own_tokens"], r["context_tokens"])
        gap = r["tok_s_per_engine"] / plan - 1
        t = Table(title="output tok/s per engine: sim against the cost plan, same settings and "
                        "sequence sizes")
        for c in ("KV tokens per sequence (own)", "context read per sequence",
                  "cost-plan running seqs", "sim tok/s", "cost-plan tok/s", "sim/plan - 1",
                  "within 10%"):
            t.add_column(c, justify="right")
        t.add_row(f"{r['own_tokens']:,.0f}", f"{r['context_tokens']:,.0f}", f"{running:,}",
                  f"{r['tok_s_per_engine']:,.0f}", f"{plan:,.0f}", f"{gap:+.1%}",
                  "yes" if abs(gap) <= 0.10 else "NO")
        console.print(t)


if __name__ == "__main__":
    main()
