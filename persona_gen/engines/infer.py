"""A model file from a checkpoint: what `persona-gen models add SOURCE` infers.

From config.json, the safetensors headers (tensor names and shapes, no weights read), the
tokenizer config and the chat template of a local folder, an s3:// folder or a Hugging
Face id, it works out: the architecture; parameters, total and active (MoE: shared weights
plus the routed share of the experts); the weights' size and precision; tensor parallelism
per GPU class from that size; the context length; whether the template takes a system turn
(by rendering one); how the family reasons (by rendering the template with and without
thinking); and the tokenizer mode. What it cannot work out is said, never guessed.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from persona_gen.engines.sources import classify
from persona_gen.errors import UserError
from persona_gen.storage.settings import S3Settings

MEMORY_UTILIZATION = 0.9
"""vLLM's default gpu_memory_utilization."""
MAX_WEIGHT_SHARE = 0.8
"""Weights may take at most this share of what vLLM may use; the rest is KV cache (the same
rule as the cost plan's derivation, persona_gen/cost/data/throughput.yaml)."""
MAX_GPUS = 8
"""Tensor parallelism stays inside one node."""
CPU_MAX_WEIGHTS_GB = 2.0
"""Checkpoints up to this size are marked loadable on CPU (fixtures, small models)."""
DEFAULT_CONTEXT_CAP = 32768

_PROBE_SYSTEM = "SYSTEM-PROBE-7f3a"
_PROBE_USER = "USER-PROBE-7f3a"
_SMALL_FILES = ("config.json", "generation_config.json", "tokenizer_config.json",
                "chat_template.jinja", "chat_template.json", "tokenizer.json", "tekken.json",
                "params.json", "model.safetensors.index.json")


class _Reader(Protocol):
    where: str

    def text(self, name: str) -> str | None: ...

    def weights(self) -> dict[str, int]:
        """Weight file name -> bytes."""
        ...

    def tensors(self, name: str) -> dict[str, tuple[str, list[int]]] | None:
        """A safetensors file's tensors: name -> (dtype, shape); None: unreadable."""
        ...


class _FsReader:
    """A folder through a pyarrow filesystem (local or s3://), reading headers by range."""

    def __init__(self, source: str, s3: S3Settings | None) -> None:
        import pyarrow.fs as pafs

        from persona_gen.storage import resolve

        self.where = source
        if classify(source).kind == "local":
            folder = Path(classify(source).value).expanduser().resolve()
            if not folder.is_dir():
                raise UserError("not a folder", source=source)
            self.fs: Any = pafs.LocalFileSystem()
            self.root = str(folder)
        else:
            loc = resolve(source, s3)
            self.fs, self.root = loc.fs, loc.path.rstrip("/")
        self._pafs = pafs

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def text(self, name: str) -> str | None:
        info = self.fs.get_file_info(self._path(name))
        if info.type != self._pafs.FileType.File:
            return None
        with self.fs.open_input_file(self._path(name)) as f:
            return f.read().decode("utf-8")

    def weights(self) -> dict[str, int]:
        selector = self._pafs.FileSelector(self.root, recursive=False)
        return {i.base_name: int(i.size or 0) for i in self.fs.get_file_info(selector)
                if i.type == self._pafs.FileType.File
                and i.base_name.endswith((".safetensors", ".bin", ".pt"))}

    def tensors(self, name: str) -> dict[str, tuple[str, list[int]]] | None:
        if not name.endswith(".safetensors"):
            return None
        with self.fs.open_input_file(self._path(name)) as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 << 20:
                return None  # not a safetensors header
            header = json.loads(f.read(size))
        return {k: (v["dtype"], list(v["shape"])) for k, v in header.items()
                if k != "__metadata__"}


