"""The model registry: shipped YAMLs, a user folder, errors naming file and field, the CLI."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from persona_gen.cli.main import app
from persona_gen.engines import bundled
from persona_gen.engines.factory import create_engine, resolve_spec
from persona_gen.engines.registry import discover, get_spec, shipped_dir
from persona_gen.engines.sources import classify
from persona_gen.errors import ConfigError, UserError

runner = CliRunner()
GPU_FAMILIES = ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "mistral-7b-instruct-v0.3",
                "gemma-2-9b-it", "llama-3.1-70b-instruct"]


def test_shipped_models_cover_cpu_echo_gpu_families_and_a_judge():
    models = discover()
    bundled_spec = models["smollm2-135m-instruct"].spec
    assert bundled_spec.engine == "vllm" and bundled_spec.source == "bundled:smollm2-135m-instruct"
    assert bundled_spec.dtype == "float32" and bundled_spec.max_model_len == 2048
    assert "cpu" in bundled_spec.runs_on
    assert models["echo"].spec.engine == "echo"
    for name in GPU_FAMILIES:
        spec = models[name].spec
        assert spec.engine == "vllm" and classify(spec.source).kind == "hf", name
    assert models["llama-3.1-70b-instruct"].spec.tensor_parallel_size == 8
    judge = models["gpt-4o-judge"].spec
    assert judge.engine == "openai" and judge.api_key_env == "OPENAI_API_KEY"
    # One file per model, named after it, in the package data folder.
    assert sorted(p.stem for p in shipped_dir().glob("*.yaml")) == sorted(models)


def test_adding_a_family_is_one_yaml_file(models_dir):
    (models_dir / "phi-3-mini.yaml").write_text(yaml.safe_dump({
        "name": "phi-3-mini", "engine": "vllm", "source": "microsoft/Phi-3-mini-4k-instruct",
        "dtype": "bfloat16", "max_model_len": 4096, "sampling": {"temperature": 0.2}}))
    spec = get_spec("phi-3-mini")
    assert spec.max_model_len == 4096 and spec.sampling.temperature == 0.2
    assert spec.sampling.model_fields_set == {"temperature"}  # other fields: the request's
    assert "phi-3-mini" in discover() and "echo" in discover()


def test_a_user_file_may_replace_a_shipped_model(models_dir):
    (models_dir / "echo.yaml").write_text("name: echo\nengine: echo\nmax_model_len: 100\n")
    assert get_spec("echo").max_model_len == 100


@pytest.mark.parametrize(("content", "expected"), [
    ("name: bad\nengine: vllm\nsource: x/y\nmax_model_len: lots\n",
     "'max_model_len': Input should be a valid integer"),
    ("name: bad\nengine: vllm\nsource: x/y\nsampling:\n  temperture: 0.5\n",
     "unknown key 'sampling.temperture'"),
    ("name: bad\nengine: vllm\n", "'source': engine 'vllm' needs a source"),
    ("name: bad\nengine: gguf\n", "'engine': Input should be 'vllm', 'openai', 'echo', 'sim' or 'custom'"),
    ("name: bad\nengine: echo\nmax_model_len: 100\nsampling: {max_tokens: 100}\n",
     "'sampling.max_tokens': must be below max_model_len (100)"),
    ("name: other\nengine: echo\n", "'name': 'other' must match the file name 'bad'"),
    ("name: bad\nengine: echo\nruns_on: [tpu]\n", "'runs_on.0': Input should be 'cpu' or 'gpu'"),
    ("name: [bad\n", "not valid YAML at line 2"),
])
def test_malformed_yaml_names_the_file_and_the_field(models_dir, content, expected):
    path = models_dir / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        discover()
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_malformed_yaml_fails_the_cli_with_file_and_field(models_dir):
    from persona_gen.cli.main import main

    path = models_dir / "broken.yaml"
    path.write_text("name: broken\nengine: vllm\nsource: a/b\ntensor_parallel_size: 0\n")
    with pytest.raises(SystemExit) as ex:
        main(["models", "list"])
    assert ex.value.code == 65
    res = runner.invoke(app, ["models", "list"])
    assert isinstance(res.exception, ConfigError)
    assert str(res.exception) == (f"{path}: 'tensor_parallel_size': Input should be greater "
                                  f"than or equal to 1")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'nope' \(known: .*echo.*smollm2"):
        get_spec("nope")


def test_models_list_shows_the_bundled_model_and_gpu_families():
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["NAME", "ENGINE", "SOURCE", "DTYPE", "CONTEXT", "TP", "RUNS", "ON"]
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.strip()}
    assert rows["smollm2-135m-instruct"][1:4] == ["vllm", "bundled:smollm2-135m-instruct",
                                                  "float32"]
    for name in GPU_FAMILIES:
        assert rows[name][1] == "vllm"
    assert rows["llama-3.1-70b-instruct"][5] == "8"


def test_models_check_loads_echo_and_generates(models_dir):
    res = runner.invoke(app, ["models", "check", "echo"])
    assert res.exit_code == 0, res.output
    assert "echo: valid" in res.output and "echo:" in res.output.splitlines()[-1]


def test_models_check_without_a_gpu_validates_but_does_not_load():
    res = runner.invoke(app, ["models", "check", "llama-3.1-70b-instruct"])
    assert res.exit_code == 0, res.output
    assert "valid (vllm engine, meta-llama/Llama-3.1-70B-Instruct)" in res.output
    assert "not loaded here: it needs" in res.output


def test_models_check_judge_without_key_says_so(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    res = runner.invoke(app, ["models", "check", "gpt-4o-judge"])
    assert res.exit_code == 0 and "OPENAI_API_KEY is not set" in res.output


def test_overrides_are_validated_like_the_file():
    assert resolve_spec("echo", max_model_len=99).max_model_len == 99
    with pytest.raises(ConfigError, match=r"model 'echo' \(with overrides\): unknown key 'bogus'"):
        create_engine("echo", bogus=1)


def test_generate_command_with_a_schema_file(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 5, "maximum": 5}}, "required": ["n"]}))
    res = runner.invoke(app, ["generate", "--model", "echo", "--prompt", "hi",
                              "--json-schema", str(schema), "-n", "2"])
    assert res.exit_code == 0, res.output
    # Two samples of a schema-constrained answer: one JSON array on stdout.
    assert json.loads(res.stdout) == [{"n": 5}, {"n": 5}]


def test_bundled_model_is_converted_and_verified_in_the_cache():
    # `make setup` ran `models prepare`; a rerun only verifies, and loading needs no network.
    res = runner.invoke(app, ["models", "prepare"])
    assert res.exit_code == 0 and "files verified" in res.output
    folder = bundled.model_dir("smollm2-135m-instruct")
    assert bundled.verify(folder) >= 6
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()}


def test_an_altered_bundled_file_fails_verification(tmp_path):
    source = bundled.model_dir("smollm2-135m-instruct")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / bundled.MANIFEST).write_bytes((source / bundled.MANIFEST).read_bytes())
    config = (source / "config.json").read_text()
    (copy / "config.json").write_text(config)
    (copy / bundled.CHECKSUMS).write_text(f"{bundled.sha256_file(copy / 'config.json')}  config.json\n")
    assert bundled.verify(copy) == 1
    (copy / "config.json").write_text(config.replace('"vocab_size": 49152', '"vocab_size": 49153'))
    with pytest.raises(UserError, match=r"config.json fails its checksum"):
        bundled.verify(copy)
