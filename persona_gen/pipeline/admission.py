"""Bounded admission: how many sequences an engine host lets into its engine at once.

vLLM slows down with a long waiting queue, and every block in flight would otherwise put
all its rows into the engine at once (4 blocks of 1,024 rows: 4,096 requests waiting). The
host admits about 1.1 x max_num_seqs (persona_gen.engines.settings.admission_limit); the
rest wait here, first come first served, and each finished sequence lets the next one in,
so the blocks in flight still keep the engine's batch full.

`exclusive()` runs one group of requests alone in the engine: the sequences already in it
finish, nothing else enters until the group is done (how a host finds the row that kills
its engine, persona_gen.pipeline.engine_host).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

_OWNER: contextvars.ContextVar[object | None] = contextvars.ContextVar("admission_owner",
                                                                      default=None)


class Admission:
    """A first-come-first-served gate of `limit` sequences, tracking which requests are in."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.in_flight = 0
        self.peak = 0
        self.admitted = 0
        self._keys: Counter[str] = Counter()
        self._waiting: deque[tuple[int, asyncio.Future[None], object | None]] = deque()
        self._owner: object | None = None
        """The exclusive group's token while one runs."""
        self._owner_in_flight = 0
        self._exclusive_keys: list[str] | None = None
        self._one_group: asyncio.Lock | None = None

    # -- what is in the engine -----------------------------------------------------------

    def in_flight_keys(self) -> list[str]:
        return list(self._keys)

    @property
    def exclusive_keys(self) -> list[str] | None:
        """The keys of the group running alone, while one does."""
        return self._exclusive_keys

    # -- slots ---------------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, n: int, key: str) -> AsyncIterator[None]:
        """Hold `n` sequences' room (a request's samples) while its engine call runs."""
        n = min(max(1, n), self.limit)  # a request larger than the limit runs alone
        await self._acquire(n)
        self._keys[key] += 1
        try:
            yield
        finally:
            self._keys[key] -= 1
            if self._keys[key] <= 0:
                del self._keys[key]
            self._release(n)

    def _may_enter(self, n: int, owner: object | None) -> bool:
        if self._owner is not None:
            if owner is not self._owner:
                return False
            # The group enters once every other sequence has left the engine.
            if self.in_flight - self._owner_in_flight > 0:
                return False
        return self.in_flight + n <= self.limit

    async def _acquire(self, n: int) -> None:
        owner = _OWNER.get()
        first = not self._waiting or (owner is not None and owner is self._owner)
        if first and self._may_enter(n, owner):
            self._take(n, owner)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut, owner)
        self._waiting.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(n, owner)  # granted, then cancelled: give the room back
            else:
                self._waiting.remove(entry)
            raise

    def _take(self, n: int, owner: object | None) -> None:
        self.in_flight += n
        self.admitted += 1
        if owner is not None and owner is self._owner:
            self._owner_in_flight += n
        self.peak = max(self.peak, self.in_flight)

    def _release(self, n: int, owner: object | None = None) -> None:
        owner = _OWNER.get() if owner is None else owner
        self.in_flight -= n
        if owner is not None and owner is self._owner:
            self._owner_in_flight -= n
        self._grant()

    def _grant(self) -> None:
        """Let waiting requests in, in order; during an exclusive group, only its own."""
        if self._owner is None:
            while self._waiting and self._may_enter(self._waiting[0][0], None):
                n, fut, owner = self._waiting.popleft()
                if not fut.done():
                    self._take(n, owner)
                    fut.set_result(None)
            return
        for entry in list(self._waiting):
            n, fut, owner = entry
            if owner is self._owner and self._may_enter(n, owner):
                self._waiting.remove(entry)
                if not fut.done():
                    self._take(n, owner)
                    fut.set_result(None)

    # -- a group alone -------------------------------------------------------------------

    @asynccontextmanager
    async def exclusive(self, keys: list[str]) -> AsyncIterator[None]:
        """Run the enclosed calls alone in the engine (one such group at a time)."""
        if self._one_group is None:
            self._one_group = asyncio.Lock()
        async with self._one_group:
            token = object()
            self._owner, self._owner_in_flight, self._exclusive_keys = token, 0, list(keys)
            reset = _OWNER.set(token)
            try:
                yield
            finally:
                _OWNER.reset(reset)
                self._owner, self._exclusive_keys = None, None
                self._grant()
