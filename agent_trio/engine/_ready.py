"""Is the engine ready? Its HTTP API takes our password and has the database, and
its Bolt port answers a Bolt handshake."""

from __future__ import annotations

import enum

import httpx

from agent_trio._errors import EngineError
from agent_trio.engine._bolt import bolt_handshake

__all__ = ["Readiness", "probe"]

#: per-request bounds while polling; the caller's deadline bounds the whole start
PROBE_TIMEOUT = httpx.Timeout(2.0)


class Readiness(enum.Enum):
    NOT_YET = "not yet"
    READY = "ready"


async def probe(
    client: httpx.AsyncClient, bolt_host: str, bolt_port: int, database: str
) -> Readiness:
    """One readiness check.

    ``client`` has the engine's base URL and root credentials. Raises
    :class:`EngineError` when the engine answers in a way that waiting will not fix.
    """
    try:
        ready = await client.get("/api/v1/ready")
        if ready.status_code != 204:  # 503 until every database is loaded
            return Readiness.NOT_YET
        exists = await client.get(f"/api/v1/exists/{database}")
    except httpx.TransportError:
        return Readiness.NOT_YET
    _check_exists(exists, database)
    try:
        await bolt_handshake(bolt_host, bolt_port)
    except OSError:
        return Readiness.NOT_YET
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    return Readiness.READY


def _check_exists(response: httpx.Response, database: str) -> None:
    if response.status_code in (401, 403):
        raise EngineError(
            "the engine refused the root password stored in the data directory "
            f"(HTTP {response.status_code}); the password file and the engine's users "
            "file must come from the same data directory"
        )
    if response.status_code != 200:
        raise EngineError(f"the engine answered HTTP {response.status_code} to a database check")
    try:
        exists = response.json().get("result") is True
    except ValueError as exc:
        raise EngineError("the engine answered a database check with malformed JSON") from exc
    if not exists:
        raise EngineError(f"the engine started without its database {database!r}")
