"""Checks before a run (persona_gen.run.preflight): every config and input problem found at
once, before Ray starts or a model loads; a run that never got past them pins nothing; OS
errors on local paths are one line.

Real parts: the CLI (in-process, or its own process where Ray's absence is the point), the
session's SeaweedFS for s3:// inputs, the session's local Ray for the cluster read back
from its GCS, the `echo` engine.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

from persona_gen.cli.main import main
from persona_gen.engines.registry import get_spec
from persona_gen.pipeline.cluster import ClusterOffer, NodeShape, fit_problem, offer
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.engine_host import engine_layout
from persona_gen.run.config import load_config
from persona_gen.run.preflight import check_run
from tests.pipeline_helpers import write_config, write_prompt_file

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "data" / "census-excerpt" / "national2019.csv.gz"
PAPER = ROOT / "jobs" / "configs" / "paper_8xh100.yaml"


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A small echo config over the bundled census excerpt (no model, no Ray yet)."""
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 12)
    return write_config(tmp_path / "job.yaml", EXCERPT, prompts, str(tmp_path / "out"),
                        personas={"n": 4})


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    """(exit code, stdout, the `error:` lines of stderr) of one in-process command."""
    with pytest.raises(SystemExit) as ex:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return int(ex.value.code or 0), out, [ln for ln in err.splitlines()
                                          if ln.startswith("error:")]


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- the three mistakes ----------------------------------------------------------

def test_model_typo_is_found_before_ray_starts(job: Path, tmp_path: Path) -> None:
    """The feedback job script with `stages.critique.model: nope`: one line, exit 65, the
    manifest says failed, and no Ray session was ever created (Ray's temp folder, which
    every local instance writes its session into, stays empty)."""
    ray_tmp = tmp_path / "ray"
    ray_tmp.mkdir()
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    probe = ("import runpy, sys, ray; sys.argv = sys.argv[1:]; "
             "code = 0\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('ray initialized:', ray.is_initialized(), file=sys.stderr); sys.exit(code)")
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "jobs" / "generate_feedback.py"),
         "--config", str(job), "--run-id", "typo", "--set", "stages.critique.model=nope",
         "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 65, proc.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith(
        "error: stages.critique.model: unknown model 'nope' (known: "), proc.stderr
    assert "ray initialized: False" in proc.stderr
    assert list(ray_tmp.iterdir()) == [], "a Ray session was started"
    assert "Traceback" not in proc.stderr and "ray_ready" not in proc.stderr
    m = _manifest(tmp_path / "out" / "typo" / "manifest.json")
    assert m["status"] == "failed" and m["failure"]["exit_code"] == 65
    assert "stages.critique.model: unknown model 'nope'" in m["failure"]["reason"]
    assert sorted(p.name for p in (tmp_path / "out" / "typo").iterdir()) == ["manifest.json"]


def test_unwritable_output_is_one_line(job: Path, capsys) -> None:
    code, out, errors = _cli(capsys, "run", "--config", str(job), "--output", "/proc/x",
                             "--run-id", "u", "--no-progress")
    assert code == 65
    assert len(errors) == 1 and errors[0].startswith("error: run.output: /proc/x: not writable ("), \
        errors
    assert out == ""


def test_os_errors_on_local_paths_are_one_line_everywhere(capsys) -> None:
    """Not only in the checks: any command that hits a missing or unwritable local path."""
    code, _, errors = _cli(capsys, "plan", "--personas", "2", "--prompts", "2",
                           "--to", "/proc/x/plan")
    assert code == 65 and len(errors) == 1 and "/proc/x" in errors[0], errors


