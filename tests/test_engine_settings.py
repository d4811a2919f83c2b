"""Engine settings: explicit per GPU class, at least vLLM's offline defaults, resolved the
same way for the real engine, the sim and the cost plan; Mistral prompts keep their markup."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from persona_gen.cost.tables import load_table
from persona_gen.engines.base import Message
from persona_gen.engines.registry import get_spec
from persona_gen.engines.settings import (
    GPU_CLASSES,
    gpu_class_of,
    kv_cache_tokens_estimate,
    resolve_settings,
)
from persona_gen.engines.vllm_engine import engine_kwargs, render_prompt
from persona_gen.errors import ConfigError
from persona_gen.run import recipe as R
from persona_gen.run.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_paper_8b_engine_arguments_resolve_to_the_offline_batch_on_h100(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper config's 8B model, resolved without a GPU for the H100 class: the engine
    arguments carry 1,024 sequences and 16,384 tokens a step, and vLLM's own default logic
    (under the usage context an AsyncLLM gets) keeps them."""
    import huggingface_hub.constants
    from vllm.config import SchedulerConfig
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    cfg = load_config(ROOT / "jobs" / "configs" / "paper_8xh100.yaml")
    spec = get_spec(R.settings(cfg, "critique").model or "")
    settings = resolve_settings(spec, "H100")
    kwargs = engine_kwargs(spec, settings, folder=str(spec.source), seed=0, cpu=False)
    # An engine test earlier in the session sets the hub offline; offline, vLLM resolves the
    # model id to a local snapshot (arg_utils.py:905-913), which this machine does not have.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    args = AsyncEngineArgs(**kwargs)
    model = SimpleNamespace(max_model_len=spec.max_model_len, is_multimodal_model=False)
    parallel = SimpleNamespace(use_batched_dp_moe=False)
    args._set_default_max_num_seqs_and_batched_tokens_args(UsageContext.ENGINE_CONTEXT, model,
                                                           parallel)
    assert args.max_num_seqs >= 1024 and args.max_num_batched_tokens >= 16384
    assert args.enable_prefix_caching and args.enable_chunked_prefill
    assert kwargs["gpu_memory_utilization"] == 0.9 and kwargs["tokenizer_mode"] == "auto"
    SchedulerConfig(max_model_len=spec.max_model_len, is_encoder_decoder=False,
                    max_num_seqs=args.max_num_seqs,
                    max_num_batched_tokens=args.max_num_batched_tokens)  # vLLM accepts them
    # Left to vLLM, the same context gives the small batch this project used to run with.
    bare = AsyncEngineArgs(model=str(spec.source), enable_chunked_prefill=True)
    bare._set_default_max_num_seqs_and_batched_tokens_args(UsageContext.ENGINE_CONTEXT, model,
                                                           parallel)
    assert (bare.max_num_seqs, bare.max_num_batched_tokens) == (128, 2048)


@pytest.mark.parametrize("gpu", sorted(GPU_CLASSES))
def test_class_defaults_are_at_least_vllms_offline_ones(gpu, monkeypatch):
    """vLLM's own get_batch_defaults, on a platform that reports this GPU's name and memory."""
    import vllm.engine.arg_utils as arg_utils
    from vllm.usage.usage_lib import UsageContext

    names = {"A100-80GB": "NVIDIA A100-SXM4-80GB", "A100-40GB": "NVIDIA A100-SXM4-40GB"}
    fake = SimpleNamespace(
        get_device_total_memory=lambda: int(GPU_CLASSES[gpu].memory_gb * 2**30),
        get_device_name=lambda: names.get(gpu, f"NVIDIA {gpu}"),
        is_tpu=lambda: False, is_cpu=lambda: False)
    monkeypatch.setattr(arg_utils, "current_platform", fake)
    tokens, seqs = arg_utils.EngineArgs.get_batch_defaults(world_size=1)
    ours = resolve_settings(get_spec("llama-3.1-8b-instruct"), gpu)
    assert ours.max_num_seqs >= seqs[UsageContext.LLM_CLASS]
    assert ours.max_num_batched_tokens >= tokens[UsageContext.LLM_CLASS]


def test_cpu_defaults_are_vllms_offline_ones_here():
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    tokens, seqs = EngineArgs.get_batch_defaults(world_size=1)  # this machine: vLLM on CPU
    ours = resolve_settings(get_spec("smollm2-135m-instruct"), "cpu")
    assert (ours.max_num_seqs, ours.max_num_batched_tokens) == (
        seqs[UsageContext.LLM_CLASS], tokens[UsageContext.LLM_CLASS])
    assert ours.gpu_memory_utilization is None and ours.admission_limit == 282


