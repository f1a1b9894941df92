"""The command line that starts the engine: JVM flags and ArcadeDB settings.

Chosen for a single-node engine that only this process talks to, on loopback:

JVM flags
    ``-Xmx``  the heap cap from ``ENGINE_HEAP_MB``; ArcadeDB sizes its page cache
    from it (a quarter of the heap).
    ``-XX:+UseCompactObjectHeaders``  8-byte object headers (JDK 25): a smaller heap
    for the same graph, as the arcadedb-embedded wheel itself uses.
    ``-XX:+ExitOnOutOfMemoryError``  after an OOM the engine's state is unknown; exit,
    so the owner reports it instead of talking to a half-broken server.
    ``-XX:ErrorFile``  crash reports go to the engine's log directory, not the cwd.
    ``--add-modules jdk.incubator.vector``, ``--enable-native-access``, ``--add-opens``
    what ArcadeDB's own ``server.sh`` passes (SIMD vector distances, internals).
    Not used, measured: ``-XX:TieredStopAtLevel=1`` (C1 only) starts ~0.3 s faster
    but gives up the optimising compiler for a process that runs for hours;
    ``-XX:+UseSerialGC`` did not start faster and used more memory at idle;
    ``-Xshare`` has no base CDS archive to map in the bundled runtime.

ArcadeDB settings
    every listener on the configured address (127.0.0.1 unless ``python -m agent_trio
    engine --host`` says otherwise) and ports; only the Bolt plugin
    (no Postgres, Redis, gRPC, HA); ``production`` mode (the WAL is flushed at
    commit, no Studio, no stack traces in HTTP errors); the database created at
    start by ``defaultDatabases`` and used by default over Bolt; the root password
    read from its 0600 file, never passed on the command line; console logs as
    JSON lines (levels survive the pipe) and no log files; no scripting
    engine, no metrics registry, no support-portal registration; Cypher ``LOAD CSV``
    may read neither local files nor URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent_trio.engine._layout import DATABASE, EngineLayout
from agent_trio.engine._runtime import Runtime

__all__ = ["Ports", "build_command"]

_MAIN_CLASS = "com.arcadedb.server.ArcadeDBServer"

_JVM_FLAGS = (
    "-XX:+UseCompactObjectHeaders",
    "-XX:+ExitOnOutOfMemoryError",
    "--add-modules=jdk.incubator.vector",
    "--enable-native-access=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.nio.channels.spi=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
)

_FIXED_SETTINGS = {
    "arcadedb.server.mode": "production",
    "arcadedb.server.plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
    "arcadedb.ha.enabled": "false",
    "arcadedb.server.defaultDatabases": f"{DATABASE}[]",
    "arcadedb.bolt.defaultDatabase": DATABASE,
    "arcadedb.server.logFormat": "json",
    "arcadedb.polyglotEngineEnabled": "false",
    "arcadedb.serverMetrics": "false",
    "arcadedb.support.autoRegister": "false",
    "arcadedb.opencypher.loadCsv.allowFileUrls": "false",
    "arcadedb.opencypher.loadCsv.allowRemoteUrls": "false",
}


@dataclass(frozen=True)
class Ports:
    http: int
    bolt: int


def build_command(
    runtime: Runtime,
    layout: EngineLayout,
    ports: Ports,
    *,
    host: str,
    heap_mb: int,
    extra_jvm_args: Sequence[str] = (),
) -> list[str]:
    settings = {
        **_FIXED_SETTINGS,
        "arcadedb.server.rootPath": str(layout.root),
        "arcadedb.server.rootPasswordPath": str(layout.password_file),
        "arcadedb.server.logsDirectory": str(layout.log_dir),
        "arcadedb.server.httpIncomingHost": host,
        "arcadedb.server.httpIncomingPort": str(ports.http),
        "arcadedb.bolt.host": host,
        "arcadedb.bolt.port": str(ports.bolt),
    }
    return [
        str(runtime.java),
        f"-Xmx{heap_mb}m",
        *_JVM_FLAGS,
        f"-XX:ErrorFile={layout.log_dir / 'hs_err_pid%p.log'}",
        f"-Djava.util.logging.config.file={layout.logging_config}",
        *(f"-D{key}={value}" for key, value in settings.items()),
        *extra_jvm_args,
        "-cp",
        runtime.classpath,
        _MAIN_CLASS,
    ]
