"""Concurrent queries share one forward pass of a local model.

A model on the CPU embeds 64 texts in one call several times faster than 64 texts
one call at a time. :class:`QueryBatcher` is a task that takes the texts callers
hand it and encodes them together::

    async with trio.open_nursery() as nursery:
        batcher = QueryBatcher(encode, max_batch=32, window=0.001)
        await nursery.start(batcher.run)
        vector = await batcher.embed("who acquired the telemetry startup?")

Gathering: texts that arrive while a pass runs wait for the next one, which takes
them all (``max_batch`` at most). When the batcher was idle, the first text opens a
gathering window of ``window`` seconds, ended early by a full batch, so a single
caller waits at most that long more than it would alone.

Each caller waits for its own vector and may be cancelled while it waits: a text
not yet taken is dropped from the queue, a text already being encoded has its
vector discarded. An encoding error fails every caller of that pass. When the
batcher stops (``close``, or its nursery is cancelled), callers still waiting get
:class:`~agent_trio.ResourceClosed`.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from agent_trio._errors import ResourceClosed

__all__ = ["BatcherStats", "QueryBatcher"]

Encode = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass(eq=False)
class _Waiter:
    text: str
    done: trio.Event = field(default_factory=trio.Event)
    vector: list[float] | None = None
    error: BaseException | None = None

    def deliver(self, vector: list[float] | None, error: BaseException | None) -> None:
        self.vector, self.error = vector, error
        self.done.set()


@dataclass(frozen=True, slots=True)
class BatcherStats:
    """Passes run, texts embedded in them, the largest pass, and texts waiting now."""

    passes: int
    texts: int
    largest: int
    waiting: int


class QueryBatcher:
    """Encodes the texts of concurrent callers together; see the module docstring."""

    def __init__(self, encode: Encode, *, max_batch: int = 32, window: float = 0.001) -> None:
        if max_batch < 1 or window < 0:
            raise ValueError("max_batch must be >= 1 and window >= 0")
        self._encode = encode
        self.max_batch = max_batch
        self.window = window
        self._queue: deque[_Waiter] = deque()
        self._arrived = trio.Event()
        self._scope: trio.CancelScope | None = None
        self._closed = False
        self.passes = 0
        self.texts = 0
        self.largest = 0

    @property
    def running(self) -> bool:
        return self._scope is not None and not self._closed

    def statistics(self) -> BatcherStats:
        return BatcherStats(self.passes, self.texts, self.largest, len(self._queue))

    def close(self) -> None:
        """Stop the batcher; idempotent. Waiting callers get ``ResourceClosed``."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        self._fail_queued()

    async def embed(self, text: str) -> list[float]:
        """The vector of ``text``, encoded in a pass shared with other callers."""
        if not self.running:
            raise ResourceClosed("the query batcher is not running")
        waiter = _Waiter(text)
        self._queue.append(waiter)
        self._arrived.set()
        try:
            await waiter.done.wait()
        finally:
            if not waiter.done.is_set():  # cancelled: drop the text if it is not taken yet
                with contextlib.suppress(ValueError):  # taken: its vector is discarded
                    self._queue.remove(waiter)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.vector is not None
        return waiter.vector

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Encode what callers hand in until closed or cancelled."""
        if self._scope is not None or self._closed:
            raise RuntimeError("a QueryBatcher runs once")
        taken: list[_Waiter] = []
        try:
            with trio.CancelScope() as self._scope:
                task_status.started()
                while True:
                    await self._gather()
                    taken = [self._queue.popleft() for _ in range(self._take())]
                    await self._pass(taken)
                    taken = []
        finally:
            self._closed = True
            for waiter in taken:
                if not waiter.done.is_set():
                    waiter.deliver(None, ResourceClosed("the query batcher stopped"))
            self._fail_queued()

    async def _gather(self) -> None:
        if self._queue:  # these arrived during the last pass: they have waited already
            return
        while not self._queue:
            await self._arrived.wait()
            self._arrived = trio.Event()
        with trio.move_on_after(self.window):
            while len(self._queue) < self.max_batch:
                await self._arrived.wait()
                self._arrived = trio.Event()

    def _take(self) -> int:
        return min(len(self._queue), self.max_batch)

    async def _pass(self, taken: list[_Waiter]) -> None:
        self.passes += 1
        self.texts += len(taken)
        self.largest = max(self.largest, len(taken))
        try:
            vectors = await self._encode([waiter.text for waiter in taken])
        except Exception as exc:  # every caller of this pass gets it
            for waiter in taken:
                waiter.deliver(None, exc)
            return
        if len(vectors) != len(taken):  # pragma: no cover - the encoder checks its answer
            raise AssertionError("the encoder returned a vector per text")
        for waiter, vector in zip(taken, vectors, strict=True):
            waiter.deliver(vector, None)

    def _fail_queued(self) -> None:
        while self._queue:
            self._queue.popleft().deliver(None, ResourceClosed("the query batcher stopped"))
