"""The graph gateway: the only code that touches the neo4j driver.

The driver is asyncio code. It lives on the trio-asyncio loop that the service
opened, and every call reaches it through that loop object (a task on it, whose
completion reschedules the waiting Trio task): request tasks do not inherit the loop's
context, so the ambient ``trio_asyncio`` helpers would not find it. Each call runs under the
graph ``CapacityLimiter`` and inside the caller's cancel scope.

A call returns only when it is done on the engine. The engine finishes a
statement it has begun even when the client goes away (docs ENGINE.md), so a
cancelled call does not cut the driver off mid-statement: it keeps its limiter
slot, lets the statement in flight finish, rolls its transaction back at the next
statement boundary (or lets a commit already sent land), closes the session, and
only then raises ``Cancelled``. That wait is shielded and bounded
(``cancel_grace``); an engine that does not answer within it has its connection
dropped (the driver's own asyncio cancellation), which is bounded as well. So the
limiter counts the engine's work, not just ours, and a writer that holds the
store's write limiter is alone on the engine until it returns, cancelled or not.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import neo4j
import outcome
import stamina
import trio

from agent_trio._errors import (
    GraphConstraintError,
    GraphQueryError,
    GraphTransient,
    GraphUnavailable,
    ResourceClosed,
)
from agent_trio._waits import WaitTally
from agent_trio.graph._errors import map_driver_error

__all__ = [
    "CallHook",
    "GraphGateway",
    "GraphTarget",
    "Record",
    "Statement",
    "Vector",
    "open_graph",
]

log = logging.getLogger("agent_trio.graph")

Record = dict[str, Any]
T = TypeVar("T")

#: how long closing the driver may take before we give up on it
_CLOSE_DEADLINE = 5.0
#: how long a cancelled call waits for the engine to finish its statement
CANCEL_GRACE = 5.0
#: tries of a transaction that lost a race with another (see ``GraphGateway.transaction``)
_TRANSACTION_ATTEMPTS = 5
#: how long dropping the connection of a call the engine did not finish may take
_DROP_DEADLINE = 2.0

#: ``on_statement(index, count)``: see :attr:`GraphGateway.on_statement`
StatementHook = Callable[[int, int], None]
#: ``on_call(operation, seconds, error)``: see :attr:`GraphGateway.on_call`
CallHook = Callable[[str, float, str | None], None]


class _CallState:
    """Shared by a call's Trio side and its driver coroutine: was it cancelled?

    The Trio side sets ``cancelled`` at once when its wait is cancelled
    (:func:`_wait_for`), so the driver's side sees it at its next statement
    boundary, before the Trio task runs again.
    """

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


async def _wait_for(task: asyncio.Future[T], call: _CallState) -> T:
    """Wait for ``task`` and return its outcome; a Trio cancellation ends the wait
    (and marks ``call`` cancelled), never the task.

    This is ``trio_asyncio.run_aio_future`` on an ``asyncio.shield`` of the task,
    without the shield's second future, whose callback took one more turn of the
    loop's queue: about 8 % of the CPU of a ``RETURN 1`` call.
    """
    waiter = trio.lowlevel.current_task()
    waiting = True

    def done(finished: asyncio.Future[T]) -> None:
        if waiting:  # asyncio may run this after the wait was cancelled
            trio.lowlevel.reschedule(waiter, outcome.capture(finished.result))

    def abort(_: Any) -> trio.lowlevel.Abort:
        nonlocal waiting
        waiting = False
        call.cancelled = True
        task.remove_done_callback(done)
        return trio.lowlevel.Abort.SUCCEEDED

    task.add_done_callback(done)
    result: T = await trio.lowlevel.wait_task_rescheduled(abort)
    return result


class _CallAbandoned(Exception):
    """Raised on the driver's side to roll back the transaction of a cancelled call."""


#: health checks at once, on the pool's spare connections
_HEALTH_SLOTS = 2
#: the slot of ``GraphGateway.store``: one grouped write at a time
_STORE_SLOTS = 1


