"""The synthetic run the benchmarks use (persona_gen.run.synthetic) feeds the real pairs
chain: a column the chain looks up and the synthetic inputs lack fails here, not in
`make bench`."""

from __future__ import annotations

import pytest

from persona_gen.pipeline.executor import run_chains
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from persona_gen.run.synthetic import write_synthetic_inputs
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

pytestmark = pytest.mark.ray


def test_synthetic_inputs_go_through_the_pairs_chain(tmp_path, ray_local):
    cfg = RunConfig.model_validate({
        "stages": {"defaults": {"model": "echo", "max_tokens": 16}},
        "pipeline": {"batch_size": 4, "actors": 1, "num_cpus_per_actor": 0.5},
    })
    plan = cfg.plan.model_copy(update={"train_pairs_per_persona": 2,
                                       "seen_test_pairs_per_persona": 1,
                                       "heldout_test_pairs_per_persona": 1})
    run = RunRef.at(str(tmp_path), "synthetic")
    planned = write_synthetic_inputs(run, 3, 8, 0, plan, cfg.pipeline.batch_size)
    run_chains([R.chain(cfg, "pairs")], run, cfg.pipeline)
    pairs = objects.read_table(run.child(R.stage("revision").writes))
    assert pairs.num_rows == planned == 12
    assert set(pairs.column("original_finish_reason").to_pylist()) == {"stop"}
