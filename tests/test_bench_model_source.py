"""`bench run --model SOURCE`: model files inferred for a folder and for a LoRA adapter (no
engine starts here; the CPU loop in test_bench_loop.py loads both in vLLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from persona_gen.cli.bench_cmd import register_sources
from persona_gen.engines.registry import MODELS_DIR_ENV, get_spec
from persona_gen.errors import UserError
from persona_gen.run.config import RunConfig


def _adapter(dest: Path, base: str, r: int = 8) -> Path:
    dest.mkdir()
    (dest / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": 16, "target_modules": ["q_proj"],
        "base_model_name_or_path": base, "rank_pattern": {"v_proj": 32}}))
    return dest


def test_a_folder_and_a_lora_adapter_become_registered_models(tmp_path, monkeypatch):
    from persona_gen.engines.bundled import ensure

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "echo-b.yaml").write_text(yaml.safe_dump(
        {"name": "echo-b", "engine": "echo", "runs_on": ["cpu"]}))
    monkeypatch.setenv(MODELS_DIR_ENV, str(mine))
    base = str(ensure("smollm2-135m-instruct"))
    adapter = _adapter(tmp_path / "adapter", base)
    names = register_sources([base, str(adapter)], RunConfig(), folder=tmp_path / "reg")
    assert len(set(names)) == 2 and not {"smollm2-135m-instruct"} & set(names)
    # Same source, same name (and so the same request ids) on every run.
    assert register_sources([base], RunConfig(), folder=tmp_path / "again") == names[:1]
    folder, lora = get_spec(names[0]), get_spec(names[1])
    assert folder.source == base and folder.lora_adapter is None and "cpu" in folder.runs_on
    assert lora.source == base and lora.lora_adapter == str(adapter)
    assert lora.max_lora_rank == 32  # the largest rank, rank_pattern included
    assert get_spec("echo-b").engine == "echo"  # the user's own models stay known
    # A base for something that is not an adapter: one clear line.
    with pytest.raises(UserError, match=r"no adapter_config\.json"):
        register_sources([base], RunConfig(), lora_base=base, folder=tmp_path / "bad")
