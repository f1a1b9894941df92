"""Worker processes for the rule extractor, so a long ingestion does not spend this
process's one core (the GIL) on it.

Rule extraction is pure Python CPU work, about 2 ms per document of five chunks:
a fifth to a quarter of this process's CPU per document in a run with a fast
embedder, the share that caps such a run. A worker process does it on another
core, for the price of pickling the chunks' texts and the extractions (about
0.4 ms of this process's CPU per call, one call per group of documents).

Starting a worker costs about 0.7 s of CPU and ~100 MB (a fresh interpreter that
imports the extractor), more than extracting a few dozen documents. So workers
start only when ingestion keeps coming: :meth:`ExtractionWorkers.up` counts the
documents asked for, and once ``start_after`` of them came with no pause longer
than ``idle_timeout``, starts the workers in the background. Until they are up
the caller extracts in this process, as before; a worker left idle for
``idle_timeout`` exits, and so does one killed by a cancellation, and the count
starts again.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal, TypeVar

import trio
import trio_parallel

__all__ = ["ExtractionWorkers", "default_processes", "open_extraction_workers"]

log = logging.getLogger(__name__)

A = TypeVar("A")
T = TypeVar("T")

#: documents asked for (with no longer pause than ``idle_timeout``) before workers start
START_AFTER = 64
#: seconds an idle worker waits for work before it exits
IDLE_TIMEOUT = 300.0
#: seconds a closing context gives its idle workers to exit before killing them
_GRACE_PERIOD = 2.0


def default_processes() -> int:
    """One per core but the one this process uses, at least 1 and at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


class ExtractionWorkers:
    """Worker processes for CPU-bound extraction, owned by :func:`open_extraction_workers`.

    ``limiter`` bounds the jobs in flight, one per worker process.
    """

    def __init__(
        self,
        context: trio_parallel.WorkerContext,
        nursery: trio.Nursery,
        *,
        processes: int,
        start_after: int,
        idle_timeout: float,
    ) -> None:
        self.limiter = trio.CapacityLimiter(processes)
        self._context = context
        self._nursery = nursery
        self._start_after = start_after
        self._idle_timeout = idle_timeout
        self._state: Literal["down", "starting", "up"] = "down"
        self._asked = 0
        self._last_asked = -math.inf
        #: documents handed to the workers, and the times the workers were started
        self.documents_sent = 0
        self.starts = 0
        #: jobs begun and not returned (each holds a ``limiter`` token while it runs)
        self.jobs_in_flight = 0

    @property
    def state(self) -> Literal["down", "starting", "up"]:
        return self._state

    def up(self, documents: int) -> bool:
        """Whether a worker is up to take a job of ``documents`` documents.

        When none is, the documents count toward starting the workers (in the
        background), and the caller does the work itself.
        """
        if self._state == "up":
            stats = self._context.statistics()
            if stats.idle_workers + stats.running_workers > 0:
                return True
            self._down()  # each exited: idle for idle_timeout, or killed by a cancelled job
        now = trio.current_time()
        if now - self._last_asked > self._idle_timeout:
            self._asked = 0
        self._last_asked = now
        self._asked += documents
        if self._state == "down" and self._asked >= self._start_after:
            self._state = "starting"
            self._nursery.start_soon(self._start)
        return False

    async def run_sync(self, fn: Callable[[A], T], arg: A, *, documents: int) -> T | None:
        """``fn(arg)`` in a worker process; ``None`` if the worker was lost (killed
        from outside, or it crashed): the caller does the work itself then.

        Cancelling the call kills the worker running it, at once.
        """
        try:
            result: T = await self._job(fn, arg)
        except trio_parallel.BrokenWorkerError as exc:
            log.warning("an extraction worker process was lost (%s); extracting here", exc)
            self._down()
            return None
        self.documents_sent += documents
        return result

    async def _start(self) -> None:
        log.info(
            "starting %d extraction worker process(es) after %d documents",
            self.limiter.total_tokens,
            self._asked,
        )
        started = False
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(int(self.limiter.total_tokens)):
                    nursery.start_soon(self._start_one)
            started = True
        except* (trio_parallel.BrokenWorkerError, OSError) as group:
            log.warning("extraction worker processes did not start: %s", group.exceptions[0])
        if started:
            self.starts += 1
            self._state = "up"
        else:
            self._down()

    def _down(self) -> None:
        """No worker is up: documents asked for count toward a start from zero."""
        self._state = "down"
        self._asked = 0

    async def _start_one(self) -> None:
        await self._job(bool, None)

    async def _job(self, fn: Callable[[A], T], arg: A) -> T:
        self.jobs_in_flight += 1
        try:
            result: T = await self._context.run_sync(
                fn, arg, kill_on_cancel=True, limiter=self.limiter
            )
        finally:
            self.jobs_in_flight -= 1
        return result


@asynccontextmanager
async def open_extraction_workers(
    *,
    processes: int | None = None,
    start_after: int = START_AFTER,
    idle_timeout: float = IDLE_TIMEOUT,
) -> AsyncIterator[ExtractionWorkers]:
    """Worker processes for extraction, started when ingestion keeps coming (see the
    module doc); on exit, a job in flight is killed and every worker is ended."""
    if processes is None:
        processes = default_processes()
    if processes < 1 or start_after < 0 or idle_timeout <= 0:
        raise ValueError(
            f"processes must be >= 1, start_after >= 0 and idle_timeout > 0, "
            f"got {processes}, {start_after} and {idle_timeout}"
        )
    closing = False
    try:
        async with trio_parallel.open_worker_context(
            idle_timeout=idle_timeout,
            init=_leave_stopping_to_the_parent,
            grace_period=_GRACE_PERIOD,
        ) as context:
            async with trio.open_nursery() as nursery:
                workers = ExtractionWorkers(
                    context,
                    nursery,
                    processes=processes,
                    start_after=start_after,
                    idle_timeout=idle_timeout,
                )
                try:
                    yield workers
                finally:
                    nursery.cancel_scope.cancel()
            closing = True
    except trio_parallel.BrokenWorkerError as exc:
        if not closing:
            raise
        # one ended meanwhile (killed from outside): nothing is left to close
        log.warning("an extraction worker process had ended before the close: %s", exc)


def _leave_stopping_to_the_parent() -> None:
    """Run in each worker as it starts: ignore SIGTERM (trio-parallel ignores SIGINT).

    A service stopped by its process group or control group (Ctrl-C, ``timeout``,
    systemd) closes its workers itself, in order; a worker that died first would make
    that close an error. A worker whose parent is gone exits as its pipe closes.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
