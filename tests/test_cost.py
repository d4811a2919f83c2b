"""The cost planner: paper-scale numbers recomputed here from first principles, the table's
figures re-derived, and clear one-line refusals from the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from persona_gen.cli.cost_cmd import registry_engines
from persona_gen.cli.main import main
from persona_gen.cost.derive import derive_entry, rate_with_settings, roofline_decode_tok_s
from persona_gen.cost.estimate import (
    Cluster,
    EngineInfo,
    TokenAssumptions,
    parse_cluster,
    plan_cost,
    workload_from_config,
)
from persona_gen.cost.tables import TABLE_PATH, load_table
from persona_gen.errors import UserError
from persona_gen.run.config import RunConfig

PAPER = {
    "personas": {"n": 1586, "max_resamples": 2},
    "plan": {"train_pairs_per_persona": 100, "seen_test_pairs_per_persona": 50,
             "heldout_test_pairs_per_persona": 50},
    "stages": {"defaults": {"model": "llama-3.1-8b-instruct"},
               "enrich": {"max_tokens": 400}, "consistency": {"max_tokens": 96},
               "original": {"max_tokens": 512}, "critique": {"max_tokens": 512},
               "revision": {"max_tokens": 512}, "verify": {"max_tokens": 96}},
}


def paper(**stages: dict) -> RunConfig:
    """The paper config with some stages' settings changed."""
    merged = {k: dict(v) for k, v in PAPER["stages"].items()}
    for name, settings in stages.items():
        merged[name] = {**merged.get(name, {}), **settings}
    return RunConfig.model_validate({**PAPER, "stages": merged})


@pytest.fixture(scope="module")
def raw_table() -> dict:
    """The YAML as plain data, so the expected numbers do not go through the planner's code."""
    return yaml.safe_load(TABLE_PATH.read_text())


def _figure(raw: dict, model: str, gpu: str) -> dict:
    return next(e for e in raw["entries"] if e["model"] == model and e["gpu"] == gpu)


def test_paper_scale_reproduced_from_its_inputs(raw_table: dict) -> None:
    cfg = RunConfig.model_validate(PAPER)
    plan = plan_cost(workload_from_config(cfg, prompts=3868, source_prompts=8011),
                     Cluster(gpu="H100", count=8), load_table())

    # PERSONA (arXiv 2407.17387), feedback pairs: 1,586 x 200 = 317,200 pairs; 3,868 originals + 3 x 317,200 ~ 950k calls.
    n, pairs, prompts = 1586, 1586 * 200, 3868
    assert pairs == 317_200
    assert 3868 + 3 * 317_200 == 955_468

    # Token sizes: the planner's documented assumptions, spelled out again here.
    sys_t, persona_t, prompt_t, demo_t, cls_out = 150, 600, 40, 250, 8
    m, enrich_out, judge_out, verify_out = 512, 400, 96, 96
    # Up to two resamples at an 8.5% inconsistency rate: 1 + r + r^2 profiles per persona.
    attempts = math.ceil(n * (1 + 0.085 + 0.085**2))
    assert attempts == 1733
    prefix = (pairs - n) * (sys_t + persona_t)  # persona prefix computed once per persona
    expected = {  # stage: (calls, prompt tokens, cached prompt tokens, output tokens)
        "enrich": (attempts, attempts * (sys_t + demo_t), 0, attempts * enrich_out),
        "consistency": (attempts, attempts * (sys_t + persona_t), 0, attempts * judge_out),
        "controversy": (8011, 8011 * (sys_t + prompt_t), 0, 8011 * cls_out),
        "original": (prompts, prompts * (sys_t + prompt_t), 0, prompts * m),
        "critique": (pairs, pairs * (sys_t + persona_t + prompt_t + m), prefix, pairs * m),
        "revision": (pairs, pairs * (sys_t + persona_t + prompt_t + 2 * m), prefix, pairs * m),
        "verify": (pairs, pairs * (sys_t + persona_t + prompt_t + 2 * m), prefix,
                   pairs * verify_out),
    }
    got = {s.stage: (s.calls, s.prompt_tokens, s.cached_prompt_tokens, s.output_tokens)
           for s in plan.stages}
    assert got == expected

    # Time: one engine per H100, output at the measured rate, uncached prompt at prefill rate.
    fig = _figure(raw_table, "llama-3.1-8b-instruct", "H100")
    assert fig["basis"] == "measured" and fig["gpus_per_replica"] == 1
    engine_s = {st: out / fig["output_tok_s"] + (p - c) / fig["prefill_tok_s"]
                for st, (_, p, c, out) in expected.items()}
    for s in plan.stages:
        assert s.replicas == 8
        assert s.gpu_hours == pytest.approx(engine_s[s.stage] / 3600, rel=1e-9)
        assert s.wall_hours == pytest.approx(engine_s[s.stage] / 8 / 3600, rel=1e-9)
    gpu_h = sum(engine_s.values()) / 3600
    assert plan.gpu_hours == pytest.approx(gpu_h, rel=1e-9)
    assert plan.wall_hours == pytest.approx(gpu_h / 8, rel=1e-9)
    assert plan.billed_gpu_hours == pytest.approx(gpu_h, rel=1e-9)  # 8 engines on 8 GPUs
    assert plan.calls == sum(v[0] for v in expected.values())
    assert plan.output_tokens == sum(v[3] for v in expected.values())

    # Storage: about 4 bytes per token of text, 64 bytes per plan row.
    parts = plan.storage.parts
    assert parts["feedback/critiques"] == pairs * m * 4
    assert parts["feedback/pairs"] == pairs * m * 4
    assert parts["feedback/verification"] == pairs * verify_out * 4
    assert parts["feedback/originals"] == prompts * m * 4
    assert parts["plan/"] == pairs * 64
    assert parts["personas/"] == n * persona_t * 4
    assert parts["prompts/"] == 8011 * prompt_t * 4
    assert plan.storage.total_bytes == sum(parts.values())
    assert plan.storage.export_bytes == pairs * (persona_t + prompt_t + 3 * m) * 4