class _HubReader:
    """A Hugging Face repo: small files downloaded, sizes and headers from the hub's API."""

    def __init__(self, repo: str) -> None:
        self.where = repo
        self.repo = repo

    def _fail(self, exc: Exception) -> UserError:
        from huggingface_hub.errors import LocalEntryNotFoundError

        why = ("offline, or no network to it" if isinstance(exc, LocalEntryNotFoundError)
               else f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
        return UserError(f"cannot read it from the Hugging Face hub ({why}); download it "
                         "and pass the folder", source=self.repo)

    def text(self, name: str) -> str | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

        try:
            return Path(hf_hub_download(self.repo, name)).read_text(encoding="utf-8")
        except RemoteEntryNotFoundError:
            return None  # the hub answered: the repo has no such file
        except LocalEntryNotFoundError as exc:
            raise self._fail(exc) from None  # offline, or the hub cannot be reached
        except Exception as exc:
            raise self._fail(exc) from None

    def weights(self) -> dict[str, int]:
        from huggingface_hub import HfApi

        try:
            info = HfApi().model_info(self.repo, files_metadata=True)
        except Exception as exc:
            raise self._fail(exc) from None
        return {s.rfilename: int(s.size or 0) for s in info.siblings or []
                if "/" not in s.rfilename and s.rfilename.endswith((".safetensors", ".bin"))}

    def tensors(self, name: str) -> dict[str, tuple[str, list[int]]] | None:
        meta = self._meta()
        found = meta.files_metadata.get(name) if meta is not None else None
        if found is None:
            return None
        return {k: (v.dtype, list(v.shape)) for k, v in found.tensors.items()}

    def _meta(self) -> Any:
        if not hasattr(self, "_cached"):
            from huggingface_hub import get_safetensors_metadata

            try:
                self._cached: Any = get_safetensors_metadata(self.repo)
            except Exception:
                self._cached = None
        return self._cached


def reader_for(source: str, s3: S3Settings | None = None) -> _Reader:
    kind = classify(source).kind
    if kind == "bundled":
        raise UserError("a bundled model already has its model file", source=source)
    if kind == "hf":
        return _HubReader(source)
    return _FsReader(source, s3)


@dataclass
class Inferred:
    """The model file `models add` writes, and what it found out along the way."""

    spec: dict[str, Any]
    found: list[tuple[str, str]] = field(default_factory=list)
    """(field, how it was inferred), in the order worked out."""
    unknown: list[str] = field(default_factory=list)
    """What could not be inferred (and what the file does instead)."""
    tp_by_gpu: dict[str, int | None] = field(default_factory=dict)
    """GPUs per engine for each GPU class (None: more than one node)."""

    def note(self, key: str, how: str) -> None:
        self.found.append((key, how))


def gpus_for(weights_gb: float, memory_gb: float) -> int | None:
    """Fewest GPUs (a power of two, at most one node) whose usable memory holds the weights
    and leaves room for the KV cache."""
    g = 1
    while g <= MAX_GPUS:
        if weights_gb <= MAX_WEIGHT_SHARE * MEMORY_UTILIZATION * g * memory_gb:
            return g
        g *= 2
    return None


# ---- config.json -------------------------------------------------------------------------

def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return None


@dataclass(frozen=True)
class Shape:
    architecture: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    experts: int | None
    experts_per_token: int | None
    expert_intermediate: int | None
    context: int | None
    dtype: str | None


def read_shape(config: dict[str, Any]) -> Shape:
    """The text model's shape; multimodal wrappers keep it under `text_config`."""
    text = config.get("text_config") or config
    arch = (config.get("architectures") or ["unknown"])[0]
    hidden = int(_first(text, "hidden_size", "d_model") or 0)
    heads = int(_first(text, "num_attention_heads", "n_head") or 1)
    layers = int(_first(text, "num_hidden_layers", "n_layer") or 0)
    kv = int(_first(text, "num_key_value_heads") or heads)
    head_dim = int(_first(text, "head_dim") or (hidden // heads if heads else 0))
    experts = _first(text, "num_experts", "num_local_experts", "n_routed_experts")
    per_token = _first(text, "num_experts_per_tok", "experts_per_token", "num_experts_per_token")
    dtype = _first(config, "torch_dtype", "dtype") or _first(text, "torch_dtype", "dtype")
    return Shape(
        architecture=arch, model_type=str(config.get("model_type", "")), hidden=hidden,
        layers=layers, heads=heads, kv_heads=kv, head_dim=head_dim,
        intermediate=int(_first(text, "intermediate_size", "ffn_dim") or 0),
        vocab=int(_first(text, "vocab_size") or config.get("vocab_size") or 0),
        tied=bool(_first(config, "tie_word_embeddings") if "tie_word_embeddings" in config
                  else text.get("tie_word_embeddings", False)),
        experts=int(experts) if experts and int(experts) > 1 else None,
        experts_per_token=int(per_token) if per_token else None,
        expert_intermediate=int(_first(text, "moe_intermediate_size") or 0) or None,
        context=_first(text, "max_position_embeddings", "max_sequence_length", "n_positions"),
        dtype=str(dtype) if dtype else None,
    )


def params_from_shape(s: Shape) -> tuple[float, float]:
    """(total, active) parameters from the config alone (no weights at hand): attention,
    MLP or experts, embeddings; norms and biases left out (well under 0.1%)."""
    attn = s.hidden * s.head_dim * (2 * s.heads + 2 * s.kv_heads)
    embed = s.vocab * s.hidden * (1 if s.tied else 2)
    if s.experts:
        width = s.expert_intermediate or s.intermediate
        expert = 3 * s.hidden * width
        total = s.layers * (attn + s.experts * expert + s.hidden * s.experts) + embed
        active = s.layers * (attn + (s.experts_per_token or 1) * expert
                             + s.hidden * s.experts) + embed
        return float(total), float(active)
    total = s.layers * (attn + 3 * s.hidden * s.intermediate) + embed
    return float(total), float(total)


_SCALE = re.compile(r"(_scales?|weight_scale(_inv)?|input_scale|qzeros|g_idx)$")


def params_from_tensors(tensors: dict[str, tuple[str, list[int]]]) -> tuple[int, int]:
    """(all parameters, expert parameters) counted from tensor shapes. Quantization scales
    are not parameters; MXFP4 blocks hold two 4-bit values a byte, GPTQ/AWQ int32 words
    eight."""
    total = expert = 0
    for name, (dtype, shape) in tensors.items():
        if _SCALE.search(name):
            continue
        n = math.prod(shape) if shape else 1
        if dtype == "U8" and name.endswith("_blocks"):
            n *= 2
        elif dtype == "I32" and name.endswith("qweight"):
            n *= 8
        total += n
        if ".experts." in name:
            expert += n
    return total, expert


def read_quantization(config: dict[str, Any]) -> tuple[str | None, str]:
    """(our name for the weights' precision, what the config says)."""
    qc = config.get("quantization_config") or (config.get("text_config") or {}).get(
        "quantization_config")
    if not qc:
        return None, "none"
    method = str(qc.get("quant_method", "")).lower()
    if method in ("fp8", "mxfp4"):
        return method, method
    if method == "compressed-tensors":
        for group in (qc.get("config_groups") or {}).values():
            w = group.get("weights") or {}
            bits, kind = w.get("num_bits"), w.get("type")
            if bits == 8:
                return ("fp8" if kind == "float" else "int8"), f"compressed-tensors {kind}{bits}"
            if bits == 4:
                return "int4", f"compressed-tensors {kind}{bits}"
        return None, "compressed-tensors (unrecognised scheme)"
    if method in ("awq", "gptq", "bitsandbytes"):
        bits = qc.get("bits") or qc.get("w_bit") or (4 if qc.get("load_in_4bit") else 8)
        return ("int4" if int(bits) == 4 else "int8"), f"{method} {bits}-bit"
    if method == "modelopt":
        algo = str(qc.get("quant_algo", "")).upper()
        return ("fp8" if "FP8" in algo else None), f"modelopt {algo}"
    return None, f"{method} (unrecognised)"


# ---- chat template -----------------------------------------------------------------------

def _token(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return str(value or "")


def chat_template(reader: _Reader, tok_cfg: dict[str, Any]) -> str | None:
    """The default chat template: chat_template.jinja, chat_template.json or the tokenizer
    config's (a string, or a list of named templates)."""
    text = reader.text("chat_template.jinja")
    if text:
        return text
    js = reader.text("chat_template.json")
    if js:
        return json.loads(js).get("chat_template")
    value = tok_cfg.get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        return named.get("default") or next(iter(named.values()), None)
    return value


def render(template: str, messages: list[dict[str, str]], tok_cfg: dict[str, Any],
           **kwargs: Any) -> str:
    """The template rendered as transformers (and so vLLM) renders it, with a generation
    prompt."""
    from transformers.utils.chat_template_utils import render_jinja_template

    special = {k: _token(tok_cfg.get(k)) for k in ("bos_token", "eos_token", "pad_token",
                                                    "unk_token")}
    out, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                   add_generation_prompt=True, **special, **kwargs)
    return out[0]


def system_role_of(template: str, tok_cfg: dict[str, Any]) -> tuple[bool, str]:
    """(whether a system turn goes through, why): rendered with one; False when the
    template raises or drops its text."""
    messages = [{"role": "system", "content": _PROBE_SYSTEM},
                {"role": "user", "content": _PROBE_USER}]
    try:
        text = render(template, messages, tok_cfg)
    except Exception as exc:
        return False, f"the template rejects a system turn ({str(exc)[:80]}): merged into the first user turn"
    if _PROBE_SYSTEM not in text:
        return False, "the template drops a system turn's text: merged into the first user turn"
    if text.find(_PROBE_SYSTEM) > text.find(_PROBE_USER):
        return False, "the template moves the system text after the user's: merged instead"
    return True, "a system turn renders"


def _vocab_has(tokenizer_json: str | None, token: str) -> bool:
    if tokenizer_json is None:
        return False
    data = json.loads(tokenizer_json)
    if any(t.get("content") == token for t in data.get("added_tokens", [])):
        return True
    vocab = (data.get("model") or {}).get("vocab")
    return isinstance(vocab, dict) and token in vocab


def reasoning_of(template: str, tok_cfg: dict[str, Any], shape: Shape,
                 tokenizer_json: str | None) -> tuple[dict[str, Any], str]:
    """(the model file's `reasoning` block, how it was told) from the template and config."""
    user = [{"role": "user", "content": _PROBE_USER}]
    if "<|channel|>" in template or shape.model_type == "gpt_oss":
        return ({"style": "channel", "parser": "openai_gptoss",
                 "thinking_on": {"reasoning_effort": "medium"},
                 "thinking_off": {"reasoning_effort": "low"},
                 "always": True},
                "harmony channels (<|channel|> in the template): gpt-oss style, reasons always; "
                "reasoning_effort low when thinking is off")
    start, end = "<think>", "</think>"
    markers = _vocab_has(tokenizer_json, start) and _vocab_has(tokenizer_json, end)
    parser = "qwen3" if shape.model_type.startswith("qwen3") else "deepseek_r1"
    if "enable_thinking" in template:
        try:
            off = render(template, user, tok_cfg, enable_thinking=False)
            on = render(template, user, tok_cfg, enable_thinking=True)
        except Exception as exc:
            return {}, f"the template takes enable_thinking but does not render ({exc}): left unset"
        if off != on:
            block: dict[str, Any] = {"style": "think",
                                     "thinking_on": {"enable_thinking": True},
                                     "thinking_off": {"enable_thinking": False}}
            how = "hybrid thinking (the template's enable_thinking switch changes the prompt)"
            return _with_parser(block, parser, markers, how)
    if end in template:
        opens = render(template, user, tok_cfg).rstrip().endswith(start)
        block = {"style": "think", "always": True}
        how = ("<think> blocks, " + ("opened by the generation prompt" if opens
                                      else "written by the model") + "; no switch: reasons always")
        return _with_parser(block, "deepseek_r1", markers, how)
    return {}, "no reasoning markup in the template"


def _with_parser(block: dict[str, Any], parser: str, markers: bool,
                 how: str) -> tuple[dict[str, Any], str]:
    if markers:
        return {**block, "parser": parser, "budget": True}, f"{how}; vLLM parser {parser}"
    return block, (f"{how}; <think> and </think> are not tokens of its tokenizer, so vLLM's "
                   "parser cannot find them: no parser, no budget")


# ---- the whole inference -----------------------------------------------------------------

def default_name(source: str) -> str:
    tail = source.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-._").lower()
    return name or "model"


def infer(source: str, gpus: dict[str, float], *, target_gpu: str = "H100",
          name: str | None = None, context_cap: int = DEFAULT_CONTEXT_CAP,
          s3: S3Settings | None = None,
          reader_factory: Callable[[str], _Reader] | None = None) -> Inferred:
    """Work out a model file for `source`. `gpus`: GPU class -> memory GB (the cost plan's
    table); the file's tensor_parallel_size is `target_gpu`'s."""
    reader = reader_factory(source) if reader_factory else reader_for(source, s3)
    raw = reader.text("config.json")
    if raw is None:
        raise UserError("no config.json: not a Hugging Face model folder", source=source)
    config = json.loads(raw)
    shape = read_shape(config)
    out = Inferred(spec={"name": name or default_name(source), "engine": "vllm",
                         "description": f"{shape.architecture} from {source} "
                                        "(written by persona-gen models add)",
                         "source": source})
    out.note("architecture", f"{shape.architecture} (model_type {shape.model_type or '?'})")

    # Parameters: exact from the weights' headers where they can be read, else from the shape.
    files = reader.weights()
    tensors: dict[str, tuple[str, list[int]]] = {}
    readable = True
    for f in sorted(files):
        part = reader.tensors(f)
        if part is None:
            readable = False
            break
        tensors.update(part)
    if tensors and readable:
        total, expert = params_from_tensors(tensors)
        share = (shape.experts_per_token or 1) / shape.experts if shape.experts else 1.0
        active = total - expert * (1 - share) if shape.experts else total
        how = f"counted from {len(tensors)} tensors in the safetensors headers"
    else:
        total_f, active_f = params_from_shape(shape)
        total, active = int(total_f), int(active_f)
        how = "estimated from config.json (no readable safetensors headers)"
        out.unknown.append("exact parameter count: no safetensors headers; estimated from "
                           "config.json")
    quant, quant_how = read_quantization(config)
    weights_bytes = sum(files.values())
    if weights_bytes:
        weights_gb = weights_bytes / 1e9
        size_how = f"{len(files)} weight file(s), {weights_gb:.2f} GB"
    else:
        from persona_gen.engines.checkpoint import BYTES_PER_PARAM

        weights_gb = total * BYTES_PER_PARAM.get(quant, 2.0) / 1e9
        size_how = f"no weight files listed: {weights_gb:.2f} GB from parameters x precision"
        out.unknown.append("weights' size: no weight files listed; estimated from parameters")
    checkpoint: dict[str, Any] = {
        "architecture": shape.architecture,
        "params_b": _billions(total),
        **({"active_params_b": _billions(active)} if shape.experts else {}),
        **({"experts": shape.experts, "experts_per_token": shape.experts_per_token}
           if shape.experts else {}),
        **({"quantization": quant} if quant else {}),
        "weights_gb": round(weights_gb, 3),
        "layers": shape.layers, "kv_heads": shape.kv_heads, "head_dim": shape.head_dim,
        **({"context": int(shape.context)} if shape.context else {}),
        "source": f"persona-gen models add: config.json and weight files of {source}",
    }
    out.note("parameters", f"{_billions(total)}B total" + (
        f", {_billions(active)}B active ({shape.experts_per_token} of {shape.experts} experts)"
        if shape.experts else "") + f"; {how}")
    out.note("quantization", quant_how)
    out.note("weights", size_how)

    # Layout: GPUs per engine from the weights' size, per GPU class.
    out.tp_by_gpu = {g: gpus_for(weights_gb, mem) for g, mem in gpus.items()}
    tp = out.tp_by_gpu.get(target_gpu)
    if tp is None:
        out.unknown.append(f"tensor_parallel_size: {weights_gb:.0f} GB of weights do not fit "
                           f"one {MAX_GPUS}-GPU {target_gpu} node; set it (and pipeline "
                           "parallelism) by hand")
        tp = MAX_GPUS
    out.note("tensor_parallel_size", f"{tp} on {target_gpu}; per GPU class: " + ", ".join(
        f"{g} {n if n else '>8'}" for g, n in out.tp_by_gpu.items()))
    spec = out.spec
    dtype = shape.dtype if shape.dtype in ("float32", "float16", "bfloat16") else "auto"
    spec["dtype"] = dtype
    context = int(shape.context) if shape.context else None
    if context is None:
        out.unknown.append(f"context length: not in config.json; max_model_len {context_cap}")
    spec["max_model_len"] = min(context or context_cap, context_cap)
    out.note("max_model_len", f"{spec['max_model_len']}" + (
        f" (native {context}, capped at {context_cap}: --max-model-len to change)"
        if context and context > context_cap else " (native)"))
    spec["tensor_parallel_size"] = tp
    if shape.experts and tp > 1:
        spec["expert_parallel"] = True
        out.note("expert_parallel", f"true: {shape.experts} experts over {tp} GPUs")

    # Tokenizer and template.
    tok_cfg = json.loads(reader.text("tokenizer_config.json") or "{}")
    tokenizer_json = reader.text("tokenizer.json")
    if reader.text("tekken.json") is not None:
        spec["tokenizer_mode"] = "mistral"
        out.note("tokenizer_mode", "mistral (tekken.json: mistral_common's tokenizer, as "
                                   "Mistral's model cards ask)")
    template = chat_template(reader, tok_cfg)
    reasoning: dict[str, Any] = {}
    if template is None:
        out.unknown.append("chat template: none found; set chat_template in the file")
        out.unknown.append("system role: no template to render; left at true")
    else:
        system, why = system_role_of(template, tok_cfg)
        if not system:
            spec["system_role"] = False
        out.note("system_role", f"{str(system).lower()}: {why}")
        reasoning, why = reasoning_of(template, tok_cfg, shape, tokenizer_json)
        out.note("reasoning", f"{reasoning.get('style', 'none')}: {why}")
    spec["runs_on"] = ["cpu", "gpu"] if (weights_gb <= CPU_MAX_WEIGHTS_GB and quant is None) \
        else ["gpu"]
    if reasoning:
        spec["reasoning"] = reasoning
    gen = json.loads(reader.text("generation_config.json") or "{}")
    sampling = {k: gen[k] for k in ("temperature", "top_p") if gen.get(k) is not None}
    if sampling:
        spec["sampling"] = sampling
        out.note("sampling", f"{sampling} from generation_config.json")
    else:
        out.unknown.append("sampling: no generation_config.json defaults; the request's apply")
    spec["checkpoint"] = checkpoint
    return out


def _billions(n: float) -> float:
    b = n / 1e9
    return round(b, 3) if b >= 1 else float(f"{b:.4g}")


def model_file_text(inferred: Inferred, source: str) -> str:
    """The YAML text: a header saying how it was made and what to check, then the fields."""
    import yaml

    tp = ", ".join(f"{g}: {n if n else 'more than one node'}"
                   for g, n in inferred.tp_by_gpu.items())
    lines = [
        f"# Written by `persona-gen models add {source}`; check it with",
        f"# `persona-gen models check {inferred.spec['name']}` (docs/models.md).",
        f"# GPUs per engine by GPU class (weights within {MAX_WEIGHT_SHARE:.0%} of "
        f"{MEMORY_UTILIZATION:.0%} of memory): {tp}.",
    ]
    lines += [f"# Not inferred: {u}" for u in inferred.unknown]
    body = yaml.safe_dump(inferred.spec, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + body


def infer_source(source: str, gpus: dict[str, float], *, target_gpu: str = "H100",
                 name: str | None = None, context_cap: int = DEFAULT_CONTEXT_CAP,
                 s3: S3Settings | None = None, base: str | None = None) -> Inferred:
    """`infer` for a model folder, or for a PEFT LoRA adapter (a folder with
    adapter_config.json): the base (`base`, else the adapter's base_model_name_or_path) is
    inferred and the file serves the adapter on it with vLLM's LoRA support."""
    reader = reader_for(source, s3)
    raw = reader.text("adapter_config.json")
    if raw is None:
        if base is not None:
            raise UserError("a base model goes with a LoRA adapter; this folder has no "
                            "adapter_config.json", source=source)
        return infer(source, gpus, target_gpu=target_gpu, name=name, context_cap=context_cap,
                     s3=s3)
    adapter = json.loads(raw)
    if str(adapter.get("peft_type", "LORA")).upper() != "LORA":
        raise UserError(f"adapter_config.json: peft_type {adapter.get('peft_type')!r}; only "
                        "LoRA adapters are served (vLLM's LoRA support)", source=source)
    base = base or adapter.get("base_model_name_or_path")
    if not base:
        raise UserError("adapter_config.json names no base_model_name_or_path; give the base "
                        "model", source=source)
    out = infer(base, gpus, target_gpu=target_gpu, name=name or default_name(source),
                context_cap=context_cap, s3=s3)
    ranks = [int(adapter.get("r") or 8), *map(int, (adapter.get("rank_pattern") or {}).values())]
    out.spec.update(lora_adapter=source, max_lora_rank=max(ranks),
                    description=f"LoRA adapter {source} on {base} (inferred by bench run --model)")
    out.note("lora_adapter", f"{source} on base {base} (rank {max(ranks)})")
    return out
