"""The `sim` engine: a continuous-batching GPU server in time only, for paper-scale rehearsals.

It measures scheduling, not text (the text is echo's). It runs with the engine settings the
real engine gets for the model and GPU class its file names (persona_gen.engines.settings):
requests join a running batch of at most `max_num_seqs` sequences whose prompt and output
tokens fit the KV cache's capacity in tokens; every decode step gives each running sequence
one token and takes `step_ms + step_ms_per_seq x running + step_ms_per_1k_context x the
context tokens it reads / 1000` simulated milliseconds (the weights, then every running
sequence's KV cache: the cost plan's bandwidth roofline, persona_gen.cost.derive); a sequence
leaves when its output length, drawn from a seeded lognormal, is reached, and a waiting one
takes its place. Simulated time runs `1 / time_scale` times faster than the wall clock, so a
317,200-pair run takes minutes, and the orchestration around it (blocks read, committed,
handed over) runs at its real speed beside it. `stats()` reports the simulated busy time,
and `stream_seconds` the time the same sequences take as one continuous stream (the ideal).

The step loop jumps from event to event (the next sequence to finish, or an arrival when
there is room), so its cost is per sequence, not per token.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from persona_gen.engines.base import ChatRequest, ChatResult
from persona_gen.engines.echo import EchoEngine, text_info
from persona_gen.engines.registry import ModelSpec, SimSpec, get_spec
from persona_gen.engines.settings import EngineSettings, resolve_settings
from persona_gen.engines.structured import effective_sampling
from persona_gen.hashing import stable_int

Seq = tuple[int, int, int, int]
"""One simulated sequence: (its own prompt tokens, output tokens, shared prefix id, shared
prefix tokens). The shared prefix is the system message (the persona block of every pair
stage): with prefix caching its KV blocks are held once while any running sequence uses it,
as vLLM shares them."""


def sim_settings(spec: ModelSpec) -> EngineSettings:
    """The engine settings a sim runs with: those of the model file it stands for (its own
    file when it names none), on its GPU class."""
    p = spec.sim or SimSpec()
    return resolve_settings(get_spec(p.model) if p.model else spec, p.gpu_class)


def span_seconds(p: SimSpec, running: int, context: int, steps: int) -> float:
    """Simulated seconds of `steps` decode steps of `running` sequences whose contexts add
    up to `context` tokens at the first step (each step adds one token to every one)."""
    reads = steps * context + running * steps * (steps - 1) / 2
    return (steps * (p.step_ms + p.step_ms_per_seq * running)
            + p.step_ms_per_1k_context * reads / 1000) / 1000.0


def draw_length(p: SimSpec, key: str, cap: int) -> int:
    """A seeded lognormal output length (median `median_len`), at most `cap` and `max_len`."""
    z = random.Random(stable_int(key)).gauss(0.0, 1.0)
    return max(1, min(cap, p.max_len, round(p.median_len * math.exp(p.sigma * z))))


class KvCache:
    """The KV cache's tokens in use: each running sequence's prompt and output (reserved
    whole at admission), plus each shared prefix once while a sequence uses it. Also the
    context the running sequences read at a step (every sequence reads its whole prompt,
    shared prefix included, and what it has generated so far)."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self._prefixes: dict[int, list[int]] = {}  # id -> [tokens, sequences using it]
        self._prompts = 0  # sum of the running sequences' whole prompts
        self._starts = 0  # sum of the steps they started at
        self._running = 0

    def context(self, step: int) -> int:
        """Tokens of context the running sequences read at `step`."""
        return self._prompts + self._running * step - self._starts

    def need(self, seq: Seq) -> int:
        own, length, prefix, prefix_tokens = seq
        return own + length + (0 if prefix in self._prefixes else prefix_tokens)

    def fits(self, running: int, seq: Seq, max_num_seqs: int) -> bool:
        """Whether one more sequence joins the batch: below max_num_seqs, and within the KV
        cache left (a lone sequence always runs)."""
        if running >= max_num_seqs:
            return False
        return self.capacity is None or running == 0 or self.used + self.need(seq) <= self.capacity

    def admit(self, seq: Seq, step: int = 0) -> None:
        self.used += self.need(seq)
        self.peak = max(self.peak, self.used)
        entry = self._prefixes.setdefault(seq[2], [seq[3], 0])
        entry[1] += 1
        self._prompts += seq[0] + seq[3]
        self._starts += step
        self._running += 1

    def leave(self, seq: Seq, started: int = 0) -> None:
        own, length, prefix, prefix_tokens = seq
        self._prompts -= own + prefix_tokens
        self._starts -= started
        self._running -= 1
        self.used -= own + length
        entry = self._prefixes[prefix]
        entry[1] -= 1
        if entry[1] == 0:
            self.used -= entry[0]
            del self._prefixes[prefix]


