"""The loop, on CPU with the bundled model: export the echo run's pairs, train 2 DPO steps with
examples/train_dpo.py, bench the trained folder, its base and a LoRA adapter made here with
`bench run --model` (no model files), then `bench compare`. Plumbing, not quality.
Slow (three vLLM starts, 10-20 minutes on 2 cores): `make test-loop`, outside `make test`
and CI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from persona_gen.cli.main import main
from persona_gen.run.recipe import PERSONAS, PROMPTS
from tests.test_export import echo_run, export  # noqa: F401  (a fixture, used by name)

pytestmark = [pytest.mark.loop, pytest.mark.ray, pytest.mark.timeout(2400)]
REPO = Path(__file__).resolve().parents[1]


def make_lora(dest: Path, base: Path, r: int = 8, scale: float = 0.5) -> Path:
    """A PEFT-format LoRA adapter on q_proj and v_proj with random weights (large enough to
    change greedy answers), written as PEFT writes one."""
    import torch
    from safetensors.torch import save_file

    cfg = json.loads((base / "config.json").read_text())
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * (hidden // heads)
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(cfg["num_hidden_layers"]):
        for module, out in (("q_proj", hidden), ("v_proj", kv)):
            prefix = f"base_model.model.model.layers.{i}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(r, hidden, generator=g) * scale
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out, r, generator=g) * scale
    dest.mkdir(parents=True)
    save_file(tensors, str(dest / "adapter_model.safetensors"))
    (dest / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r,
        "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": str(base)}))
    return dest


def _bench(config: Path, echo: Path, root: Path, run_id: str, source: str) -> dict:
    with pytest.raises(SystemExit) as done:
        main(["bench", "run", "--config", str(config), "--output", str(root), "--run-id", run_id,
              "--personas", str(echo / PERSONAS), "--prompts", str(echo / PROMPTS),
              "--model", source, "--in-process"])
    assert done.value.code in (0, None)
    answers = pq.read_table(root / run_id / "bench" / "answers.parquet").to_pylist()
    return {(r["mode"], r["persona_id"], r["prompt_id"]): r for r in answers}


def test_export_train_bench_and_compare_with_the_bundled_model(
        echo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("PERSONA_GEN_MODELS_DIR", raising=False)
    from persona_gen.engines.bundled import ensure

    base = ensure("smollm2-135m-instruct")
    # 1. the run's pairs, exported for TRL
    assert export(capsys, echo_run, tmp_path / "dpo", "--format", "trl-dpo")[0] == 0
    # 2. train: examples/train_dpo.py, 2 steps on CPU
    spec = importlib.util.spec_from_file_location("train_dpo", REPO / "examples" / "train_dpo.py")
    assert spec is not None and spec.loader is not None
    train_dpo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_dpo)
    trained = tmp_path / "trained"
    assert train_dpo.main([str(tmp_path / "dpo"), "--base", str(base), "--out", str(trained),
                           "--max-steps", "2", "--cpu", "--max-length", "512",
                           "--learning-rate", "1e-5"]) == 0
    assert (trained / "config.json").is_file()
    adapter = make_lora(tmp_path / "adapter", base)

    # 3. bench each with --model: greedy (k = 1), 2 modes, a few items; the echo judge.
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "run": {"seed": 0},
        "bench": {"models": ["echo"], "modes": ["baseline", "output_only"], "k": 1,
                  "persona_split": "test", "max_personas": 1, "max_prompts": 2},
        "stages": {"bench_answer": {"temperature": 0.0, "max_tokens": 16},
                   "bench_judge": {"model": "echo"}}}))
    root = tmp_path / "runs"
    runs = {name: _bench(config, echo_run, root, name, source) for name, source in
            (("base", str(base)), ("trained", str(trained)), ("lora", str(adapter)))}
    models = {name: {r["model"] for r in rows.values()} for name, rows in runs.items()}
    assert all(len(m) == 1 for m in models.values()) and len(set.union(*models.values())) == 3
    for rows in runs.values():
        assert len(rows) == 4 and all(r["answer_error"] is None and r["answer"].strip()
                                      for r in rows.values())
    # The same items in every run; the adapter changes the greedy answers of its base.
    assert runs["base"].keys() == runs["lora"].keys() == runs["trained"].keys()
    assert any(runs["base"][k]["answer"] != runs["lora"][k]["answer"] for k in runs["base"])
    lora_file = next((Path(p) for p in root.glob("lora/**/*.yaml")), None)
    assert lora_file is None  # model files are not written into the run

    # 4. compare trained and LoRA with the base
    for b in ("trained", "lora"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["bench", "compare", str(root / "base"), str(root / b), "--samples", "100"])
        assert done.value.code in (0, None)
        out = capsys.readouterr().out
        assert "baseline" in out and "output_only" in out
        modes = pq.read_table(root / b / "bench" / "compare" / "modes.parquet").to_pylist()
        assert {m["mode"] for m in modes} == {"baseline", "output_only"}
        assert all(m["paired"] == 2 for m in modes)
        assert (root / b / "bench" / "compare" / "compare.png").read_bytes()[:4] == b"\x89PNG"