def test_cli_json_matches_the_pure_function(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(PAPER))
    with pytest.raises(SystemExit) as done:
        main(["cost", "--config", str(config), "--cluster", "8xH100", "--json"])
    assert done.value.code in (0, None)
    printed = json.loads(capsys.readouterr().out)
    direct = plan_cost(workload_from_config(RunConfig.model_validate(PAPER)),
                       Cluster(gpu="H100", count=8), load_table(), registry_engines())
    assert printed["calls"] == direct.calls
    assert printed["gpu_hours"] == pytest.approx(direct.gpu_hours)
    assert [s["stage"] for s in printed["stages"]] == [s.stage for s in direct.stages]


def test_cli_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(PAPER))
    with pytest.raises(SystemExit):
        main(["cost", "--config", str(config), "--cluster", "4xA10G"])
    out = capsys.readouterr().out
    assert "Cost plan on 4xA10G" in out and "317,200" in out
    assert "revision" in out and "feedback/critiques" in out


@pytest.mark.parametrize(("argv", "expected"), [
    (["--cluster", "8xB200"], "error: --cluster: unknown GPU type 'B200'"),
    (["--cluster", "H100"], "error: --cluster: 'H100' should look like COUNTxGPU"),
    (["--cluster", "0xH100"], "error: --cluster: '0xH100' should look like COUNTxGPU"),
    (["--set", "stages.critique.model=llama-9-zillion"],
     "error: stages.critique.model: unknown model 'llama-9-zillion'"),
    (["--cluster", "2xH100", "--set", "stages.verify.model=llama-3.1-70b-instruct"],
     "error: stages.verify.model: 'llama-3.1-70b-instruct' needs 8 H100 GPUs per engine"),
    (["--cluster", "8xL4", "--set", "stages.original.model=llama-3.1-70b-instruct"],
     "error: stages.original.model: no throughput figure for 'llama-3.1-70b-instruct' on L4"),
    (["--assume", "persona_tokenz=9"], "error: --assume: unknown key 'persona_tokenz'"),
])
def test_cli_refuses_with_one_line(argv: list[str], expected: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["cost", *argv])
    assert done.value.code == 65
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected), err
    assert "\n" not in err and "Traceback" not in err


def test_parse_cluster_forms() -> None:
    table = load_table()
    assert parse_cluster("8xH100", table) == Cluster(gpu="H100", count=8)
    assert parse_cluster(" 4 x a10g ", table) == Cluster(gpu="A10G", count=4)
    assert parse_cluster("1*L4", table) == Cluster(gpu="L4", count=1)
    assert parse_cluster("16Xa100-80gb", table).label == "16xA100-80GB"
    with pytest.raises(UserError, match="known: A100-40GB, A100-80GB, A10G, H100, H200, L4"):
        parse_cluster("2xTPU", table)