@pytest.mark.ray
def test_rerun_after_fixing_the_census_path_keeps_the_run_id(job: Path, tmp_path: Path,
                                                             capsys, ray_local) -> None:
    run = tmp_path / "out" / "fix"
    args = ["run", "--config", str(job), "--run-id", "fix", "--until", "personas",
            "--set", "stages.enrich.enabled=false", "--no-progress"]
    code, _, errors = _cli(capsys, *args, "--set", "census.sources=[/nope.csv]")
    assert code == 65 and errors == ["error: census.sources[0]: /nope.csv: file not found"]
    assert _manifest(run / "manifest.json")["status"] == "failed"
    # Fixed: the same run id is accepted, with a line saying the failed run was replaced.
    with pytest.raises(SystemExit) as ex:
        main(args)
    err = capsys.readouterr().err
    assert ex.value.code in (0, None), err
    replaced = [json.loads(ln) for ln in err.splitlines() if '"run_replaced"' in ln]
    assert len(replaced) == 1 and replaced[0]["changed"] == ["census"], err
    m = _manifest(run / "manifest.json")
    assert m["status"] == "partial" and m["phases"] == ["personas"] and m["failure"] is None
    assert m["replaced"][0]["changed"] == ["census"]
    assert "/nope.csv" in m["replaced"][0]["failure"]
    # Once a phase has committed data, a changed config is refused, as before.
    code, _, errors = _cli(capsys, *args, "--set", "personas.n=5")
    assert code == 65 and len(errors) == 1
    assert "exists with a different configuration (personas changed)" in errors[0]
    assert _manifest(run / "manifest.json")["status"] == "partial"


# ---- run --check -----------------------------------------------------------------------

def test_one_check_reports_three_problems_at_once(job: Path, capsys) -> None:
    code, out, errors = _cli(capsys, "run", "--check", "--config", str(job), "--run-id", "c3",
                             "--set", "stages.critique.model=nope",
                             "--set", "census.sources=[/nope.csv]", "--output", "/proc/x")
    assert code == 65
    assert [e.split(":")[1].strip() for e in errors] == [
        "run.output", "census.sources[0]", "stages.critique.model"], errors
    rows = out.splitlines()
    assert rows[0].split() == ["check", "key", "result", "detail"]
    failed = [r for r in rows if "  FAIL  " in r]
    assert len(failed) == 3 and rows[-1] == f"{len(rows) - 2} checks, 3 failed"
    for name in ("run id", "prompts", "cluster", "engine", "layout"):
        assert any(r.startswith(name) and "  ok  " in r for r in rows), (name, out)


def test_check_starts_nothing_and_writes_nothing(job: Path, tmp_path: Path, capsys) -> None:
    code, out, errors = _cli(capsys, "run", "--check", "--json", "--config", str(job),
                             "--run-id", "dry")
    assert (code, errors) == (0, [])
    report = json.loads(out)
    assert report["ok"] and report["exit_code"] == 0
    names = [c["name"] for c in report["checks"]]
    assert names == ["run id", "output", "existing run", "census", "prompts", "model",
                     "cluster", "engine", "layout"]
    census = next(c for c in report["checks"] if c["name"] == "census")
    assert census["key"] == "census.sources[0]" and "readable" in census["detail"]
    assert not (tmp_path / "out").exists()  # the probe and the folders its write made are gone