@pytest.mark.parametrize(("name", "memory_gib", "expected"), [
    ("NVIDIA H100 80GB HBM3", 79.6, "H100"), ("NVIDIA H200", 139.8, "H200"),
    ("NVIDIA A100-SXM4-80GB", 79.2, "A100-80GB"), ("NVIDIA A100-SXM4-40GB", 39.4, "A100-40GB"),
    ("A100", 0, "A100-80GB"), ("NVIDIA A10G", 22.1, "A10G"), ("NVIDIA L4", 22.0, "L4"),
    ("NVIDIA L40S", 44.4, "L40S"), ("H100", 0, "H100"), ("NVIDIA GH200 480GB", 94.5, "H100"),
    ("NVIDIA RTX 4090", 23.6, "L4"),
])
def test_gpu_class_from_device_or_ray_names(name, memory_gib, expected):
    assert gpu_class_of(name, memory_gib * 2**30) == expected


def test_gpu_classes_agree_with_plan_costs_gpu_table():
    table = load_table()
    for name, gpu in table.gpus.items():
        assert GPU_CLASSES[name].memory_gb == gpu.memory_gb, name


def test_kv_estimate_and_explicit_values():
    spec = get_spec("llama-3.1-8b-instruct")
    # 80 GB x 0.9, less 16.06 GB of bf16 weights and the 2 GB reserve, at 128 KiB a token.
    assert kv_cache_tokens_estimate(spec.architecture, "H100", 1, 0.9) == int(
        (80e9 * 0.9 - 8.03e9 * 2 - 2e9) // (2 * 32 * 8 * 128 * 2))
    mine = spec.model_copy(update={"max_num_seqs": 64, "max_num_batched_tokens": 32,
                                   "enable_chunked_prefill": False})
    s = resolve_settings(mine, "H100")
    # Explicit values win; without chunked prefill a whole prompt must fit one step.
    assert (s.max_num_seqs, s.max_num_batched_tokens) == (64, 8192)
    big = resolve_settings(get_spec("llama-3.1-70b-instruct"), "H100")
    assert big.tensor_parallel_size == 8 and big.kv_cache_tokens_estimate > 1_000_000
    assert json.loads(json.dumps(big.log_fields()))["admission_limit"] == 1127


def test_engine_settings_cannot_hide_in_vllm_args(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "m.yaml").write_text(yaml.safe_dump({
        "name": "m", "engine": "vllm", "source": "x/y", "vllm_args": {"max_num_seqs": 8}}))
    monkeypatch.setenv("PERSONA_GEN_MODELS_DIR", str(folder))
    with pytest.raises(ConfigError, match="set max_num_seqs as top-level keys"):
        get_spec("m")


MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}")


def _mistral_style_tokenizer(folder: Path) -> None:
    """A tiny tokenizer laid out like Mistral's: <s>, </s>, [INST], [/INST] as special
    tokens, a word-level vocabulary, the v0.3-style chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4}
    for word in ("be", "kind", "why", "is", "the", "sky", "blue", "?", "[", "]", "INST", "/"):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tok.add_special_tokens(["<s>", "</s>", "[INST]", "[/INST]"])
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "chat_template": MISTRAL_TEMPLATE}))


def test_mistral_style_markup_stays_special_tokens(tmp_path):
    """Rendered through the tokenizer vLLM loads with `tokenizer_mode: hf` (the Mistral
    model file's), [INST] and [/INST] are one special token each, not '[', 'INST', ']'."""
    from vllm.tokenizers import get_tokenizer

    folder = tmp_path / "mistral-like"
    _mistral_style_tokenizer(folder)
    tokenizer = get_tokenizer(str(folder), tokenizer_mode="hf")
    # Mistral's template refuses a system turn: system_role false merges it into the user's.
    ids = render_prompt(tokenizer, [Message(role="system", content="be kind"),
                                    Message(role="user", content="why is the sky blue ?")],
                        system_role=False, chat_template=None)
    vocab = tokenizer.get_vocab()
    words = ["be", "kind", "why", "is", "the", "sky", "blue", "?"]
    assert ids == [1, 3, *[vocab[w] for w in words], 4]
    # What an encoder that takes the markup as plain text (mistral_common's, on rendered
    # text) makes of it: brackets and words, no control token.
    plain = tokenizer.encode("[INST] why [/INST]", add_special_tokens=False,
                             split_special_tokens=True)
    assert 3 not in plain and 4 not in plain and vocab["INST"] in plain
    assert get_spec("mistral-7b-instruct-v0.3").tokenizer_mode == "hf"