def test_hosted_and_no_model_engines_use_no_cluster_gpu() -> None:
    cfg = paper(verify={"model": "gpt-4o-judge"}, original={"model": "echo"},
                critique={"model": "echo"}, revision={"model": "echo"})
    engines = {"gpt-4o-judge": EngineInfo(kind="openai"), "echo": EngineInfo(kind="echo")}
    plan = plan_cost(workload_from_config(cfg), Cluster(gpu="H100", count=8), load_table(),
                     engines)
    by_stage = {s.stage: s for s in plan.stages}
    assert by_stage["verify"].basis == "hosted" and by_stage["verify"].gpu_hours == 0
    assert by_stage["critique"].basis == "no GPU" and by_stage["critique"].gpu_hours == 0
    assert by_stage["verify"].output_tokens == 317_200 * 96  # tokens still counted
    assert by_stage["enrich"].gpu_hours > 0


def test_registry_layout_differences_are_noted() -> None:
    big = {"model": "llama-3.1-70b-instruct"}
    cfg = paper(original=big, critique=big, revision=big)
    engines = {"llama-3.1-70b-instruct": EngineInfo(kind="vllm", tensor_parallel_size=8),
               "llama-3.1-8b-instruct": EngineInfo(kind="vllm", tensor_parallel_size=1)}
    plan = plan_cost(workload_from_config(cfg), Cluster(gpu="H100", count=8), load_table(),
                     engines)
    # The job places the 70B model on the 8 GPUs its model file asks for (tensor_parallel_size
    # 8): the plan does too, 1 engine on 8xH100, scaled from the table's 4-GPU figure.
    big = [s for s in plan.stages if s.model == "llama-3.1-70b-instruct"]
    assert [(s.gpus_per_replica, s.replicas) for s in big] == [(8, 1)] * 3
    assert all(s.basis == "measured, scaled" for s in big)
    assert len(plan.notes) == 1 and "8 GPUs per engine, 1 engine(s)" in plan.notes[0]


def test_switches_drop_stages_and_caching() -> None:
    off = {"enabled": False}
    cfg = paper(verify=off, consistency=off, controversy=off)
    w = workload_from_config(cfg, tokens=TokenAssumptions(prefix_cache=False))
    plan = plan_cost(w, Cluster(gpu="H100", count=8), load_table())
    assert [s.stage for s in plan.stages] == ["enrich", "original", "critique", "revision"]
    assert all(s.cached_prompt_tokens == 0 for s in plan.stages)
    assert plan.storage.parts["feedback/verification"] == 0


def test_every_figure_names_a_source_and_derived_rows_rederive() -> None:
    table = load_table()
    measured = [e for e in table.entries if e.basis == "measured"]
    assert {f"{e.model}@{e.gpu}" for e in measured} >= {
        table.derivation.anchor_single, table.derivation.anchor_parallel}
    for e in measured:
        assert "measured" in e.source and "github.com/" in e.source
    for e in table.entries:
        if e.basis == "derived":
            again = derive_entry(table, e.model, e.gpu)
            assert again is not None, f"{e.model}@{e.gpu} no longer fits"
            assert (again.gpus_per_replica, again.output_tok_s, again.prefill_tok_s) == (
                e.gpus_per_replica, e.output_tok_s, e.prefill_tok_s), f"{e.model}@{e.gpu} is stale"
            assert e.source.startswith("estimate:")
    # Every model/GPU pair that fits has a row, so the planner never silently lacks one.
    have = {(e.model, e.gpu) for e in table.entries}
    for model in table.models:
        for gpu in table.gpus:
            if derive_entry(table, model, gpu) is not None:
                assert (model, gpu) in have, f"missing row {model}@{gpu}"


def test_every_registered_vllm_model_has_figures() -> None:
    """Adding a model family to the registry must come with throughput figures."""
    from persona_gen.engines.registry import discover

    table = load_table()
    for name, reg in discover().items():
        if reg.spec.engine == "vllm":
            assert name in table.models, f"{name} ({reg.path}) has no entry in {TABLE_PATH.name}"
            assert any(e.model == name and e.gpu == "H100" for e in table.entries)
        elif reg.spec.engine == "echo":
            assert name in table.no_gpu_models


def test_plan_cost_and_the_job_read_each_stages_limit_from_one_settings_value() -> None:
    """The planner's output cap per stage is the cap the built stage runs with, for every
    stage and whichever way the config sets it (own key, stages.defaults, built-in)."""
    from persona_gen.run import recipe as R

    for cfg in (paper(), paper(critique={"max_tokens": 384}),
                RunConfig.model_validate({"stages": {"defaults": {"max_tokens": 77}}}),
                RunConfig.model_validate({})):
        planned = {s.stage: s.output_tokens for s in workload_from_config(cfg).stages}
        assert list(planned) == R.recipe(cfg).names
        for name, tokens in planned.items():
            built = R.build(cfg, name)
            if R.stage(name).role == "classifier":
                assert tokens is None  # sized by the assumptions, not by its cap
                continue
            assert tokens == built.sampling.max_tokens == R.settings(cfg, name).max_tokens, name
    assert workload_from_config(paper(critique={"max_tokens": 384})).text_tokens == {
        "original": 512, "critique": 384, "revision": 512}


