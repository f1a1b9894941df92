"""The graph gateway: the only code that touches the neo4j driver.

The driver is asyncio code. It lives on the trio-asyncio loop that the service
opened, and every call reaches it through that loop object
(``loop.run_aio_coroutine``): request tasks do not inherit the loop's context, so
the ambient ``trio_asyncio`` helpers would not find it. Each call runs under the
graph ``CapacityLimiter`` and inside the caller's cancel scope; a Trio
cancellation becomes an asyncio cancellation of the driver call, and the limiter
slot comes back when the ``async with`` exits, whatever happened.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import neo4j
import trio

from agent_trio._errors import GraphUnavailable, ResourceClosed
from agent_trio.graph._errors import map_driver_error

__all__ = ["GraphGateway", "GraphTarget", "Record", "Statement", "open_graph"]

log = logging.getLogger("agent_trio.graph")

Record = dict[str, Any]
T = TypeVar("T")

#: how long closing the driver may take before we give up on it
_CLOSE_DEADLINE = 5.0
#: health checks at once, on the pool's spare connections
_HEALTH_SLOTS = 2


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
    """Runs Cypher on the graph database. Build with :func:`open_graph`."""

    def __init__(
        self,
        driver: neo4j.AsyncDriver,
        loop: Any,
        *,
        database: str,
        limiter: trio.CapacityLimiter,
        query_timeout: float,
    ) -> None:
        self._driver = driver
        self._loop = loop
        self.database = database
        self.limiter = limiter
        self._query_timeout = query_timeout
        self._closed = False
        #: the health check's own slots, beside the shared limiter: the driver's pool
        #: keeps two connections beyond the shared limiter's tokens (``_pool_size``)
        self.health_limiter = trio.CapacityLimiter(_HEALTH_SLOTS)

    # -- public API ----------------------------------------------------------
    async def query(self, query: str, params: Mapping[str, Any] | None = None) -> list[Record]:
        """Run one statement in an auto-commit transaction; return its records."""
        return await self._call(self._aio_query(Statement(query, params or {})))

    async def transaction(self, statements: Sequence[Statement]) -> list[list[Record]]:
        """Run statements in one explicit transaction: all of them commit, or none."""
        return await self._call(self._aio_transaction(list(statements)))

    async def ping(self) -> None:
        """One trivial round trip; raises :class:`GraphUnavailable` if it fails."""
        rows = await self.query("RETURN 1 AS ok")
        if not rows or rows[0].get("ok") != 1:
            raise GraphUnavailable(f"graph database answered {rows!r} to RETURN 1")

    async def health_ping(self) -> None:
        """:meth:`ping` for the health check: it never queues behind the shared limiter.

        With every shared slot held by slow queries, the check still gets a
        connection and tells the truth about the database, under its own small
        limiter.
        """
        if self._closed:
            raise ResourceClosed("the graph gateway is closed")
        coro = self._aio_query(Statement("RETURN 1 AS ok"))
        try:
            async with self.health_limiter:
                rows: list[Record] = await self._loop.run_aio_coroutine(coro)
        except trio.Cancelled:
            raise
        except Exception as exc:
            mapped = map_driver_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            coro.close()  # no-op if it ran; avoids "never awaited" if it did not
        if not rows or rows[0].get("ok") != 1:
            raise GraphUnavailable(f"graph database answered {rows!r} to RETURN 1")

    def statistics(self) -> dict[str, Any]:
        stats = self.limiter.statistics()
        return {
            "borrowed": stats.borrowed_tokens,
            "total": stats.total_tokens,
            "waiting": stats.tasks_waiting,
        }

    @property
    def closed(self) -> bool:
        return self._closed

    # -- plumbing ------------------------------------------------------------
    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise ResourceClosed("the graph gateway is closed")
        try:
            async with self.limiter:
                result: T = await self._loop.run_aio_coroutine(coro)
                return result
        except trio.Cancelled:
            raise
        except Exception as exc:
            mapped = map_driver_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            coro.close()  # no-op if it ran; avoids "never awaited" if it did not

    def _neo_query(self, statement: Statement) -> neo4j.Query:
        return neo4j.Query(statement.query, timeout=self._query_timeout)

    async def _aio_query(self, statement: Statement) -> list[Record]:
        async with self._driver.session(database=self.database) as session:
            result = await session.run(self._neo_query(statement), dict(statement.params))
            return [record.data() async for record in result]

    async def _aio_transaction(self, statements: list[Statement]) -> list[list[Record]]:
        out: list[list[Record]] = []
        async with self._driver.session(database=self.database) as session:
            tx = await session.begin_transaction(timeout=self._query_timeout)
            try:
                for st in statements:
                    result = await tx.run(st.query, dict(st.params))
                    out.append([record.data() async for record in result])
                await tx.commit()
            except BaseException:
                if not tx.closed():
                    await tx.rollback()
                raise
            finally:
                await tx.close()
        return out

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


def _pool_size(limiter: trio.CapacityLimiter) -> int:
    """Enough connections for every limiter slot, plus the health check's two."""
    total = limiter.total_tokens
    return 100 if math.isinf(total) else max(int(total) + _HEALTH_SLOTS, 4)


@asynccontextmanager
async def open_graph(
    target: GraphTarget,
    *,
    loop: Any,
    limiter: trio.CapacityLimiter,
    query_timeout: float,
) -> AsyncIterator[GraphGateway]:
    """Open the driver on ``loop``, verify it with one round trip, and close it on exit.

    ``loop`` is the trio-asyncio loop object that owns the driver.
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
        driver, loop, database=target.database, limiter=limiter, query_timeout=query_timeout
    )
    try:
        await gateway.ping()
        log.info("graph database ready at %s (database %s)", target.uri, target.database)
        yield gateway
    finally:
        await gateway._aclose()
