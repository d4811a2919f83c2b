"""CONTRIBUTING.md's worked example, run as written: a "tone check" pairs stage added as one
class, one `Stage` value and one template, through the echo engine end to end."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from pydantic import Field, create_model

from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig, stages_model
from persona_gen.storage.runref import RunRef
from tests.pipeline_helpers import read_folder, write_config, write_prompt_file

DOC = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def _blocks() -> dict[str, str]:
    """The example's code blocks, by fence language and order: python, python, jinja."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Adding a stage: a worked example"):]
    found = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    assert [lang for lang, _ in found] == ["python", "python", "jinja"]
    return {"class": found[0][1], "stage": found[1][1], "template": found[2][1]}


def _module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A module with what the class's module and the recipe import where the example goes;
    Ray's workers receive its classes by value (it is not installed anywhere)."""
    from dataclasses import dataclass
    from typing import ClassVar

    import pyarrow as pa
    import ray.cloudpickle

    from persona_gen.engines.base import ChatResult
    from persona_gen.pipeline.stage import DeclaredStage, OutputError

    module = types.ModuleType("tone_example")
    module.__dict__.update({
        "dataclass": dataclass, "ClassVar": ClassVar, "Any": Any, "pa": pa,
        "ChatResult": ChatResult, "DeclaredStage": DeclaredStage, "OutputError": OutputError,
        "Stage": R.Stage, "PLAN": R.PLAN})
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ray.cloudpickle.register_pickle_by_value(module)
    return module


@pytest.mark.ray
def test_the_tone_check_example_runs_end_to_end(tmp_path, census_dir, ray_local,
                                                monkeypatch) -> None:
    blocks, ns = _blocks(), _module(monkeypatch).__dict__
    exec(compile("from __future__ import annotations\n" + blocks["class"], "CONTRIBUTING.md",
                 "exec"), ns)
    tone = eval(compile(blocks["stage"], "CONTRIBUTING.md", "eval"), ns)
    template = tmp_path / "tone_check.jinja"
    template.write_text(blocks["template"])

    # The recipe with the new Stage value after the revision, as step 2 says.
    stages = list(R.all_stages())
    stages.insert(R.all_stages().index(R.stage("revision")) + 1, tone)
    monkeypatch.setattr(R, "_STAGES", tuple(stages))
    config = create_model("ToneRunConfig", __base__=RunConfig,
                          stages=(stages_model(), Field(default_factory=stages_model())))

    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 6)
    path = write_config(tmp_path / "job.yaml", census_dir / "nist-acs-2019" / "ma2019.csv",
                        prompts, str(tmp_path / "out"), personas={"n": 4},
                        stages={"tone_check": {"template": str(template)}})
    import yaml

    cfg = config.model_validate(yaml.safe_load(path.read_text()))
    assert R.recipe(cfg).names[-3:] == ["revision", "tone_check", "verify"]
    assert R.settings(cfg, "tone_check").temperature == 0.0  # its built-in default
    assert R.settings(cfg, "tone_check").model == "echo"  # stages.defaults

    from persona_gen.cost.estimate import workload_from_config
    from persona_gen.run.execute import execute

    planned = {s.stage: s.output_tokens for s in workload_from_config(cfg).stages}
    # stages.defaults (max_tokens 32 in this config) wins over the stage's built-in 8.
    assert planned["tone_check"] == R.settings(cfg, "tone_check").max_tokens == 32
    summary = execute(cfg, RunRef.at(cfg.run.output, "tone"), progress=False)

    run = str(tmp_path / "out" / "tone")
    pairs, _ = read_folder(run, "feedback/pairs")
    tones, _ = read_folder(run, "feedback/tone")
    assert sorted(tones.column("pair_id").to_pylist()) == sorted(pairs.column("pair_id").to_pylist())
    assert set(tones.column("tone").to_pylist()) <= {"respectful", "condescending"}
    assert pc.all(pc.greater(tones.column("tone_check_prompt_tokens"), 0)).as_py()
    record = summary.stages["tone_check"]
    assert record.done == tones.num_rows and record.output_tokens > 0
    import json

    manifest = json.loads((tmp_path / "out" / "tone" / "manifest.json").read_text())
    assert manifest["templates"]["tone_check"]["text"] == blocks["template"]
    assert manifest["settings"]["tone_check"]["max_tokens"] == 32
