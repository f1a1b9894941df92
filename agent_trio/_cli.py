"""The command line: ``python -m agent_trio serve|ingest|engine|chat``.

Exit codes: 0 success, 1 failure (for ``ingest``: any document failed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent_trio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API (same as hypercorn)")
    serve.add_argument("--config", type=Path, default=Path("hypercorn.toml"))
    serve.add_argument("--bind", action="append", help="address to bind, e.g. 127.0.0.1:8058")

    ingest = commands.add_parser("ingest", help="ingest .md/.markdown/.txt files and folders")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--clean", action="store_true", help="delete every document first")

    engine = commands.add_parser(
        "engine",
        help="run the graph engine as a server of its own, for several instances to share",
        description="Run ArcadeDB (with its Bolt plugin) on AGENT_DATA_DIR until SIGTERM or "
        "Ctrl-C; once it is ready, print the NEO4J_URI, NEO4J_USER, NEO4J_DATABASE and "
        "ARCADEDB_HTTP_URL that service instances need, and where the password is.",
    )
    engine.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    engine.add_argument("--bolt-port", type=_port, default=7687, help="0 picks a free port")
    engine.add_argument("--http-port", type=_port, default=2480, help="0 picks a free port")

    chat = commands.add_parser(
        "chat",
        help="interactive client of /chat/stream",
        description="Ask questions; Ctrl-C cancels an answer, Ctrl-D quits. The server's "
        "API key, if it has one, is read from AGENT_TRIO_API_KEY (or API_KEY).",
    )
    chat.add_argument("--url", default="http://127.0.0.1:8058", help="the server's address")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "chat":
        from agent_trio.client import api_key_from_env, run_chat

        return run_chat(args.url, api_key=api_key_from_env())
    if args.command == "serve":
        # the app configures logging (LOG_LEVEL, LOG_FORMAT), as under ``hypercorn``
        return _serve(args.config, args.bind)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from agent_trio.upstream import use_own_retry_logs

    use_own_retry_logs()
    if args.command == "engine":
        from agent_trio._engine_cli import run_engine_command

        return run_engine_command(args.host, args.bolt_port, args.http_port)
    if args.command == "ingest":
        from agent_trio._ingest_cli import run_ingest_command

        return run_ingest_command(args.paths, clean=args.clean)
    raise AssertionError(f"unknown command {args.command!r}")  # argparse refused it already


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return port


def _serve(config_path: Path, bind: list[str] | None) -> int:
    from hypercorn.config import Config

    from agent_trio.app._serve import serve

    config = Config.from_toml(config_path) if config_path.exists() else Config()
    if not config_path.exists():
        config.bind = ["127.0.0.1:8058"]
    if bind:
        config.bind = bind
    return serve(config)
