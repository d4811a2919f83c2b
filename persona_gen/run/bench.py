"""`bench run` on the pipeline: answer and judge stages on Ray Data with engine actors.

The bench's own steps (requests, metrics, writing) are unchanged; the two engine calls go
through `PipelineRunner`, which commits content-addressed blocks in the folders the recipe
declares for the bench stages (`bench/work/<stage>/`). A resumed run that asks for the
same work gets committed blocks back from storage; other work (another model) never does.
"""

from __future__ import annotations

import pyarrow as pa

from persona_gen.bench.run import BenchOutputs, BenchStages, run_bench
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.pipeline.runner import EngineRef, PipelineRunner
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from persona_gen.storage.runref import RunRef


def folders(stage: str) -> tuple[str, str]:
    s = R.stage(stage)
    return s.reads, s.writes


def bench_stages(cfg: RunConfig) -> BenchStages:
    """The bench's two stages, built by the recipe from `stages.bench_*`."""
    built = R.built(cfg, "bench")
    return BenchStages(answer=built["bench_answer"], judge=built["bench_judge"])  # type: ignore[arg-type]


def run_bench_on_pipeline(requests: pa.Table, cfg: RunConfig, stages: BenchStages, run: RunRef,
                          done_answers: pa.Table | None,
                          done_judgments: pa.Table | None) -> BenchOutputs:
    with ray_session(cfg.pipeline), EngineHosts(cfg.pipeline, run.run_id, s3=cfg.storage) as hosts:
        runner = PipelineRunner(run, folders, cfg.pipeline, hosts, ("sample_id", "request_id"))
        return run_bench(requests, cfg.bench, stages, EngineRef, cfg.run.seed, done_answers,
                         done_judgments, runner)
