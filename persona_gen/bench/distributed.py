"""`bench run` on the pipeline: answer and judge stages on Ray Data with engine actors.

The bench's own steps (requests, metrics, writing) are unchanged; the two engine calls go
through `PipelineRunner`, which commits blocks under `bench/work/<stage>/`. A resumed run
builds the same calls and gets committed blocks back from storage, so an interrupted bench
run regenerates nothing already done.
"""

from __future__ import annotations

import pyarrow as pa

from persona_gen.bench.run import BenchOutputs, run_bench
from persona_gen.config.run import RunConfig
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.pipeline.runner import EngineRef, PipelineRunner
from persona_gen.storage.layout import RunLayout

WORK = "bench/work"


def run_bench_on_pipeline(requests: pa.Table, cfg: RunConfig, layout: RunLayout,
                          done_answers: pa.Table | None,
                          done_judgments: pa.Table | None) -> BenchOutputs:
    with ray_session(cfg.pipeline), EngineHosts(cfg.pipeline, layout.run_id) as hosts:
        runner = PipelineRunner(layout, WORK, cfg.pipeline, cfg.storage, hosts,
                                ("sample_id", "request_id"))
        return run_bench(requests, cfg.bench, EngineRef, cfg.run.seed, done_answers,
                         done_judgments, cfg.pipeline.batch_size, runner)
