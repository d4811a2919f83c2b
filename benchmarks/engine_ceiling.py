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
import tempfile
import time

from pipeline_overhead import critique_only, pipeline_tokens
from rich.console import Console
from rich.table import Table

from persona_gen import log
from persona_gen.run.config import RunConfig
from persona_gen.storage.runref import RunRef

MODEL = "smollm2-135m-instruct"
log.keep_stdout_for_results()  # vLLM logs to stdout by default; stdout carries the table


def measure(n_pairs: int, max_tokens: int, block: int, in_flight: int) -> dict:
    from persona_gen.engines.factory import create_engine

    cfg = RunConfig.model_validate({
        # No retry of cut answers: both sides do the same calls.
        "stages": {"critique": {"model": MODEL, "max_tokens": max_tokens,
                                "retry_max_tokens": 0, "temperature": 0.8}},
        "pipeline": {"batch_size": block, "actors": 1, "num_cpus_per_actor": 1,
                     "blocks_in_flight": in_flight, "local_num_cpus": 2},
    })
    with tempfile.TemporaryDirectory() as tmp:
        run = RunRef.at(tmp, "ceiling")
        chain, stage, blocks = critique_only(cfg, MODEL, run, n_pairs)
        requests = [r for b in blocks for r in stage.requests(b)]
        # (a) the ceiling: every request in one generate call.
        engine = create_engine(MODEL)
        t0 = time.perf_counter()
        ceiling_tokens = sum(r.output_tokens for r in engine.generate(requests))
        ceiling_s = time.perf_counter() - t0
        engine.close()
        del engine
        # (b) the pipeline, engine start excluded (first block start to last block commit).
        pipe_tokens, pipe_s = pipeline_tokens(chain, run, cfg)
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