def test_the_plan_runs_each_engine_at_its_resolved_settings(raw_table: dict) -> None:
    """With the model files known (as the CLI plans), each engine runs the batch its settings
    on the GPU class give: max_num_seqs, or what its KV cache holds of this stage's
    sequences (the persona prefix held once), never the table's assumed 256."""
    from persona_gen.engines.registry import get_spec
    from persona_gen.engines.settings import resolve_settings

    cfg = RunConfig.model_validate(PAPER)
    table = load_table()
    plan = plan_cost(workload_from_config(cfg), Cluster(gpu="H100", count=8), table,
                     registry_engines())
    settings = resolve_settings(get_spec("llama-3.1-8b-instruct"), "H100")
    assert (settings.max_num_seqs, settings.kv_cache_tokens_estimate) == (1024, 411_529)
    fig = _figure(raw_table, "llama-3.1-8b-instruct", "H100")
    entry = table.entry("llama-3.1-8b-instruct", "H100", field="f")
    for s in plan.stages:
        own = (s.prompt_tokens - s.cached_prompt_tokens + s.output_tokens) // s.calls
        context = (s.prompt_tokens + s.output_tokens // 2) // s.calls
        assert s.running_seqs == min(1024, 411_529 // own), s.stage
        out_s, pre_s, _ = rate_with_settings(table, entry, settings, own, context)
        busy = s.output_tokens / out_s + (s.prompt_tokens - s.cached_prompt_tokens) / pre_s
        assert s.gpu_hours == pytest.approx(busy / 3600, rel=1e-9)
    by = {s.stage: s for s in plan.stages}
    assert by["controversy"].running_seqs == 1024 and by["critique"].running_seqs > 256
    # At the anchors' own batch the rescaled figure is the table's figure itself.
    anchor = settings.model_copy(update={"max_num_seqs": 256, "kv_cache_tokens_estimate": None})
    assert rate_with_settings(table, entry, anchor, 1300)[0] == pytest.approx(fig["output_tok_s"])
    # The rescaling is the bandwidth roofline's ratio.
    m, g, d = table.models["llama-3.1-8b-instruct"], table.gpus["H100"], table.derivation
    crit = by["critique"]
    own = (crit.prompt_tokens - crit.cached_prompt_tokens + crit.output_tokens) // crit.calls
    context = (crit.prompt_tokens + crit.output_tokens // 2) // crit.calls
    ratio = (roofline_decode_tok_s(m, g, 1, d, crit.running_seqs, context)
             / roofline_decode_tok_s(m, g, 1, d, 256, 1300))
    assert rate_with_settings(table, entry, settings, own, context)[0] == pytest.approx(
        fig["output_tok_s"] * ratio)


def test_the_paper_config_plans_the_draws_that_keep_1586_personas(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The paper's 1,586 are counted after its consistency filter (about 8.5% dropped): with
    `drop`, the run draws census people in rounds until 1,586 pass, and the plan counts
    those draws, round by round as the build sizes them, and 317,200 pairs."""
    root = Path(__file__).resolve().parents[1]
    n, rate = 1586, 0.085
    # Round 1 draws n; about n * rate are rejected. Round 2 draws enough that the missing
    # ones are met within two standard deviations: m * s - 2 sqrt(m s (1 - s)) = missing.
    s, missing = 1 - rate, n * rate
    second = math.ceil((math.sqrt(1 - s) + math.sqrt(1 - s + missing)) ** 2 / s)
    assert n + second == 1741  # expected survivors: n - missing + second * s >= n
    with pytest.raises(SystemExit) as done:
        main(["cost", "--config", str(root / "jobs/configs/paper_8xh100.yaml"),
              "--cluster", "8xH100", "--json"])
    assert done.value.code in (0, None)
    plan = json.loads(capsys.readouterr().out)
    assert plan["workload"]["personas"] == n and plan["persona_attempts"] == n + second
    assert plan["workload"]["personas"] * plan["workload"]["pairs_per_persona"] == 317_200
    calls = {st["stage"]: st["calls"] for st in plan["stages"]}
    assert calls["enrich"] == calls["consistency"] == 1741
    assert calls["critique"] == calls["revision"] == calls["verify"] == 317_200
    with pytest.raises(SystemExit):
        main(["cost", "--config", str(root / "jobs/configs/paper_8xh100.yaml"),
              "--cluster", "8xH100"])
    assert ("1,586 personas kept (of 1,741 census draws) x 200 prompts = 317,200 pairs"
            in capsys.readouterr().out)