def stream_seconds(seqs: Iterable[Seq], p: SimSpec, max_num_seqs: int,
                   kv_tokens: int | None = None) -> float:
    """Simulated seconds for these sequences as one continuous stream: all waiting at t=0
    in their order, the batch refilled as sequences finish, under the same limits (the
    ceiling a scheduler can reach)."""
    waiting = deque(seqs)
    running: list[tuple[int, int, Seq]] = []  # (finishing step, tie-break, sequence)
    kv = KvCache(kv_tokens)
    tie = itertools.count()
    step = 0
    seconds = 0.0
    while waiting or running:
        while waiting and kv.fits(len(running), waiting[0], max_num_seqs):
            seq = waiting.popleft()
            kv.admit(seq, step)
            heapq.heappush(running, (step + seq[1], next(tie), seq))
        k = running[0][0] - step
        seconds += span_seconds(p, len(running), kv.context(step), k)
        step += k
        while running and running[0][0] <= step:
            finish, _, seq = heapq.heappop(running)
            kv.leave(seq, finish - seq[1])
    return seconds


@dataclass
class _Seq:
    shape: Seq
    done: asyncio.Future[None]


@dataclass
class SimStats:
    busy_s: float = 0.0
    """Simulated seconds with at least one sequence running."""
    steps: int = 0
    tokens: int = 0
    sequences: int = 0
    peak_running: int = 0
    peak_kv_tokens: int = 0
    first_wall: float | None = None
    last_wall: float | None = None
    seqs: list[Seq] = field(default_factory=list)


