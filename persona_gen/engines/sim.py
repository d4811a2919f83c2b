"""The `sim` engine: a continuous-batching GPU server in time only, for paper-scale rehearsals.

It measures scheduling, not text (the text is echo's). Requests join a running batch of at
most `max_num_seqs` sequences; every decode step gives each running sequence one token and
takes `step_ms + step_ms_per_seq x running` simulated milliseconds; a sequence leaves when
its output length, drawn from a seeded lognormal, is reached, and a waiting one takes its
place. Simulated time runs `1 / time_scale` times faster than the wall clock, so a
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
from persona_gen.engines.echo import EchoEngine
from persona_gen.engines.registry import ModelSpec, SimSpec
from persona_gen.engines.structured import effective_sampling
from persona_gen.hashing import stable_int


def step_seconds(p: SimSpec, running: int) -> float:
    return (p.step_ms + p.step_ms_per_seq * running) / 1000.0


def draw_length(p: SimSpec, key: str, cap: int) -> int:
    """A seeded lognormal output length (median `median_len`), at most `cap` and `max_len`."""
    z = random.Random(stable_int(key)).gauss(0.0, 1.0)
    return max(1, min(cap, p.max_len, round(p.median_len * math.exp(p.sigma * z))))


def stream_seconds(lengths: Iterable[int], p: SimSpec) -> float:
    """Simulated seconds for these output lengths as one continuous stream: all waiting at
    t=0, the batch refilled as sequences finish (the ceiling a scheduler can reach)."""
    waiting = deque(lengths)
    running: list[int] = []
    step = 0
    seconds = 0.0
    while waiting or running:
        while waiting and len(running) < p.max_num_seqs:
            heapq.heappush(running, step + waiting.popleft())
        k = running[0] - step
        seconds += k * step_seconds(p, len(running))
        step += k
        while running and running[0] <= step:
            heapq.heappop(running)
    return seconds


@dataclass
class _Seq:
    length: int
    done: asyncio.Future[None]


@dataclass
class SimStats:
    busy_s: float = 0.0
    """Simulated seconds with at least one sequence running."""
    steps: int = 0
    tokens: int = 0
    sequences: int = 0
    peak_running: int = 0
    first_wall: float | None = None
    last_wall: float | None = None
    lengths: list[int] = field(default_factory=list)


class SimEngine:
    """An async engine; run it behind an engine host (pipeline.engine_host)."""

    def __init__(self, spec: ModelSpec, *, seed: int = 0) -> None:
        self.spec = spec
        self.name = spec.name
        self.p = spec.sim or SimSpec()
        self.seed = seed
        self.text = EchoEngine(spec)  # schema-valid text, the same context checks
        self._waiting: deque[_Seq] = deque()
        self._running: list[tuple[int, int, _Seq]] = []  # (finishing step, tie-break, seq)
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
            tokens, reasons = 0, []
            for i in range(len(res.texts)):
                n = draw_length(self.p, f"{self.seed}:{req.id}:{i}", cap)
                seq = _Seq(n, loop.create_future())
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
            while self._waiting and len(self._running) < p.max_num_seqs:
                seq = self._waiting.popleft()
                heapq.heappush(self._running, (self._step + seq.length, next(self._tie), seq))
                st.sequences += 1
                st.lengths.append(seq.length)
            if not self._running:
                self._wake.clear()
                await self._wake.wait()
                mark = time.monotonic()  # idle time is not owed to the simulation
                continue
            if st.first_wall is None:
                st.first_wall = mark
            n = len(self._running)
            st.peak_running = max(st.peak_running, n)
            dt = step_seconds(p, n)
            k = self._running[0][0] - self._step
            deadline = mark + k * dt * p.time_scale
            steps = k
            if n < p.max_num_seqs:
                # Room in the batch: an arrival joins at the next step boundary.
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
                    steps = min(k, int((time.monotonic() - mark) / (dt * p.time_scale)))
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            # Wall time follows the simulated schedule, not the sleeps' overshoot.
            mark += steps * dt * p.time_scale
            self._step += steps
            st.steps += steps
            st.tokens += steps * n
            st.busy_s += steps * dt
            while self._running and self._running[0][0] <= self._step:
                _, _, seq = heapq.heappop(self._running)
                if not seq.done.done():
                    seq.done.set_result(None)
            st.last_wall = time.monotonic()

    def stats(self) -> dict[str, Any]:
        st = self._stats
        span = ((st.last_wall - st.first_wall) / self.p.time_scale
                if st.first_wall is not None and st.last_wall is not None else 0.0)
        return {"busy_s": st.busy_s, "span_s": span, "steps": st.steps, "tokens": st.tokens,
                "sequences": st.sequences, "peak_running": st.peak_running, "ideal_s": stream_seconds(st.lengths, self.p),
                "lengths": list(st.lengths)}

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        raise RuntimeError("the sim engine is driven by `await agenerate(...)` (an engine host)")

    def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
