"""Starting the real server for a benchmark, and naming the machine a run was on.

``start_server`` runs ``hypercorn --config hypercorn.toml agent_trio.app:app`` on a
port of its own, in an environment without the caller's graph, LLM and embedding
settings (a benchmark sets the ones it measures), from the data directory's parent.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

__all__ = [
    "HYPERCORN",
    "ROOT",
    "free_port",
    "machine",
    "server_command",
    "server_env",
    "start_server",
]

ROOT = Path(__file__).resolve().parent.parent
HYPERCORN = Path(sys.executable).parent / "hypercorn"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment less its graph, LLM and embedding settings, plus ``settings``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("NEO4J_", "LLM_", "EMBEDDING_"))
    }
    env.update(settings, AGENT_DATA_DIR=str(data_dir))
    return env


def server_command(port: int) -> list[str]:
    """``hypercorn --config hypercorn.toml agent_trio.app:app`` on ``port`` of loopback."""
    return [
        str(HYPERCORN),
        "--config",
        str(ROOT / "hypercorn.toml"),
        "--bind",
        f"127.0.0.1:{port}",
        "agent_trio.app:app",
    ]


def start_server(
    data_dir: Path, port: int, env: dict[str, str], *, stderr: IO[bytes] | int | None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        server_command(port),
        cwd=data_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
    )


def machine(*, shared: bool = False) -> str:
    """CPUs, Python, system and commit, for a report."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpus = f"{os.cpu_count()} CPUs" + (" (shared)" if shared else "")
    return f"{cpus}, Python {platform.python_version()}, {platform.system()}, commit {commit}"
