"""The embedded graph engine: ArcadeDB with its Bolt plugin, run as a child process.

Used when ``NEO4J_URI`` is unset. :func:`run_embedded_engine` starts the engine as
an :class:`EngineConfig` says, on its data directory (one engine per directory),
reports an :class:`EngineInfo` once the engine answers over HTTP and Bolt, and
stops it when cancelled. Failures are
:class:`~agent_trio.EngineError` and :class:`~agent_trio.DataDirLocked`.
"""

from agent_trio.engine._config import EngineConfig
from agent_trio.engine._info import EngineInfo
from agent_trio.engine._run import run_embedded_engine

__all__ = ["EngineConfig", "EngineInfo", "run_embedded_engine"]
