"""Mapping of neo4j driver errors to our exception tree (the boundary)."""

from __future__ import annotations

import neo4j.exceptions as neo

from agent_trio._errors import (
    GraphConstraintError,
    GraphError,
    GraphQueryError,
    GraphTransient,
    GraphUnavailable,
)

__all__ = ["map_driver_error"]

_UNAVAILABLE = (
    neo.ServiceUnavailable,
    neo.SessionExpired,
    neo.ConnectionPoolError,
    neo.AuthError,
    OSError,
    EOFError,
)


def map_driver_error(exc: BaseException) -> GraphError | None:
    """Return our error for a driver error, or ``None`` if it is not one of theirs."""
    message = _first_line(exc)
    if isinstance(exc, neo.TransientError):
        return GraphTransient(f"graph database transaction failed, may succeed again: {message}")
    if isinstance(exc, neo.ConstraintError):
        return GraphConstraintError(message)
    if isinstance(exc, _UNAVAILABLE):
        return GraphUnavailable(f"graph database unavailable: {message}")
    if isinstance(exc, neo.Neo4jError):
        code = exc.code or ""
        if "ConstraintValidationFailed" in code:
            return GraphConstraintError(message)
        return GraphQueryError(message)
    if isinstance(exc, neo.DriverError):
        return GraphUnavailable(f"graph driver error: {message}")
    return None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