def test_an_http_judge_no_server_answers_for_fails_its_engine_check(job: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    from persona_gen.storage.local_server import free_ports

    folder = tmp_path / "models"
    folder.mkdir()
    url = f"http://127.0.0.1:{free_ports(1)[0]}/v1"
    (folder / "judge-http.yaml").write_text(yaml.safe_dump(
        {"name": "judge-http", "engine": "openai", "base_url": url, "runs_on": ["cpu"]}))
    monkeypatch.setenv("PERSONA_GEN_MODELS_DIR", str(folder))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = load_config(job, ["stages.verify.model=judge-http"])
    report = check_run(cfg, cfg.run.output, "http", ["pairs"])
    engine = next(c for c in report.checks if c.key == "model judge-http" and c.name == "engine")
    assert not engine.ok and engine.detail.startswith(f"no server answers at {url}")


def test_layout_against_what_a_cluster_offers() -> None:
    """Pure values: the fit of one engine on the nodes a cluster has or can scale to."""
    tp8 = get_spec("llama-3.1-70b-instruct")  # tensor_parallel_size 8
    cfg = PipelineConfig(actors=8, num_gpus_per_actor=1, num_cpus_per_actor=4,
                         accelerator_type="H100")
    h100 = NodeShape(192, 8, ("H100",))
    a10g = NodeShape(48, 4, ("A10G",))
    layout = engine_layout(tp8, cfg)
    assert fit_problem(layout, cfg, ClusterOffer("c", (h100,))) is None
    problem = fit_problem(layout, cfg, ClusterOffer("c", (a10g,)))
    assert problem is not None and "12 CPU and 8 GPU of type H100 on one node" in problem
    # A CPU-only head now, H100 workers the autoscaler may start: it fits.
    head = NodeShape(8, 0)
    assert fit_problem(engine_layout(tp8, cfg), cfg, ClusterOffer(
        "c", (head, NodeShape(192, 8, ("H100",), 2, scalable=True)))) is None
    # The right GPUs but the wrong type.
    h200 = ClusterOffer("c", (NodeShape(192, 8, ("H200",)),))
    assert "of type H100" in (fit_problem(layout, cfg, h200) or "")
    # A CPU engine needs only its CPUs.
    echo = engine_layout(get_spec("echo"), PipelineConfig(num_cpus_per_actor=3))
    assert "3 CPU on one node" in (fit_problem(echo, PipelineConfig(num_cpus_per_actor=3),
                                               ClusterOffer("c", (NodeShape(2, 0),))) or "")


@pytest.mark.ray
def test_cluster_is_read_from_its_gcs_and_a_gpu_engine_that_cannot_fit_fails(
        job: Path, ray_local) -> None:
    import ray

    found = offer(PipelineConfig())
    assert found is not None and found.where == "the running Ray cluster"
    assert found.local  # one node, this machine: what is installed here is what engines get
    assert sum(n.cpus * n.count for n in found.nodes) == ray.cluster_resources()["CPU"]
    cfg = load_config(job, ["stages.defaults.model=sim", "pipeline.num_gpus_per_actor=1"])
    report = check_run(cfg, cfg.run.output, "gpu", ["personas"])
    layout = [c for c in report.checks if c.name == "layout"]
    assert len(layout) == 1 and not layout[0].ok
    assert layout[0].line.startswith("model sim: one engine needs 0.5 CPU and 1 GPU on one node")
    # What an autoscaler (v2) publishes in the GCS: the node groups it may start. A group of
    # H100 nodes makes the same engine fit, by scaling.
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY as KEY
    from ray._raylet import GCS_AUTOSCALER_STATE_NAMESPACE as NS
    from ray._raylet import GcsClient
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig()
    group = config.node_group_configs.add(name="h100", max_count=2)
    group.resources.update({"CPU": 192, "GPU": 8, "accelerator_type:H100": 1})
    gcs = GcsClient(address=ray.get_runtime_context().gcs_address)
    gcs.internal_kv_put(KEY.encode(), config.SerializeToString(), True, namespace=NS.encode())
    try:
        scaled = offer(PipelineConfig())
        assert scaled is not None
        assert NodeShape(192, 8, ("H100",), 2, scalable=True) in scaled.nodes
        assert not scaled.local  # nodes it may start are not this machine
        report = check_run(cfg, cfg.run.output, "gpu", ["personas"])
        layout = [c for c in report.checks if c.name == "layout"]
        assert layout[0].ok and layout[0].detail.endswith(": fits"), layout
    finally:
        gcs.internal_kv_del(KEY.encode(), False, namespace=NS.encode())


# ---- s3:// inputs on SeaweedFS ---------------------------------------------------------

def _put(bucket: str, key: str, body: bytes) -> str:
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                 region_name=os.environ["AWS_REGION"]).put_object(Bucket=bucket, Key=key,
                                                                 Body=body)
    return f"s3://{bucket}/{key}"


