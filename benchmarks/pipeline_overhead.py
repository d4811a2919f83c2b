"""Pipeline overhead: paper-scale plan through Ray Data with the no-model engine, and the
pipeline/direct throughput ratio with the bundled model on vLLM CPU.

    .venv/bin/python benchmarks/pipeline_overhead.py [--pairs-only] [--model-pairs 64]

Prints two tables. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time

import psutil
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from persona_gen import log
from persona_gen.pipeline.chain import Chain, LookupCache, Step
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.pipeline.stage import TextStage
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from persona_gen.run.synthetic import write_synthetic_inputs
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

log.keep_stdout_for_results()  # vLLM logs to stdout by default; stdout carries the tables


class PeakMemory:
    """Peak summed RSS of this process and all its descendants (the local Ray cluster)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.5)

    def __enter__(self) -> PeakMemory:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def overhead(n_personas: int, n_prompts: int, block: int) -> dict:
    cfg = RunConfig.model_validate({
        "stages": {"defaults": {"model": "echo", "max_tokens": 64}},
        "pipeline": {"batch_size": block, "actors": 2, "num_cpus_per_actor": 0.5,
                     "local_num_cpus": 2},
    })
    with tempfile.TemporaryDirectory() as tmp:
        run = RunRef.at(tmp, "bench")
        t0 = time.perf_counter()
        planned = write_synthetic_inputs(run, n_personas, n_prompts, 0, cfg.plan, block)
        t_plan = time.perf_counter() - t0
        with PeakMemory() as mem, ray_session(cfg.pipeline):
            t1 = time.perf_counter()
            results = run_chains([R.chain(cfg, "pairs")], run, cfg.pipeline)
            t_run = time.perf_counter() - t1
        rows = sum(s.rows for r in results for s in r.steps if s.stage == "revision")
    return {"planned": planned, "pairs": rows, "plan_s": t_plan, "run_s": t_run,
            "rows_per_s": rows / t_run, "stage_rows_per_s": 3 * rows / t_run,
            "peak_gib": mem.peak / 2**30}


def critique_only(cfg: RunConfig, model: str, run: RunRef,
                  n_pairs: int) -> tuple[Chain, TextStage, list[pa.Table]]:
    """The critique stage alone as a chain, over synthetic plan blocks of about n_pairs
    pairs (8 per persona: 6 train, 2 held-out, 40-word personas, 16 prompts), and those
    blocks joined as the pipeline joins them: one setup for every pipeline-against-engine
    comparison (here and in engine_ceiling.py)."""
    critique = R.stage("critique")
    stage = critique.build(cfg)
    chain = Chain("critique-only", R.PLAN,
                  (Step(stage, model, critique.writes, drop=critique.drop),),
                  R.chain(cfg, "pairs").lookups)
    plan = cfg.plan.model_copy(update={"train_pairs_per_persona": 6,
                                       "seen_test_pairs_per_persona": 0,
                                       "heldout_test_pairs_per_persona": 2})
    write_synthetic_inputs(run, max(1, n_pairs // 8), 16, 0, plan, cfg.pipeline.batch_size,
                           persona_words=40)
    cache = LookupCache(run)
    files = sorted(p.rsplit("/", 1)[-1] for p in objects.list_files(run.child(R.PLAN), ".parquet"))
    blocks = [cache.join(objects.read_table(run.child(R.PLAN, f)), chain.lookups) for f in files]
    return chain, stage, blocks


def pipeline_tokens(chain: Chain, run: RunRef, cfg: RunConfig) -> tuple[int, float]:
    """Output tokens and seconds of the chain through the pipeline, engine start excluded
    (first block start to last block commit)."""
    with ray_session(cfg.pipeline):
        results = run_chains([chain], run, cfg.pipeline)
    steps = [s for r in results for s in r.steps if not s.resumed]
    seconds = max(s.finished_at for s in steps) - min(s.started_at for s in steps)
    return sum(s.output_tokens for s in steps), seconds


def model_ratio(n_pairs: int, max_tokens: int) -> dict:
    """Same critique requests: engine.generate directly vs through the pipeline."""
    from persona_gen.engines.factory import create_engine

    model = "smollm2-135m-instruct"
    cfg = RunConfig.model_validate({
        # No retry of cut answers: both sides do the same calls.
        "stages": {"critique": {"model": model, "max_tokens": max_tokens,
                                "retry_max_tokens": 0, "temperature": 0.0}},
        "pipeline": {"batch_size": n_pairs // 2, "actors": 1, "num_cpus_per_actor": 1,
                     "local_num_cpus": 2},
    })
    with tempfile.TemporaryDirectory() as tmp:
        run = RunRef.at(tmp, "ratio")
        chain, stage, blocks = critique_only(cfg, model, run, n_pairs)
        # Direct: the same blocks, joined the same way, straight into one engine.
        engine = create_engine(model)
        t0 = time.perf_counter()
        direct_tokens = 0
        for b in blocks:
            direct_tokens += sum(r.output_tokens for r in engine.generate(stage.requests(b)))
        direct_s = time.perf_counter() - t0
        engine.close()
        del engine
        pipe_tokens, pipe_s = pipeline_tokens(chain, run, cfg)
    return {"pairs": sum(b.num_rows for b in blocks), "direct_tok_s": direct_tokens / direct_s,
            "pipeline_tok_s": pipe_tokens / pipe_s,
            "ratio": (pipe_tokens / pipe_s) / (direct_tokens / direct_s)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--personas", type=int, default=1586)
    ap.add_argument("--prompts", type=int, default=3868)
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--pairs-only", action="store_true", help="skip the bundled-model ratio")
    ap.add_argument("--model-pairs", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    log.configure()  # logs to stderr: stdout carries the tables
    console = Console()
    r = overhead(args.personas, args.prompts, args.block)
    t = Table(title="pipeline overhead, echo engine (critique + revision + verify per pair)")
    for c in ("pairs planned", "pairs written", "plan build s", "pipeline s", "pairs/s",
              "stage rows/s", "peak RSS GiB"):
        t.add_column(c, justify="right")
    t.add_row(f"{r['planned']:,}", f"{r['pairs']:,}", f"{r['plan_s']:.1f}", f"{r['run_s']:.1f}",
              f"{r['rows_per_s']:,.0f}", f"{r['stage_rows_per_s']:,.0f}", f"{r['peak_gib']:.2f}")
    console.print(t)
    if not args.pairs_only:
        m = model_ratio(args.model_pairs, args.max_tokens)
        t = Table(title="bundled model (SmolLM2-135M, vLLM CPU): pipeline vs direct engine")
        for c in ("pairs", "direct tok/s", "pipeline tok/s", "ratio (target >= 0.9)"):
            t.add_column(c, justify="right")
        t.add_row(str(m["pairs"]), f"{m['direct_tok_s']:.1f}", f"{m['pipeline_tok_s']:.1f}",
                  f"{m['ratio']:.2f}")
        console.print(t)