class Vector(list[float]):
    """A list of floats that shows its size, not its values, in ``repr``.

    The driver formats every statement's parameters for its debug log whether that
    log is on or not (``" ".join(map(repr, fields))`` in each RUN). An embedding of
    384 floats from a model took about 0.4 ms to format, per chunk written and per
    vector search. Packed exactly as a list.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<vector of {len(self)} floats>"


class Statement(NamedTuple):
    """One Cypher statement with its parameters (never spliced into the text)."""

    query: str
    params: Mapping[str, Any] = {}


@dataclass(frozen=True)
class GraphTarget:
    """Where the graph database is and how to log in."""

    uri: str
    user: str
    password: str = field(repr=False)
    database: str


class GraphGateway:
    """Runs Cypher on the graph database. Build with :func:`open_graph`.

    ``on_statement``, if set, is called on the driver's side just before each
    statement is sent, with its index and the number of statements (``0, 1`` for
    :meth:`query`), and before a transaction's commit with ``index == count``: the
    statement boundaries, for instrumentation (the tests cut calls there). A call
    cancelled before a boundary of its transaction stops there and rolls back; a
    statement already sent runs to its end.

    ``on_call``, if set, is called as each call returns or raises, with its
    operation (``query``, ``transaction``, ``ping``), the seconds it took (the wait
    for a slot included) and, when it failed, the kind of failure (:func:`error_kind`).
    :attr:`calls_in_flight` counts the calls begun and not yet returned, and
    :attr:`waits` the time they waited for a slot of either limiter.
    """

    def __init__(
        self,
        driver: neo4j.AsyncDriver,
        loop: Any,
        *,
        database: str,
        limiter: trio.CapacityLimiter,
        query_timeout: float,
        cancel_grace: float = CANCEL_GRACE,
    ) -> None:
        self._driver = driver
        self._loop = loop
        self.database = database
        self.limiter = limiter
        self._query_timeout = query_timeout
        self._cancel_grace = cancel_grace
        self._closed = False
        self.on_statement: StatementHook | None = None
        self.on_call: CallHook | None = None
        self.waits = WaitTally()
        self._calls_in_flight = 0
        #: the health check's own slots, beside the shared limiter: the driver's pool
        #: keeps two connections beyond the shared limiter's tokens (``_pool_size``)
        self.health_limiter = trio.CapacityLimiter(_HEALTH_SLOTS)
        #: the slot of :meth:`store`, beside the shared limiter, with its own connection
        self.store_limiter = trio.CapacityLimiter(_STORE_SLOTS)

    # -- public API ----------------------------------------------------------
    async def query(self, query: str, params: Mapping[str, Any] | None = None) -> list[Record]:
        """Run one statement in an auto-commit transaction; return its records."""
        statement = Statement(query, params or {})
        return await self._call(lambda call: self._aio_query(statement, call))

    async def store(self, query: str, params: Mapping[str, Any] | None = None) -> list[Record]:
        """:meth:`query` for writes that must not wait behind reads: one slot of its
        own, beside the shared limiter.

        For writes already grouped by their caller (the session store writes the
        answers of every chat that ended meanwhile in one statement): when a
        thousand chats are searching, the answers of those that ended are still
        stored at once, instead of queueing behind the searches for a shared slot.
        """
        statement = Statement(query, params or {})
        return await self._call(
            lambda call: self._aio_query(statement, call),
            limiter=self.store_limiter,
            operation="store",
        )

    async def transaction(self, statements: Sequence[Statement]) -> list[list[Record]]:
        """Run statements in one explicit transaction: all of them commit, or none.

        A transaction that loses a race with another client's (a deadlock, a
        concurrent change to the same record, or two ``MERGE``s creating the same
        node, which a unique index refuses to one of them) was rolled back, and is run
        again, as the driver's managed transactions do: a few times, with jittered
        back-off, each try taking its own slot of the limiter.
        """
        todo = list(statements)
        async for attempt in stamina.retry_context(
            on=(GraphTransient, GraphConstraintError),
            attempts=_TRANSACTION_ATTEMPTS,
            timeout=None,  # deadlines are the caller's cancel scopes
            wait_initial=0.02,
            wait_max=0.5,
        ):
            with attempt:
                return await self._call(
                    lambda call: self._aio_transaction(todo, call), operation="transaction"
                )
        raise AssertionError("stamina gives up by raising")  # pragma: no cover

    async def ping(self) -> None:
        """One trivial round trip; raises :class:`GraphUnavailable` if it fails."""
        await self._ping(self.limiter)

    async def health_ping(self) -> None:
        """:meth:`ping` for the health check: it never queues behind the shared limiter.

        With every shared slot held by slow queries, the check still gets a
        connection and tells the truth about the database, under its own small
        limiter.
        """
        await self._ping(self.health_limiter)

    @property
    def calls_in_flight(self) -> int:
        """Calls begun (waiting for a slot, or running) and not yet returned."""
        return self._calls_in_flight

    @property
    def closed(self) -> bool:
        return self._closed

    # -- plumbing ------------------------------------------------------------
    async def _ping(self, limiter: trio.CapacityLimiter) -> None:
        statement = Statement("RETURN 1 AS ok")
        rows = await self._call(
            lambda call: self._aio_query(statement, call), limiter=limiter, operation="ping"
        )
        if not rows or rows[0].get("ok") != 1:
            raise GraphUnavailable(f"graph database answered {rows!r} to RETURN 1")

    async def _call(
        self,
        work: Callable[[_CallState], Coroutine[Any, Any, T]],
        *,
        limiter: trio.CapacityLimiter | None = None,
        operation: str = "query",
    ) -> T:
        """Run ``work`` on the driver's loop under ``limiter`` (the shared one by default)."""
        if self._closed:
            raise ResourceClosed("the graph gateway is closed")
        self._calls_in_flight += 1
        began = trio.current_time()
        failure: str | None = None
        try:
            return await self._run_call(work, limiter or self.limiter)
        except BaseException as exc:
            failure = error_kind(exc)
            raise
        finally:
            self._calls_in_flight -= 1
            if self.on_call is not None:
                self.on_call(operation, trio.current_time() - began, failure)

    async def _run_call(
        self, work: Callable[[_CallState], Coroutine[Any, Any, T]], limiter: trio.CapacityLimiter
    ) -> T:
        try:
            waiting_since = trio.current_time()
            async with limiter:
                self.waits.add(limiter, trio.current_time() - waiting_since)
                call = _CallState()
                coro = work(call)
                try:
                    task = asyncio.ensure_future(coro, loop=self._loop)
                except BaseException:
                    coro.close()  # the loop is closed: never awaited, and no warning
                    raise
                try:
                    return await _wait_for(task, call)
                except trio.Cancelled:
                    await self._finish_cancelled(task)
                    raise
        except Exception as exc:
            mapped = map_driver_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def _finish_cancelled(self, task: asyncio.Future[Any]) -> None:
        """Wait, shielded and bounded, until a cancelled call is done on the engine."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._cancel_grace):
                await self._until_done(task)
                return
            log.warning(
                "the graph engine did not finish a cancelled call within %.1f s; "
                "dropping its connection",
                self._cancel_grace,
            )
            task.cancel()
            with trio.move_on_after(_DROP_DEADLINE):
                await self._until_done(task)
                return
            log.error("dropping the connection of a cancelled graph call did not finish; left it")

    async def _until_done(self, task: asyncio.Future[Any]) -> None:
        """Wait for ``task`` without taking its outcome (a cancelled caller has no use for it)."""
        await self._loop.run_aio_coroutine(asyncio.wait([task]))
        if not task.cancelled():
            task.exception()  # retrieved: asyncio does not log it as lost

    def _neo_query(self, statement: Statement) -> neo4j.Query:
        return neo4j.Query(statement.query, timeout=self._query_timeout)

    async def _aio_query(self, statement: Statement, call: _CallState) -> list[Record]:
        if call.cancelled:
            raise _CallAbandoned
        async with self._driver.session(database=self.database) as session:
            if call.cancelled:
                raise _CallAbandoned
            if self.on_statement is not None:
                self.on_statement(0, 1)
            result = await session.run(self._neo_query(statement), dict(statement.params))
            return [_row(record) async for record in result]

    async def _aio_transaction(
        self, statements: list[Statement], call: _CallState
    ) -> list[list[Record]]:
        out: list[list[Record]] = []
        if call.cancelled:
            raise _CallAbandoned
        async with self._driver.session(database=self.database) as session:
            tx = await session.begin_transaction(timeout=self._query_timeout)
            try:
                for index, st in enumerate(statements):
                    self._boundary(index, len(statements), call)
                    result = await tx.run(st.query, dict(st.params))
                    out.append([_row(record) async for record in result])
                self._boundary(len(statements), len(statements), call)
                await tx.commit()
            except BaseException:
                if not tx.closed():
                    await tx.rollback()
                raise
            finally:
                await tx.close()
        return out

    def _boundary(self, index: int, count: int, call: _CallState) -> None:
        if self.on_statement is not None:
            self.on_statement(index, count)
        if call.cancelled:
            raise _CallAbandoned

    async def _aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_DEADLINE) as scope:
            await self._loop.run_aio_coroutine(self._driver.close())
        if scope.cancelled_caught:
            log.warning(
                "closing the graph driver took longer than %.0f s; left it", _CLOSE_DEADLINE
            )


def _row(record: neo4j.Record) -> Record:
    """A record as a dict of its values by key.

    The statements return values (properties, maps, lists), never nodes, so the
    values are kept as they are: ``Record.data()`` would walk each one looking for
    nodes to convert, at six times the cost (30 against 5 µs for a search hit).
    """
    return dict(zip(record.keys(), record, strict=True))


def error_kind(exc: BaseException) -> str:
    """The kind of a failed call, for metrics: ``transient`` (a lost race, tried again),
    ``unavailable``, ``query``, ``constraint``, ``closed``, ``cancelled`` (the caller
    gave up; not the graph's fault) or ``other``."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return "cancelled" if rest is None else "other"
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (trio.Cancelled, "cancelled"),
        (GraphTransient, "transient"),
        (GraphUnavailable, "unavailable"),
        (GraphConstraintError, "constraint"),
        (GraphQueryError, "query"),
        (ResourceClosed, "closed"),
    )
    return next((kind for cls, kind in kinds if isinstance(exc, cls)), "other")