def _census_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("national2019.csv", gzip.decompress(EXCERPT.read_bytes()))
    return buf.getvalue()


@pytest.mark.s3
def test_paper_config_check_with_its_inputs_on_s3(s3_bucket: str, tmp_path: Path,
                                                  capsys) -> None:
    census = _put(s3_bucket, "inputs/census/2023/1-Year/csv_pus.zip", _census_zip())
    prompts = _put(s3_bucket, "inputs/prism_conversations.jsonl",
                   write_prompt_file(tmp_path / "p.jsonl", 40).read_bytes())
    code, out, errors = _cli(
        capsys, "run", "--check", "--config", str(PAPER), "--run-id", "paper-v1",
        "--set", f"run.output=s3://{s3_bucket}/runs", "--set", f"census.sources=[{census}]",
        "--set", f"prompts.source={prompts}")
    print(out)  # the table, for the record (pytest -s shows it)
    rows = {tuple(r.split()[:2]): r for r in out.splitlines()[1:-1]}
    result = {key: ("ok" if "  ok  " in r else "FAIL") for key, r in rows.items()}
    expected_ok = [("run", "id"), ("output", "run.output"), ("census", "census.sources[0]"),
                   ("prompts", "prompts.source"), ("model", "stages.defaults.model"),
                   ("engine", "model")]
    for key in expected_ok:
        assert result.get(key) == "ok", (key, out)
    assert f"s3://{s3_bucket}/runs: probe object written and removed" in out
    assert "existing run" in out and "new run" in out
    assert "readable" in rows[("census", "census.sources[0]")]
    assert "40 prompts" in rows[("prompts", "prompts.source")]
    # This machine (no GPU, 2 CPUs) cannot hold one 8B engine of 4 CPUs and one H100; a GPU
    # node with an H100 could. Either way the table says which, and the code follows.
    layout = rows[("layout", "model")]
    assert ("FAIL" in layout and "1 GPU of type H100" in layout) or "fits" in layout
    assert code == (65 if "FAIL" in out else 0)
    assert len(errors) == out.count("  FAIL  ")
    boto = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                        region_name=os.environ["AWS_REGION"])
    left = boto.list_objects_v2(Bucket=s3_bucket, Prefix="runs/").get("Contents", [])
    # The probe is gone; pyarrow keeps the emptied folder as a 0-byte `runs/` marker.
    assert [o["Key"] for o in left if not o["Key"].endswith("/")] == [], left


@pytest.mark.s3
def test_model_weights_on_s3_are_checked_with_their_size(s3_bucket: str, job: Path,
                                                        tmp_path: Path, monkeypatch) -> None:
    _put(s3_bucket, "models/tiny/config.json", b"{}")
    _put(s3_bucket, "models/tiny/model.safetensors", b"x" * 5000)
    folder = tmp_path / "models"
    folder.mkdir()
    for name, prefix in (("tiny-s3", "models/tiny"), ("gone-s3", "models/gone")):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "engine": "vllm", "source": f"s3://{s3_bucket}/{prefix}",
             "runs_on": ["cpu", "gpu"]}))
    monkeypatch.setenv("PERSONA_GEN_MODELS_DIR", str(folder))
    cfg = load_config(job, ["stages.enrich.model=tiny-s3", "stages.original.model=gone-s3"])
    report = check_run(cfg, cfg.run.output, "weights", ["personas", "prompts"])
    sources = {c.key: c for c in report.checks if c.name == "model source"}
    tiny, gone = sources["model tiny-s3: source"], sources["model gone-s3: source"]
    assert tiny.ok and tiny.detail.endswith("readable, 5.0 KB in 2 files"), tiny
    assert not gone.ok and "nothing under this prefix" in gone.detail
