"""What the app does when it owns the process (the app Hypercorn serves).

Hypercorn serving in-process (``workers = 0``) stops gracefully on a
KeyboardInterrupt in Trio's main task, which is what Trio makes of SIGINT. It
installs nothing for SIGTERM, whose default action kills the process at once, and
a server started in the background by a shell inherits SIGINT ignored, so then
neither signal would stop it. We catch both and interrupt the main task the way
SIGINT does, so every stop is the same: in-flight requests get
``graceful_timeout``, then the service closes in order.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import trio
from trio._core import _run as trio_run  # deliver_ki: see _interrupt_main_task

from agent_trio.upstream import use_own_retry_logs

__all__ = ["configure_logging", "exit_after_failed_startup", "relay_stop_signals"]


@trio.lowlevel.enable_ki_protection
async def relay_stop_signals() -> None:
    """Until cancelled, turn SIGTERM (and SIGINT, where it is ignored) into Ctrl+C.

    Signals whose handling someone else chose are left alone. KI protection keeps
    the interrupt from being raised in this task instead of the main one.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    wanted = [
        signum
        for signum, unhandled in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.SIG_IGN))
        if signal.getsignal(signum) is unhandled
    ]
    if not wanted:
        return
    with trio.open_signal_receiver(*wanted) as signals:
        async for _ in signals:
            _interrupt_main_task()


def _interrupt_main_task() -> None:
    """Deliver a KeyboardInterrupt to Trio's main task, as Trio does for SIGINT.

    Trio has no public call for this; its run loop's ``deliver_ki`` is what its own
    SIGINT handler calls. Without it, send ourselves SIGINT (which works where
    SIGINT is not ignored).
    """
    runner = getattr(getattr(trio_run, "GLOBAL_RUN_CONTEXT", None), "runner", None)
    deliver = getattr(runner, "deliver_ki", None)
    if callable(deliver):
        deliver()
    else:
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
    use_own_retry_logs()
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
