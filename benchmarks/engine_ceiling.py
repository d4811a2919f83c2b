"""The engine's ceiling against the whole pipeline, with the bundled model on vLLM CPU.

    .venv/bin/python benchmarks/engine_ceiling.py [--pairs 128] [--max-tokens 96] [--block 32]

The same critique requests (temperature 0.8, so output lengths vary) go (a) through one
`generate` call on all of them, which is what a user would do without this project (one
`LLM.generate`, or `vllm run-batch`): the ceiling; and (b) through the full pipeline: Ray
Data, the async engine host with `pipeline.blocks_in_flight` blocks in its batch, a commit
per block. Prints output tokens/s of each and the ratio pipeline/ceiling. Not a test:
figures depend on the machine (logs go to stderr).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from rich.console import Console
from rich.table import Table

from persona_gen import log
from persona_gen.config.run import RunConfig
from persona_gen.feedback.stages import CritiqueStage, sampling
from persona_gen.pipeline.chain import Chain, LookupCache, Step
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.run import recipe as R
from persona_gen.run.synthetic import write_synthetic_inputs
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

MODEL = "smollm2-135m-instruct"
# vLLM logs to stdout by default; stdout carries the table here.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def measure(n_pairs: int, max_tokens: int, block: int, in_flight: int) -> dict:
    from persona_gen.engines.factory import create_engine

    cfg = RunConfig.model_validate({
        "feedback": {"model": MODEL, "max_tokens": max_tokens, "temperature": 0.8},
        "pipeline": {"batch_size": block, "actors": 1, "num_cpus_per_actor": 1,
                     "blocks_in_flight": in_flight, "local_num_cpus": 2},
    })
    stage = CritiqueStage(sampling(cfg))
    critique = R.stage("critique")
    chain = Chain("critique-only", R.PLAN, (Step(stage, MODEL, critique.writes, drop=critique.drop),),
                  R.chain(cfg, "pairs").lookups)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunRef.at(tmp, "ceiling")
        plan = cfg.plan.model_copy(update={"train_pairs_per_persona": 6,
                                           "seen_test_pairs_per_persona": 0,
                                           "heldout_test_pairs_per_persona": 2})
        write_synthetic_inputs(run, max(1, n_pairs // 8), 16, 0, plan, block, persona_words=40)
        cache = LookupCache(run)
        blocks = [objects.read_table(run.child(R.PLAN, p.rsplit("/", 1)[-1]))
                  for p in sorted(objects.list_files(run.child(R.PLAN), ".parquet"))]
        requests = [r for b in blocks for r in stage.requests(cache.join(b, chain.lookups))]
        # (a) the ceiling: every request in one generate call.
        engine = create_engine(MODEL)
        t0 = time.perf_counter()
        ceiling_tokens = sum(r.output_tokens for r in engine.generate(requests))
        ceiling_s = time.perf_counter() - t0
        engine.close()
        del engine
        # (b) the pipeline, engine start excluded (first block start to last block commit).
        with ray_session(cfg.pipeline):
            results = run_chains([chain], run, cfg.pipeline)
        steps = [s for r in results for s in r.steps if not s.resumed]
        pipe_s = max(s.finished_at for s in steps) - min(s.started_at for s in steps)
        pipe_tokens = sum(s.output_tokens for s in steps)
    return {"requests": len(requests), "ceiling_tok_s": ceiling_tokens / ceiling_s,
            "pipeline_tok_s": pipe_tokens / pipe_s,
            "ratio": (pipe_tokens / pipe_s) / (ceiling_tokens / ceiling_s),
            "ceiling_tokens": ceiling_tokens, "pipeline_tokens": pipe_tokens}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--blocks-in-flight", type=int, default=4)
    args = ap.parse_args()
    log.configure()  # logs to stderr: stdout carries the tables
    m = measure(args.pairs, args.max_tokens, args.block, args.blocks_in_flight)
    t = Table(title=f"bundled model (SmolLM2-135M, vLLM CPU), critiques at temperature 0.8, "
                    f"max_tokens {args.max_tokens}, batch_size {args.block}, "
                    f"{args.blocks_in_flight} blocks in flight")
    for c in ("requests", "ceiling tok/s (one generate)", "pipeline tok/s",
              "pipeline/ceiling (target >= 0.95)", "output tokens (ceiling / pipeline)"):
        t.add_column(c, justify="right")
    t.add_row(str(m["requests"]), f"{m['ceiling_tok_s']:.1f}", f"{m['pipeline_tok_s']:.1f}",
              f"{m['ratio']:.2f}", f"{m['ceiling_tokens']:,} / {m['pipeline_tokens']:,}")
    Console(width=160).print(t)
