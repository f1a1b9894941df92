"""``python -m agent_trio engine``: the graph engine as a server of its own.

It runs ArcadeDB with its Bolt plugin on ``AGENT_DATA_DIR`` in the foreground, as the
service runs its embedded engine, until SIGTERM or SIGINT (Ctrl-C). Several service
instances can then share it: they reach it through ``NEO4J_URI`` (Bolt) and
``ARCADEDB_HTTP_URL`` (where they create their indexes), as they would reach a
Neo4j server. Once it is ready, the settings they need are printed to stdout, one
``NAME=value`` a line; the password stays in its file (mode 0600), whose path is
printed instead.

Exit status: 0 when stopped by a signal, 1 when the engine could not start or
died, 2 on invalid settings.
"""

from __future__ import annotations

import dataclasses
import signal
import sys

import trio

from agent_trio._errors import AgentTrioError, ConfigError, leaf_errors
from agent_trio._settings import load_settings
from agent_trio.engine import EngineConfig, EngineInfo, run_embedded_engine
from agent_trio.service import engine_config

__all__ = ["run_engine_command"]


def run_engine_command(host: str, bolt_port: int, http_port: int) -> int:
    """Run the engine until a signal; return the exit status."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        _error(str(exc))
        return 2
    config = dataclasses.replace(
        engine_config(settings), host=host, bolt_port=bolt_port, http_port=http_port
    )
    status = 0
    try:
        trio.run(_run, config)
    except* AgentTrioError as group:
        for error in leaf_errors(group):
            _error(str(error).splitlines()[0])
        status = 1
    return status


async def _run(config: EngineConfig) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            info: EngineInfo = await nursery.start(run_embedded_engine, config)
            _print_settings(info)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()  # the engine stops itself, shielded


def _print_settings(info: EngineInfo) -> None:
    print(f"NEO4J_URI={info.bolt_uri}")
    print(f"NEO4J_USER={info.user}")
    print(f"NEO4J_DATABASE={info.database}")
    print(f"ARCADEDB_HTTP_URL={info.http_url}")
    print(f"# NEO4J_PASSWORD is in {info.password_file}")
    sys.stdout.flush()


def _error(message: str) -> None:
    print(f"agent-trio engine: {message}", file=sys.stderr)
