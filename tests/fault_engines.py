"""Engines that fail on purpose, and a minimal stage, for the engine-lifecycle tests.

Model files name them with `engine: custom` and `engine_class: tests.fault_engines:NAME`;
engine hosts import this module in Ray workers (the test Ray puts the repository on
PYTHONPATH). Their text is the echo engine's.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from persona_gen.engines.base import ChatRequest, ChatResult, Message, Sampling
from persona_gen.engines.echo import EchoEngine
from persona_gen.engines.failures import EngineDead
from persona_gen.engines.registry import ModelSpec
from persona_gen.engines.settings import resolve_settings
from persona_gen.pipeline.stage import DeclaredStage


@dataclass(frozen=True)
class ProbeStage(DeclaredStage):
    """One request per row: the row's text as the user's message; the answer's text back."""

    sampling: Sampling
    name: ClassVar[str] = "probe"
    id_column: ClassVar[str] = "id"
    needs: ClassVar[tuple[str, ...]] = ("id", "text")
    outputs: ClassVar[pa.Schema] = pa.schema([("answer", pa.string())])

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return [Message(role="user", content=row["text"])]

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        return {"answer": result.text}


class _Base:
    def __init__(self, spec: ModelSpec, *, seed: int = 0, starts: str | None = None) -> None:
        self.name = spec.name
        self.echo = EchoEngine(spec)
        self.settings = resolve_settings(spec, "cpu")
        if starts:
            with open(starts, "a") as f:  # one line per engine start (host restarts)
                f.write(f"{time.time()}\n")

    def close(self, timeout_s: float | None = None) -> None:
        return None


class CrashOnMarker(_Base):
    """Dies (as vLLM's engine core does: EngineDead) whenever a request's text holds the
    marker, after `delay_s`, while the other requests sent with it are still running."""

    def __init__(self, spec: ModelSpec, *, seed: int = 0, marker: str = "POISON",
                 delay_s: float = 0.3, starts: str | None = None) -> None:
        super().__init__(spec, seed=seed, starts=starts)
        self.marker, self.delay_s = marker, delay_s

    async def agenerate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        poisoned = any(self.marker in r.messages[-1].content for r in requests)
        await asyncio.sleep(self.delay_s * (1 if poisoned else 2))
        if poisoned:
            raise EngineDead("simulated engine crash")
        return self.echo.generate(requests)


class HangOnce(_Base):
    """Hangs on the first request holding the marker (as a stuck NCCL collective would),
    until its host is restarted; `flag` (a file) makes every later attempt answer."""

    def __init__(self, spec: ModelSpec, *, seed: int = 0, flag: str, marker: str = "HANG",
                 starts: str | None = None) -> None:
        super().__init__(spec, seed=seed, starts=starts)
        self.flag, self.marker = Path(flag), marker

    async def agenerate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        for r in requests:
            if self.marker in r.messages[-1].content and not self.flag.exists():
                self.flag.write_text("hung once\n")
                await asyncio.sleep(3600)
        await asyncio.sleep(0.05)
        return self.echo.generate(requests)


class WithChild(_Base):
    """Starts a child process, as vLLM starts its engine core, and never stops it itself."""

    def __init__(self, spec: ModelSpec, *, seed: int = 0, starts: str | None = None) -> None:
        super().__init__(spec, seed=seed, starts=starts)
        self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"],
                                      stdin=subprocess.DEVNULL)

    async def agenerate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return self.echo.generate(requests)


def join_cluster_and_report(queue: Any) -> None:
    """In a spawned process: `ray.init()` with no address, as vLLM's engine core calls it;
    report the cluster it joined."""
    import ray

    ray.init()
    queue.put(ray.get_runtime_context().gcs_address)
    ray.shutdown()


class ClusterProbe:
    """A Ray actor that starts a process the way vLLM starts its engine core (spawn)."""

    def child_cluster(self) -> tuple[str, str]:
        import multiprocessing

        import ray

        from persona_gen.engines.vllm_engine import share_ray_cluster

        share_ray_cluster()
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=join_cluster_and_report, args=(queue,))
        proc.start()
        joined = queue.get(timeout=180)
        proc.join(60)
        return ray.get_runtime_context().gcs_address, joined
