"""`persona-gen models add SOURCE`: a model file inferred from a checkpoint's config,
weights' headers, tokenizer config and chat template; then `models check` validates it.
Sources: the tiny family fixtures (tests/families.py) as local folders and on a local S3
server, config-only folders with real families' shapes, and a hub id without a hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from persona_gen.cli.main import app
from persona_gen.engines.infer import params_from_shape, read_shape
from persona_gen.engines.registry import load_spec
from tests import families

runner = CliRunner()


def add(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["models", "add", *args])
    return result.exit_code, result.output


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and stderr of `persona-gen models add ARGS` as the command line runs it."""
    from persona_gen.cli.main import main

    with pytest.raises(SystemExit) as ex:
        main(["models", "add", *args])
    return int(ex.value.code), capsys.readouterr().err


EXPECTED = {
    # key: (architecture, reasoning block, system_role, experts)
    "tiny-qwen3": ("Qwen3ForCausalLM", {"style": "think", "parser": "qwen3", "budget": True,
                                        "thinking_on": {"enable_thinking": True},
                                        "thinking_off": {"enable_thinking": False}}, True, None),
    "tiny-qwen3-moe": ("Qwen3MoeForCausalLM", {"style": "think", "parser": "qwen3",
                                               "budget": True,
                                               "thinking_on": {"enable_thinking": True},
                                               "thinking_off": {"enable_thinking": False}},
                       True, 4),
    "tiny-llama3": ("LlamaForCausalLM", None, True, None),
    "tiny-gemma3": ("Gemma3ForCausalLM", None, True, None),
    "tiny-gemma2": ("Gemma2ForCausalLM", None, False, None),
    "tiny-mistral": ("MistralForCausalLM", None, True, None),
    "tiny-r1-distill": ("Qwen2ForCausalLM", {"style": "think", "parser": "deepseek_r1",
                                             "always": True, "budget": True}, True, None),
    "tiny-gpt-oss": ("GptOssForCausalLM", {"style": "channel", "parser": "openai_gptoss",
                                           "always": True,
                                           "thinking_on": {"reasoning_effort": "medium"},
                                           "thinking_off": {"reasoning_effort": "low"}},
                     True, 4),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_add_writes_the_expected_model_file_and_check_passes(key, models_dir):
    arch, reasoning, system_role, experts = EXPECTED[key]
    code, out = add(str(families.folder(key)))
    assert code == 0, out
    written = yaml.safe_load((models_dir / f"{key}.yaml").read_text())
    assert written["engine"] == "vllm" and written["source"] == str(families.folder(key))
    assert written["checkpoint"]["architecture"] == arch
    assert written.get("reasoning") == reasoning
    assert written.get("system_role", True) is system_role
    assert written["checkpoint"].get("experts") == experts
    assert written["dtype"] == "float32" and written["max_model_len"] == 4096
    assert written["tensor_parallel_size"] == 1 and written["runs_on"] == ["cpu", "gpu"]
    assert written["sampling"] == {"temperature": 0.7, "top_p": 0.9}
    # Parameters: counted from the headers, matching the fixture's own count.
    import math

    import safetensors

    with safetensors.safe_open(str(families.folder(key) / "model.safetensors"), "np") as f:
        count = sum(math.prod(f.get_slice(n).get_shape()) for n in f.keys())  # noqa: SIM118
    assert written["checkpoint"]["params_b"] == pytest.approx(count / 1e9, rel=1e-3)
    if experts:
        assert written["checkpoint"]["active_params_b"] < written["checkpoint"]["params_b"]
    # What was inferred is printed, and the file passes `models check`.
    assert "system_role" in out and "reasoning" in out and "tensor_parallel_size" in out
    check = runner.invoke(app, ["models", "check", key, "--no-load"])
    assert check.exit_code == 0 and f"{key}: valid" in check.output, check.output
    assert load_spec(models_dir / f"{key}.yaml").verified_on_cpu is False


def test_add_reads_an_s3_folder_by_ranges(s3_bucket, models_dir):
    from persona_gen.storage import resolve

    src = families.folder("tiny-llama3")
    loc = resolve(f"s3://{s3_bucket}/models/tiny-llama3")
    import pyarrow.fs as pafs

    pafs.copy_files(str(src), loc.path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=loc.fs)
    code, out = add(f"s3://{s3_bucket}/models/tiny-llama3", "--name", "llama-from-s3")
    assert code == 0, out
    from_s3 = yaml.safe_load((models_dir / "llama-from-s3.yaml").read_text())
    code, _ = add(str(src))
    local = yaml.safe_load((models_dir / "tiny-llama3.yaml").read_text())
    for k in ("params_b", "weights_gb", "layers", "kv_heads", "head_dim", "context"):
        assert from_s3["checkpoint"][k] == local["checkpoint"][k], k
    assert from_s3["source"] == f"s3://{s3_bucket}/models/tiny-llama3"


def _config_only(tmp: Path, name: str, config: dict, *, template: str | None = None,
                 extra: dict[str, str] | None = None) -> Path:
    folder = tmp / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    for fname, text in (extra or {}).items():
        (folder / fname).write_text(text)
    return folder


QWEN3_30B_A3B = {  # Qwen/Qwen3-30B-A3B config.json (its shape fields)
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
    "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
    "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
    "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936,
    "tie_word_embeddings": False, "max_position_embeddings": 40960, "torch_dtype": "bfloat16"}
GPT_OSS_120B = {  # openai/gpt-oss-120b config.json (its shape fields)
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": 2880,
    "num_hidden_layers": 36, "num_attention_heads": 64, "num_key_value_heads": 8,
    "head_dim": 64, "intermediate_size": 2880, "num_local_experts": 128,
    "experts_per_token": 4, "vocab_size": 201088, "tie_word_embeddings": False,
    "max_position_embeddings": 131072, "quantization_config": {"quant_method": "mxfp4"}}


def test_moe_parameters_from_a_config_alone_match_the_model_cards():
    total, active = params_from_shape(read_shape(QWEN3_30B_A3B))
    assert total / 1e9 == pytest.approx(30.5, rel=0.01)   # card: 30.5B
    assert active / 1e9 == pytest.approx(3.3, rel=0.03)   # card: 3.3B activated
    total, active = params_from_shape(read_shape(GPT_OSS_120B))
    assert total / 1e9 == pytest.approx(116.8, rel=0.01)  # card: 116.8B
    # The card's 5.1B counts the unembedding only; the embedding table is counted here.
    assert 5.1 < active / 1e9 < 5.1 * 1.15


def test_add_on_a_config_only_moe_sizes_layout_and_says_what_it_estimated(tmp_path,
                                                                           models_dir):
    folder = _config_only(tmp_path, "Qwen3-30B-A3B", QWEN3_30B_A3B,
                          template=families.QWEN3,
                          extra={"tokenizer_config.json": "{}"})
    code, out = add(str(folder))
    assert code == 0, out
    spec = yaml.safe_load((models_dir / "qwen3-30b-a3b.yaml").read_text())
    # 61 GB of BF16 weights: 2 H100s (80% of 90% of 80 GB each is 57.6 GB), experts spread.
    assert spec["tensor_parallel_size"] == 2 and spec["expert_parallel"] is True
    assert spec["checkpoint"]["experts"] == 128 and spec["checkpoint"]["experts_per_token"] == 8
    assert spec["max_model_len"] == 32768 and spec["checkpoint"]["context"] == 40960
    assert spec["runs_on"] == ["gpu"]
    assert "not inferred:" in out and "estimated from config.json" in out
    assert "H200 1" in out and "A100-40GB 4" in out
    # The reasoning markers are not tokens of a tokenizer it could not read: no parser.
    assert spec["reasoning"]["style"] == "think" and "parser" not in spec["reasoning"]


def test_add_detects_quantization_and_mistral_tokenizer(tmp_path, models_dir):
    fp8 = {**QWEN3_30B_A3B, "quantization_config": {
        "quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}}}}
    code, out = add(str(_config_only(tmp_path, "moe-fp8", fp8)))
    assert code == 0, out
    spec = yaml.safe_load((models_dir / "moe-fp8.yaml").read_text())
    assert spec["checkpoint"]["quantization"] == "fp8"
    assert spec["checkpoint"]["weights_gb"] == pytest.approx(30.5, rel=0.01)
    assert spec["tensor_parallel_size"] == 1
    assert "chat template: none found" in out
    code, out = add(str(_config_only(tmp_path, "gpt-oss", GPT_OSS_120B,
                                     template=families.GPT_OSS)))
    assert code == 0, out
    spec = yaml.safe_load((models_dir / "gpt-oss.yaml").read_text())
    assert spec["checkpoint"]["quantization"] == "mxfp4"
    assert spec["reasoning"]["style"] == "channel" and spec["tensor_parallel_size"] == 2
    mistral = tmp_path / "mistral"
    shutil.copytree(families.folder("tiny-mistral"), mistral)
    (mistral / "tekken.json").write_text("{}")
    code, out = add(str(mistral), "--name", "tiny-mistral-tekken")
    assert code == 0, out
    assert yaml.safe_load((models_dir / "tiny-mistral-tekken.yaml").read_text())[
        "tokenizer_mode"] == "mistral"


@pytest.mark.parametrize(("args", "expected"), [
    (["/nonexistent/folder"], "/nonexistent/folder: not a folder"),
    (["bundled:smollm2-135m-instruct"], "a bundled model already has its model file"),
    (["--gpu", "TPUv5", "x/y"], "unknown GPU type 'TPUv5'"),
])
def test_bad_sources_are_one_line_refusals(args, expected, models_dir, capsys):
    code, out = refused(capsys, *args)
    assert code == 65 and expected in out
    assert len(out.strip().splitlines()) == 1


def test_a_hub_id_without_a_hub_is_a_clear_refusal(models_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import (another test may have imported it).
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    code, out = refused(capsys, "Qwen/Qwen3-8B")
    assert code == 65, out
    assert out.startswith("error: Qwen/Qwen3-8B: cannot read it from the Hugging Face hub")
    assert not list(models_dir.iterdir())


def test_an_existing_file_is_kept_unless_forced(tmp_path, models_dir, capsys):
    folder = families.folder("tiny-llama3")
    assert add(str(folder))[0] == 0
    code, out = refused(capsys, str(folder))
    assert code == 65 and "exists; pass --force" in out
    assert add(str(folder), "--force")[0] == 0
