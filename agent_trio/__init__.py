"""agent-trio: a graph-RAG agent service on Trio structured concurrency."""

from agent_trio._errors import (
    AgentTrioError,
    CircuitOpen,
    ConfigError,
    DataDirLocked,
    EngineError,
    GraphConstraintError,
    GraphError,
    GraphQueryError,
    GraphTransient,
    GraphUnavailable,
    IngestError,
    ResourceClosed,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from agent_trio._settings import Settings, load_settings
from agent_trio._version import __version__

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
    "Settings",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "__version__",
    "load_settings",
]
