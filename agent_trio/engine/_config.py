"""How to run the embedded engine: a small typed config, as httpx has ``Timeout``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EngineConfig"]


@dataclass(frozen=True)
class EngineConfig:
    """Where the engine keeps its data, and its limits.

    The service builds it from ``AGENT_DATA_DIR`` and the ``ENGINE_*`` settings.
    """

    #: one engine per directory; created if missing
    data_dir: Path
    #: the JVM's heap cap (``ENGINE_HEAP_MB``)
    heap_mb: int = 512
    #: how long the engine may take to become ready (``ENGINE_START_TIMEOUT_SECONDS``)
    start_timeout: float = 60.0
    #: SIGTERM, then SIGKILL after this long (``ENGINE_STOP_GRACE_SECONDS``)
    stop_grace: float = 5.0
