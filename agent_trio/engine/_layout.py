"""Where the embedded engine keeps its files, all under ``AGENT_DATA_DIR``.

- ``engine.lock``: locked while an engine runs; holds the holder's pid.
- ``engine-password``: the generated root password (mode 0600).
- ``arcadedb/``: the engine's root (``config/``, ``databases/``, ``backups/``, ``log/``)
  and ``arcadedb/logging.properties``, its console-only log configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATABASE", "USER", "EngineLayout"]

#: the database the service uses, over Bolt and HTTP
DATABASE = "agent"
USER = "root"

_LOGGING_PROPERTIES = """\
# Written by agent-trio at every start. The engine logs to the console only, one
# JSON object a line (arcadedb.server.logFormat=json); agent-trio reads its output
# and logs it under "agent_trio.engine".
handlers = java.util.logging.ConsoleHandler
.level = INFO
com.arcadedb.level = INFO
io.undertow.level = WARNING
org.xnio.level = WARNING
org.jboss.level = WARNING
java.util.logging.ConsoleHandler.level = INFO
"""


@dataclass(frozen=True)
class EngineLayout:
    data_dir: Path

    @classmethod
    def create(cls, data_dir: Path) -> EngineLayout:
        """Resolve ``data_dir`` (the engine runs elsewhere) and create what is missing."""
        layout = cls(data_dir.expanduser().resolve())
        layout.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        layout.root.mkdir(exist_ok=True)
        return layout

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "engine.lock"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "engine-password"

    @property
    def root(self) -> Path:
        return self.data_dir / "arcadedb"

    @property
    def users_file(self) -> Path:
        return self.root / "config" / "server-users.jsonl"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def logging_config(self) -> Path:
        return self.root / "logging.properties"

    def write_logging_config(self) -> None:
        self.logging_config.write_text(_LOGGING_PROPERTIES, encoding="utf-8")