def _pool_size(limiter: trio.CapacityLimiter) -> int:
    """Enough connections for every limiter slot, plus the health check's two and the
    store's."""
    total = limiter.total_tokens
    return 100 if math.isinf(total) else max(int(total) + _HEALTH_SLOTS + _STORE_SLOTS, 4)


@asynccontextmanager
async def open_graph(
    target: GraphTarget,
    *,
    loop: Any,
    limiter: trio.CapacityLimiter,
    query_timeout: float,
    cancel_grace: float = CANCEL_GRACE,
) -> AsyncIterator[GraphGateway]:
    """Open the driver on ``loop``, verify it with one round trip, and close it on exit.

    ``loop`` is the trio-asyncio loop object that owns the driver. ``cancel_grace``:
    how long a cancelled call waits for the engine to finish before its connection
    is dropped (see the module docstring).
    """

    async def make() -> neo4j.AsyncDriver:
        return neo4j.AsyncGraphDatabase.driver(
            target.uri,
            auth=(target.user, target.password),
            connection_acquisition_timeout=max(1.0, min(60.0, query_timeout)),
            connection_timeout=10.0,
            max_connection_pool_size=_pool_size(limiter),
        )

    try:
        driver = await loop.run_aio_coroutine(make())
    except Exception as exc:
        raise GraphUnavailable(f"cannot create the graph driver for {target.uri}: {exc}") from exc
    gateway = GraphGateway(
        driver,
        loop,
        database=target.database,
        limiter=limiter,
        query_timeout=query_timeout,
        cancel_grace=cancel_grace,
    )
    try:
        await gateway.ping()
        log.info("graph database ready at %s (database %s)", target.uri, target.database)
        yield gateway
    finally:
        await gateway._aclose()
