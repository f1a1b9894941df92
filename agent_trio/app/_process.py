"""What the app does when it owns the process (the app Hypercorn serves).

Hypercorn serving in-process (``workers = 0``) stops gracefully on SIGINT but
installs nothing for SIGTERM, whose default action kills the process at once. We
relay SIGTERM as SIGINT so that both stop the server the same way: in-flight
requests get ``graceful_timeout``, then the service closes in order.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import trio

__all__ = ["configure_logging", "exit_after_failed_startup", "relay_sigterm_as_sigint"]


@trio.lowlevel.enable_ki_protection
async def relay_sigterm_as_sigint() -> None:
    """Until cancelled, turn each SIGTERM into a SIGINT for this process.

    KI protection makes Trio deliver the resulting KeyboardInterrupt to the main
    task (where Hypercorn handles it) instead of raising it in this one.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else handles SIGTERM
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            os.kill(os.getpid(), signal.SIGINT)


def exit_after_failed_startup(reason: str) -> None:
    """Say why in one line and leave with status 1.

    Everything the service had opened is closed by then; without this the ASGI
    server would print two tracebacks around the one line that matters.
    """
    logging.shutdown()
    print(f"agent-trio failed to start: {reason}", file=sys.stderr, flush=True)
    os._exit(1)


def configure_logging(level: str) -> None:
    """Send our loggers to stderr, in the ASGI server's format, unless someone already did."""
    logger = logging.getLogger("agent_trio")
    logger.setLevel(level)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S %z",
        )
    )
    logger.addHandler(handler)
