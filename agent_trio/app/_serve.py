"""``python -m agent_trio serve``: Hypercorn's Trio worker, run here, stopped by signals.

The sockets are bound first, so a busy port is reported (one line, status 1)
before anything starts. Then ``trio.run`` runs Hypercorn's ``worker_serve`` with a
shutdown trigger that returns on the first SIGTERM or SIGINT, whether the shell
ignored SIGINT or not: open chat streams end at once (``shutting_down``), other
in-flight requests get ``graceful_timeout``, then the service closes in order. A
signal that arrives while the service starts stops it as soon as it is up.
"""

from __future__ import annotations

import signal
import sys
from functools import partial

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from agent_trio.app._context import streams_of
from agent_trio.app._factory import create_app
from agent_trio.app._process import is_lifespan_failure, wait_for_stop_signal

__all__ = ["serve"]


def serve(config: Config) -> int:
    """Serve the app with ``config`` until SIGTERM or SIGINT; return the exit status."""
    try:
        sockets = config.create_sockets()
    except OSError as exc:
        where = ", ".join(config.bind)
        print(f"agent-trio: cannot serve on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.listen(config.backlog)
        trio.run(_serve, config, sockets)
    except BaseException as exc:
        if is_lifespan_failure(exc):
            return 1  # the app printed why, in one line
        raise
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
            sock.close()
    return 0


async def _serve(config: Config, sockets: Sockets) -> None:
    app = create_app(owns_process=True, serve_command=True)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, "asgi"),
            config,
            sockets=sockets,
            shutdown_trigger=partial(wait_for_stop_signal, signals, streams_of(app).close),
        )