class SimEngine:
    """An async engine; run it behind an engine host (pipeline.engine_host)."""

    def __init__(self, spec: ModelSpec, *, seed: int = 0) -> None:
        self.spec = spec
        self.name = spec.name
        self.p = spec.sim or SimSpec()
        self.settings = sim_settings(spec)
        self.max_num_seqs = self.settings.max_num_seqs
        self.kv_tokens = self.settings.kv_tokens()
        self.seed = seed
        self.text = EchoEngine(spec)  # schema-valid text, the same context checks
        self._waiting: deque[_Seq] = deque()
        self._running: list[tuple[int, int, _Seq]] = []  # (finishing step, tie-break, seq)
        self._kv = KvCache(self.kv_tokens)
        self._tie = itertools.count()
        self._step = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stats = SimStats()

    async def agenerate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        results = self.text.generate(requests)
        if self._wake is None:
            self._wake = asyncio.Event()
            self._loop = asyncio.get_running_loop().create_task(self._serve())
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []
        for req, res in zip(requests, results, strict=True):
            if res.error is not None:
                continue
            s = effective_sampling(req.sampling, self.spec.sampling)
            cap = max(1, min(s.max_tokens, self.spec.max_model_len - res.prompt_tokens))
            prefix, prefix_tokens = _shared_prefix(req)
            own = max(0, res.prompt_tokens - prefix_tokens)
            tokens, reasons = 0, []
            for i in range(len(res.texts)):
                n = draw_length(self.p, f"{self.seed}:{req.id}:{i}", cap)
                seq = _Seq((own, n, prefix, prefix_tokens), loop.create_future())
                self._waiting.append(seq)
                pending.append(seq.done)
                tokens += n
                reasons.append("length" if n >= cap else "stop")
            res.output_tokens, res.finish_reasons = tokens, reasons
        self._wake.set()
        started = time.monotonic()
        await asyncio.gather(*pending)
        for res in results:
            res.latency_s = time.monotonic() - started
        return results

    async def _serve(self) -> None:
        """The step loop: jump to the next finish (or arrival), sleeping its scaled time."""
        assert self._wake is not None
        p, st = self.p, self._stats
        mark = time.monotonic()  # wall time that simulated step `self._step` corresponds to
        while True:
            while self._waiting and self._kv.fits(len(self._running), self._waiting[0].shape,
                                                  self.max_num_seqs):
                seq = self._waiting.popleft()
                self._kv.admit(seq.shape, self._step)
                heapq.heappush(self._running, (self._step + seq.shape[1], next(self._tie), seq))
                st.sequences += 1
                st.seqs.append(seq.shape)
            st.peak_kv_tokens = self._kv.peak
            if not self._running:
                self._wake.clear()
                await self._wake.wait()
                mark = time.monotonic()  # idle time is not owed to the simulation
                continue
            if st.first_wall is None:
                st.first_wall = mark
            n = len(self._running)
            st.peak_running = max(st.peak_running, n)
            k = self._running[0][0] - self._step
            context = self._kv.context(self._step)
            dt = span_seconds(p, n, context, k) / k  # the span's mean step
            deadline = mark + k * dt * p.time_scale
            steps = k
            if n < self.max_num_seqs and not self._waiting:
                # Room in the batch: an arrival joins at the next step boundary. (Sequences
                # still waiting mean the KV cache is full: arrivals cannot join either.)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
                    steps = min(k, int((time.monotonic() - mark) / (dt * p.time_scale)))
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            # Wall time follows the simulated schedule, not the sleeps' overshoot.
            spent = span_seconds(p, n, context, steps)
            mark += spent * p.time_scale
            self._step += steps
            st.steps += steps
            st.tokens += steps * n
            st.busy_s += spent
            while self._running and self._running[0][0] <= self._step:
                finish, _, seq = heapq.heappop(self._running)
                self._kv.leave(seq.shape, finish - seq.shape[1])
                if not seq.done.done():
                    seq.done.set_result(None)
            st.last_wall = time.monotonic()

    def stats(self) -> dict[str, Any]:
        st = self._stats
        span = ((st.last_wall - st.first_wall) / self.p.time_scale
                if st.first_wall is not None and st.last_wall is not None else 0.0)
        return {"busy_s": st.busy_s, "span_s": span, "steps": st.steps, "tokens": st.tokens,
                "sequences": st.sequences, "peak_running": st.peak_running,
                "peak_kv_tokens": st.peak_kv_tokens,
                "ideal_s": stream_seconds(st.seqs, self.p, self.max_num_seqs, self.kv_tokens),
                "lengths": [q[1] for q in st.seqs],
                "max_num_seqs": self.max_num_seqs, "kv_cache_tokens": self.kv_tokens,
                # Per sequence: KV-cache tokens of its own (prompt less the shared prefix,
                # and output), and the context it reads a step on average.
                "mean_own_tokens": _mean(q[0] + q[1] for q in st.seqs),
                "mean_context_tokens": _mean(q[0] + q[3] + q[1] / 2 for q in st.seqs)}

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        raise RuntimeError("the sim engine is driven by `await agenerate(...)` (an engine host)")


def _mean(values: Iterable[float]) -> float:
    total = count = 0.0
    for v in values:
        total, count = total + v, count + 1
    return total / count if count else 0.0


def _shared_prefix(req: ChatRequest) -> tuple[int, int]:
    """(id, tokens) of the request's system message, the prefix requests share (echo's
    token count: words); (0, 0) without one."""
    first = req.messages[0] if req.messages else None
    if first is None or first.role != "system":
        return 0, 0
    words, digest = text_info(first.content)
    return digest, words

    def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
