"""How to run the embedded engine: a small typed config, as httpx has ``Timeout``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EngineConfig"]


@dataclass(frozen=True)
class EngineConfig:
    """Where the engine keeps its data, and its limits.

    The service builds it from ``AGENT_DATA_DIR`` and the ``ENGINE_*`` settings;
    ``python -m agent_trio engine`` adds its address and ports.
    """

    #: one engine per directory; created if missing
    data_dir: Path
    #: the JVM's heap cap (``ENGINE_HEAP_MB``)
    heap_mb: int = 512
    #: how long the engine may take to become ready (``ENGINE_START_TIMEOUT_SECONDS``)
    start_timeout: float = 60.0
    #: SIGTERM, then SIGKILL after this long (``ENGINE_STOP_GRACE_SECONDS``)
    stop_grace: float = 5.0
    #: the address both listeners bind; the service's own engine stays on loopback
    host: str = "127.0.0.1"
    #: the Bolt and HTTP ports; 0 picks a free one (and a port taken while the engine
    #: starts is picked again), a number is used as given
    bolt_port: int = 0
    http_port: int = 0
