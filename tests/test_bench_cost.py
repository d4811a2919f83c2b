"""PERSONA Bench cost plan: `persona-gen cost` on a bench config, counts recomputed by hand, the
per-persona prompt sample, and `bench run`'s refusal over bench.max_gpu_hours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_bench_data import personas_table, prompts_table

from persona_gen.bench.config import BenchConfig
from persona_gen.bench.requests import build_requests
from persona_gen.cli.cost_cmd import registry_engines
from persona_gen.cli.main import main
from persona_gen.cost.bench import (
    counts_from_config,
    counts_from_requests,
    pipeline_cluster,
    plan_bench,
)
from persona_gen.cost.estimate import Cluster, TokenAssumptions
from persona_gen.cost.tables import load_table
from persona_gen.errors import UserError
from persona_gen.run.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
BENCH_PAPER = REPO / "jobs" / "configs" / "bench_paper.yaml"


def _cfg(**bench: object) -> RunConfig:
    section = {"models": ["llama-3.1-8b-instruct"], "modes": ["baseline", "cot"], "k": 4,
               "persona_split": "test", "prompt_split": "heldout", **bench}
    return RunConfig.model_validate({
        "bench": section,
        "stages": {"bench_judge": {"model": "llama-3.1-70b-instruct", "max_tokens": 300},
                   "bench_answer": {"max_tokens": 200, "max_tokens_by_mode": {"cot": 700}}},
        "pipeline": {"actors": 8, "num_gpus_per_actor": 1, "accelerator_type": "H100"}})


def test_counts_and_tokens_follow_the_config_by_hand() -> None:
    cfg = _cfg(prompts_per_persona=10, loo_attributes=["age", "religion"], loo_personas=40,
               loo_prompts=20)
    counts, personas, prompts, per = counts_from_config(cfg, prompts=3868)
    # Paper splits: 586 of 1,586 personas are test, 868 of 3,868 prompts held out.
    assert (personas, prompts, per) == (586, 868, 10)
    by = {(c.mode, c.study): c.requests for c in counts}
    assert by == {("baseline", "main"): 5860, ("cot", "main"): 5860,
                  # loo_mode output_only is not benched: 40 x 20 x (2 attributes + all-removed
                  # + the full twin).
                  ("output_only", "loo"): 40 * 20 * 4}
    t = TokenAssumptions()
    plan = plan_bench(cfg, counts, Cluster(gpu="H100", count=8), load_table(), registry_engines(),
                      t, source="config", personas=personas, prompts=prompts,
                      prompts_per_persona=per)
    cot = next(ln for ln in plan.lines if ln.mode == "cot")
    assert cot.samples == cot.judge_calls == 5860 * 4
    assert cot.answer.output_tokens == 5860 * 4 * 700
    assert cot.judge.output_tokens == 5860 * 4 * 300
    assert cot.judge.model == "llama-3.1-70b-instruct"
    # The k samples share their request's prompt; a persona's prefix is computed once.
    computed = 5860 * (t.system_tokens + t.persona_tokens + t.prompt_tokens) - (5860 - 586) * (
        t.system_tokens + t.persona_tokens)
    assert cot.answer.prompt_tokens - cot.answer.cached_prompt_tokens == computed
    base = next(ln for ln in plan.lines if ln.mode == "baseline")
    assert base.answer.prompt_tokens == 5860 * 4 * (t.system_tokens + t.prompt_tokens)
    assert plan.samples == sum(ln.samples for ln in plan.lines)
    assert plan.gpu_hours == pytest.approx(sum(ln.gpu_hours for ln in plan.lines))
    assert plan.gpu_hours > 0
    assert all(ln.answer.basis != "none" for ln in plan.lines)
    # Halving the prompts per persona halves the main lines' requests.
    half, *_ = counts_from_config(_cfg(prompts_per_persona=5), prompts=3868)
    assert {c.requests for c in half} == {2930}


def test_counts_from_a_request_table_match_its_rows() -> None:
    cfg = BenchConfig(models=["m"], modes=["baseline", "output_only"], k=2, persona_split="test",
                      loo_attributes=["religion"], loo_personas=2, loo_prompts=1)
    requests = build_requests(personas_table(), prompts_table(), cfg, seed=0)
    counts = {(c.mode, c.study): (c.requests, c.personas) for c in counts_from_requests(requests)}
    # 2 test personas x 3 held-out prompts per mode; LOO on 1 prompt: p-001 has religion
    # (its twin and its all-removed twin), p-002 has none of the listed attributes (no
    # twin); the full twin is in the main grid.
    assert counts == {("baseline", "main"): (6, 2), ("output_only", "main"): (6, 2),
                      ("output_only", "loo"): (2, 1)}
    # With one prompt per persona, LOO's full twins on other prompts are study 'loo' rows:
    # the grid keeps 1 prompt per persona in every mode.
    one = BenchConfig(models=["m"], modes=["baseline", "output_only"], k=2, persona_split="test",
                      prompts_per_persona=1, loo_attributes=["religion"], loo_personas=1,
                      loo_prompts=3)
    counts = {(c.mode, c.study): c.requests for c in
              counts_from_requests(build_requests(personas_table(), prompts_table(), one, seed=0))}
    assert counts[("baseline", "main")] == counts[("output_only", "main")] == 2


def test_each_persona_gets_its_own_seeded_prompt_sample() -> None:
    cfg = BenchConfig(models=["m"], modes=["baseline", "cot"], persona_split=None,
                      prompt_split=None, prompts_per_persona=2)
    rows = build_requests(personas_table(), prompts_table(), cfg, seed=3).to_pylist()
    per: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        per.setdefault((r["persona_id"], r["mode"]), set()).add(r["prompt_id"])
    assert {len(v) for v in per.values()} == {2}
    # Every mode sees the same items for a persona (modes stay comparable)...
    for pid in ("p-001", "p-002", "p-003"):
        assert per[(pid, "baseline")] == per[(pid, "cot")]
    # ... the sample is reproducible and depends on the seed.
    again = build_requests(personas_table(), prompts_table(), cfg, seed=3)
    assert again.column("request_id").to_pylist() == [r["request_id"] for r in rows]
    seeds = {frozenset((r["persona_id"], r["prompt_id"]) for r in build_requests(
        personas_table(), prompts_table(), cfg, seed=s).to_pylist()) for s in range(6)}
    assert len(seeds) > 1


def test_plan_cost_detects_a_bench_config_and_prints_per_model_and_mode(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["cost", "--config", str(BENCH_PAPER), "--json"])
    assert done.value.code in (0, None)
    plan = json.loads(capsys.readouterr().out)
    cfg = yaml.safe_load(BENCH_PAPER.read_text())["bench"]
    lines = {(ln["model"], ln["mode"], ln["study"]) for ln in plan["lines"]}
    assert {(m, mode, "main") for m in cfg["models"] for mode in cfg["modes"]} <= lines
    assert plan["k"] == cfg["k"] and plan["samples"] == plan["requests"] * cfg["k"]
    assert plan["gpu_hours"] > 0 and plan["max_gpu_hours"] == cfg["max_gpu_hours"]
    # The shipped config fits its own cap.
    assert plan["gpu_hours"] <= cfg["max_gpu_hours"]
    with pytest.raises(SystemExit):
        main(["cost", "--config", str(BENCH_PAPER)])
    out = capsys.readouterr().out
    assert "PERSONA Bench cost plan on 8xH100" in out and "summary" in out
    # --job plans the generation job of the same config instead.
    with pytest.raises(SystemExit):
        main(["cost", "--config", str(BENCH_PAPER), "--job"])
    assert "Cost plan on 8xH100" in capsys.readouterr().out


def test_bench_run_plan_refuses_over_the_cap_unless_yes() -> None:
    from persona_gen.cli.bench_cmd import _plan_or_refuse

    cfg = _cfg(max_gpu_hours=0.0001)
    requests = build_requests(personas_table(), prompts_table(), cfg.bench, seed=0)
    assert pipeline_cluster(cfg, load_table()) == Cluster(gpu="H100", count=8)
    with pytest.raises(UserError) as refused:
        _plan_or_refuse(cfg, requests, yes=False)
    assert refused.value.exit_code == 65 and refused.value.source == "bench.max_gpu_hours"
    assert "\n" not in str(refused.value) and "--yes" in str(refused.value)
    _plan_or_refuse(cfg, requests, yes=True)  # printed, started
    _plan_or_refuse(_cfg(max_gpu_hours=1000), requests, yes=False)  # under the cap
    # A CPU run (no GPUs in the pipeline section) plans counts only: nothing to refuse.
    cpu = RunConfig.model_validate({**cfg.model_dump(), "pipeline": {"num_gpus_per_actor": 0}})
    assert pipeline_cluster(cpu, load_table()) is None
    _plan_or_refuse(cpu, requests, yes=False)
