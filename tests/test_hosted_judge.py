"""A hosted (OpenAI-compatible) model in the pipeline, against a real HTTP server of ours on
127.0.0.1: rate limits past the retry budget leave blocks for the resume, and the model
file's concurrency is the total over every engine host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from persona_gen.engines.base import Sampling
from persona_gen.errors import EXIT_INFRASTRUCTURE, InfrastructureError, exit_code_for
from persona_gen.pipeline.chain import Chain, Step, block_file, error_file
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.executor import run_chains
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef
from tests.fault_engines import ProbeStage
from tests.pipeline_helpers import read_folder
from tests.test_engine_http import OpenAIStub

pytestmark = pytest.mark.ray


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    server = OpenAIStub()
    try:
        yield server
    finally:
        server.close()


def _judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, **fields: object) -> str:
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    (folder / "judge.yaml").write_text(yaml.safe_dump({
        "name": "judge", "engine": "openai", "base_url": url, "model": "served",
        "max_model_len": 4096, "runs_on": ["cpu"], "backoff_s": 0.01, "max_retries": 1,
        "timeout_s": 10, **fields}))
    monkeypatch.setenv("PERSONA_GEN_MODELS_DIR", str(folder))
    return "judge"


def _run(tmp_path: Path, blocks: list[list[str]]) -> RunRef:
    run = RunRef.at(str(tmp_path / "out"), "judge")
    for b, rows in enumerate(blocks):
        objects.write_table_atomic(block_file(run, "in", f"b{b}"), pa.table({
            "id": [f"b{b}-r{i}" for i in range(len(rows))], "text": rows}))
    return run


CHAIN = Chain("probe", "in", (Step(ProbeStage(sampling=Sampling(max_tokens=16)), "judge", "out",
                                   id_column="id"),))


def test_429_past_the_budget_leaves_the_block_then_the_resume_succeeds(
        tmp_path, monkeypatch, stub, ray_local):
    model = _judge(tmp_path, monkeypatch, stub.url)
    run = _run(tmp_path, [["one", "two !throttled", "three"], ["four", "five"]])
    cfg = PipelineConfig(actors=1, num_cpus_per_actor=0.25, num_cpus_per_worker=0.25)
    stub.throttle = True
    with EngineHosts(cfg, run.run_id, log_json=False) as hosts, \
            pytest.raises(InfrastructureError) as err:
        run_chains([CHAIN], run, cfg, hosts=hosts)
    assert exit_code_for(err.value) == EXIT_INFRASTRUCTURE
    text = str(err.value)
    assert "1 of 2 blocks were left uncommitted" in text and "HTTP 429" in text
    assert "rerunning the same command resumes these" in text and "\n" not in text
    assert stub.seen["two !throttled"] == 2  # the first try and its one retry
    # Nothing of the throttled block was committed, not even as error rows.
    assert not objects.exists(block_file(run, "out", "b0"))
    assert not objects.exists(error_file(run, "probe", "b0"))
    assert objects.exists(block_file(run, "out", "b1"))
    # The rate limit lifts; the resume does the one block left, once.
    stub.throttle = False
    with EngineHosts(cfg, run.run_id, log_json=False) as hosts:
        results = run_chains([CHAIN], run, cfg, hosts=hosts)
    assert [s.block for r in results for s in r.steps if not s.resumed] == ["b0"]
    out, _ = read_folder(str(tmp_path / "out" / "judge"), "out")
    ids = out.column("id").to_pylist()
    assert sorted(ids) == ["b0-r0", "b0-r1", "b0-r2", "b1-r0", "b1-r1"] == sorted(set(ids))
    assert model == "judge"


def test_concurrency_is_the_total_over_every_host(tmp_path, monkeypatch, stub, ray_local):
    """concurrency 4 over 3 engine hosts (shares 2, 1, 1): never more than 4 requests at the
    server, though 3 workers send 2 blocks of 4 rows each at once."""
    _judge(tmp_path, monkeypatch, stub.url, concurrency=4)
    run = _run(tmp_path, [[f"!sleep=0.3 row {b}-{i}" for i in range(4)] for b in range(6)])
    cfg = PipelineConfig(actors=3, num_cpus_per_actor=0.1, num_cpus_per_worker=0.1,
                         blocks_in_flight=2)
    with EngineHosts(cfg, run.run_id, log_json=False) as hosts:
        assert len(hosts.get("judge")) == 3
        run_chains([CHAIN], run, cfg, hosts=hosts)
    out, _ = read_folder(str(tmp_path / "out" / "judge"), "out")
    assert out.num_rows == 24
    assert 3 <= stub.peak <= 4
