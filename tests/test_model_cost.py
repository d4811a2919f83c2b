"""the cost plan for today's families: MoE active parameters, checkpoint precision, the
refusal of a model that does not fit its GPUs, models added with `models add`, and
reasoning tokens counted apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from persona_gen.cli.main import app
from persona_gen.cost import load_table
from persona_gen.cost.derive import prefill_tok_s, replica_gpus
from persona_gen.cost.estimate import Cluster, StagePlan, Workload, plan_cost
from persona_gen.cost.model_size import step_weight_gb, weight_gb
from persona_gen.engines.registry import MODELS_DIR_ENV, shipped_dir

runner = CliRunner()
PAPER = "jobs/configs/paper_8xh100.yaml"
NEW = {  # model: GPUs per engine in its model file (engines on 8 x H100)
    "qwen3-8b": 1, "qwen3-30b-a3b": 2, "llama-3.3-70b-instruct-fp8": 2, "gemma-3-27b-it": 2,
    "gpt-oss-20b": 1, "gpt-oss-120b": 2, "mistral-small-3.2-24b-instruct": 2}


def plan_json(model: str, *extra: str) -> dict:
    sets = ["--set", f"stages.defaults.model={model}"]
    res = runner.invoke(app, ["cost", "--config", PAPER, "--json", *sets, *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


@pytest.mark.parametrize("model", sorted(NEW))
def test_paper_plan_with_each_new_family(model):
    plan = plan_json(model)
    tp = NEW[model]
    for s in plan["stages"]:
        assert (s["model"], s["gpus_per_replica"], s["replicas"]) == (model, tp, 8 // tp)
        assert s["gpu_hours"] > 0 and s["basis"].startswith("derived")
    assert plan["gpu_hours"] == pytest.approx(sum(s["gpu_hours"] for s in plan["stages"]))
    moe = {"qwen3-30b-a3b": "3.3B of 30.5B", "gpt-oss-20b": "3.6B of 20.9B",
           "gpt-oss-120b": "5.1B of 116.8B"}
    if model in moe:
        assert any(f"MoE, {moe[model]} parameters active per token" in n for n in plan["notes"])


def test_moe_cost_follows_active_parameters_and_the_batch():
    table = load_table()
    d, h100 = table.derivation, table.gpus["H100"]
    moe, dense = table.models["qwen3-30b-a3b"], table.models["qwen3-8b"]
    # Prefill computes with the active parameters only.
    assert prefill_tok_s(moe, h100, 1, d) / prefill_tok_s(dense, h100, 1, d) == pytest.approx(
        8.2 / 3.3)
    # Decode: one sequence reads about its active share; a full batch nearly every expert.
    assert step_weight_gb(moe, d, 1) == pytest.approx(3.3 * 2, rel=0.02)
    assert step_weight_gb(moe, d, 256) == pytest.approx(weight_gb(moe, d), rel=0.01)
    assert step_weight_gb(dense, d, 1) == weight_gb(dense, d)


def test_checkpoint_precision_sizes_memory_and_layout():
    table = load_table()
    d, h100 = table.derivation, table.gpus["H100"]
    fp8, bf16 = table.models["llama-3.3-70b-instruct-fp8"], table.models["llama-3.1-70b-instruct"]
    assert weight_gb(fp8, d) == 72.7 and weight_gb(bf16, d) == pytest.approx(141.2)
    assert (replica_gpus(fp8, h100, d), replica_gpus(bf16, h100, d)) == (2, 4)
    # gpt-oss: the checkpoint's own size (MXFP4 experts beside BF16 attention).
    assert weight_gb(table.models["gpt-oss-120b"], d) == 65.3


def _user_model(models_dir: Path, name: str, **changes) -> None:
    spec = yaml.safe_load((shipped_dir() / "qwen3-30b-a3b.yaml").read_text())
    spec.update(name=name, **changes)
    (models_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec))


def test_an_moe_that_does_not_fit_its_gpus_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                   capsys):
    from persona_gen.cli.main import main

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    _user_model(tmp_path, "qwen3-moe-one-gpu", tensor_parallel_size=1, expert_parallel=False)
    with pytest.raises(SystemExit) as ex:
        main(["cost", "--config", PAPER, "--set", "stages.critique.model=qwen3-moe-one-gpu"])
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 65 and len(err.splitlines()) == 1
    assert err == (
        "error: stages.critique.model: 'qwen3-moe-one-gpu' (MoE, 30.5B parameters, 3.3B active, "
        "16-bit) needs 61 GB for its weights; 1 x H100 (its tensor_parallel_size) give them "
        "58 GB (1 x 80 GB, 90% for vLLM, 80% of that for weights): raise "
        "tensor_parallel_size in its model file")


def test_a_model_added_with_models_add_is_planned_from_its_checkpoint(tmp_path, monkeypatch):
    from tests.test_models_add import QWEN3_30B_A3B

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
    src = tmp_path / "my-moe"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(QWEN3_30B_A3B))
    assert runner.invoke(app, ["models", "add", str(src)]).exit_code == 0
    plan = plan_json("my-moe")
    critique = next(s for s in plan["stages"] if s["stage"] == "critique")
    assert (critique["gpus_per_replica"], critique["replicas"]) == (2, 4)
    shipped = next(s for s in plan_json("qwen3-30b-a3b")["stages"] if s["stage"] == "critique")
    # Same shape, same figures (its active share from the config: 3.35B against the card's 3.3B).
    assert critique["gpu_hours"] == pytest.approx(shipped["gpu_hours"], rel=0.05)
    assert any("my-moe: MoE" in n for n in plan["notes"])


def test_reasoning_tokens_are_planned_apart_and_cost_decode_time():
    from persona_gen.cost.estimate import workload_from_config
    from persona_gen.cost.render import plan_tables
    from persona_gen.run.config import load_config

    table = load_table()
    base = workload_from_config(load_config(PAPER, ["stages.defaults.model=qwen3-8b"]))
    thinking = base.model_copy(update={"stages": [
        s.model_copy(update={"reasoning_tokens": 1000}) if s.stage == "critique" else s
        for s in base.stages]})
    cluster = Cluster(gpu="H100", count=8)
    plain, thought = plan_cost(base, cluster, table), plan_cost(thinking, cluster, table)
    crit = next(s for s in thought.stages if s.stage == "critique")
    assert crit.reasoning_tokens == 317_200 * 1000 and thought.reasoning_tokens == crit.reasoning_tokens
    assert thought.output_tokens == plain.output_tokens  # answers unchanged, counted apart
    assert thought.gpu_hours > plain.gpu_hours
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(plan_tables(thought))
    assert "reasoning tok" in console.export_text()
    console = Console(width=200, record=True)
    console.print(plan_tables(plain))
    assert "reasoning tok" not in console.export_text()


def test_workload_stages_default_to_no_reasoning():
    w = Workload(personas=1, prompts=1, pairs_per_persona=1, text_tokens={}, stages=[StagePlan(
        stage="critique", model="echo", model_field="stages.critique.model", unit="pair",
        prompt_parts=("prompt",), output_tokens=8, persona_prefix=False,
        writes="feedback/critiques")])
    assert w.stages[0].reasoning_tokens == 0
