"""The exception tree of agent-trio.

Every error a dependency raises (the neo4j driver, httpx, the engine process, the
local model) is mapped to one of these at the boundary of the module that talks to
it, with the original kept as ``__cause__``. Code above that boundary, and the HTTP
layer in particular, handles only these::

    AgentTrioError
    ├── ConfigError                 invalid settings; raised at startup
    ├── ResourceClosed              we closed it: a client used after its aclose()
    ├── GraphError
    │   ├── GraphUnavailable        the graph server cannot be reached or broke the connection
    │   │   └── GraphTransient      a transaction lost a race (deadlock, concurrent change)
    │   ├── GraphQueryError         the server refused a statement (syntax, types, schema)
    │   └── GraphConstraintError    a unique constraint was violated
    ├── EngineError                 the embedded engine could not start or died
    │   └── DataDirLocked           another process runs an engine on the same data dir
    ├── UpstreamError               an LLM or embedding API failed (``.upstream`` names it)
    │   ├── UpstreamUnavailable     network errors, 5xx or 429 after retries were exhausted
    │   │   └── CircuitOpen         the breaker is open: failing fast without a request
    │   ├── UpstreamRejected        a 4xx other than 429: our request is wrong (not retried)
    │   └── UpstreamProtocolError   malformed answer: bad JSON, missing or wrong-sized vectors
    └── IngestError                 one document could not be read or ingested

Deadlines are not part of the tree: callers use ``trio.fail_after`` and get
``trio.TooSlowError``.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "AgentTrioError",
    "CircuitOpen",
    "ConfigError",
    "DataDirLocked",
    "EngineError",
    "GraphConstraintError",
    "GraphError",
    "GraphQueryError",
    "GraphTransient",
    "GraphUnavailable",
    "IngestError",
    "ResourceClosed",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "leaf_errors",
]


class AgentTrioError(Exception):
    """Base class of every error agent-trio raises on purpose."""


class ConfigError(AgentTrioError):
    """The configuration is invalid. The message names the variable."""


class ResourceClosed(AgentTrioError):
    """A resource was used after we closed it (not: the peer broke it)."""


class GraphError(AgentTrioError):
    """Base class of graph database errors."""


class GraphUnavailable(GraphError):
    """The graph database cannot be reached, or the connection broke."""


class GraphTransient(GraphUnavailable):
    """The graph failed a transaction for a passing reason (a deadlock, a concurrent
    change to the same record, a leader change); running it again may succeed."""


class GraphQueryError(GraphError):
    """The graph database refused a statement."""


class GraphConstraintError(GraphQueryError):
    """A write violated a unique constraint."""


class EngineError(AgentTrioError):
    """The embedded graph engine could not be started, or it died."""


class DataDirLocked(EngineError):
    """Another process runs an embedded engine on the same data directory."""


class UpstreamError(AgentTrioError):
    """An upstream HTTP API (LLM or embeddings) failed.

    ``upstream`` names it (``"embedding"``, ``"llm"``); ``status_code`` is the
    last HTTP status seen, if any; ``retry_after`` is the number of seconds the
    upstream asked us to wait, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        upstream: str,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.upstream = upstream
        self.status_code = status_code
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """The upstream is down, overloaded or unreachable (after retries)."""


class CircuitOpen(UpstreamUnavailable):
    """The circuit breaker is open; no request was sent."""


class UpstreamRejected(UpstreamError):
    """The upstream rejected the request with a 4xx other than 429."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered, but the answer is malformed or incomplete."""


class IngestError(AgentTrioError):
    """One document could not be read, parsed or written."""


E = TypeVar("E", bound=BaseException)


def leaf_errors(group: BaseExceptionGroup[E]) -> list[E]:
    """The exceptions of ``group`` and of the groups nested in it, in order."""
    out: list[E] = []
    for exc in group.exceptions:
        out.extend(leaf_errors(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
