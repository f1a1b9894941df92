"""What the app does when it owns the process: logging, stop signals, a failed start.

Stop signals. SIGTERM and SIGINT stop the server the same way, foreground or in
the background (a shell starts background jobs with SIGINT ignored): in-flight
requests get ``graceful_timeout``, then the service closes in order. Two ways to
serve, public calls only:

- ``python -m agent_trio serve`` runs Hypercorn's Trio worker itself, with a
  shutdown trigger that returns on the first SIGTERM or SIGINT
  (:func:`wait_for_stop_signal`, ``trio.open_signal_receiver``); see ``_serve``.
- ``hypercorn --config hypercorn.toml agent_trio.app:app`` (``workers = 0``)
  serves in-process and stops gracefully on a KeyboardInterrupt in Trio's main
  task, which is what Trio makes of SIGINT, when SIGINT has Python's default
  handler as ``trio.run`` starts. Hypercorn installs nothing else in this mode.
  So, when the app is built (on import, before ``trio.run``), an ignored SIGINT
  gets Python's default handler back (:func:`keep_sigint_for_trio`); while
  serving, a task under KI protection receives SIGTERM and SIGINT and raises
  SIGINT in its own frame (:func:`relay_sigterm`): Trio's handler sees a
  protected frame and delivers the KeyboardInterrupt to the main task, exactly as
  for a Ctrl+C that lands while Trio is idle.

Either way the signal first calls ``on_signal``: the app closes its open chat
streams then (each ends with an ``error`` frame, ``shutting_down``), rather than
when Hypercorn's graceful period runs out and cancels them.

A failed start. The reason is printed as one line on stderr at once
(:func:`report_failed_startup`). The ASGI server then ends with the lifespan's failure
as an exception: ``python -m agent_trio serve`` catches it and exits 1; under the
``hypercorn`` command it is uncaught, so Python exits 1, and the exception hook
installed here keeps its traceback (which repeats the line) off the terminal.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from types import TracebackType

import trio
from hypercorn.utils import LifespanFailureError

from agent_trio._logs import LogFormat, log_handler
from agent_trio.upstream import use_own_retry_logs

__all__ = [
    "RelayTo",
    "configure_logging",
    "is_lifespan_failure",
    "keep_sigint_for_trio",
    "relay_sigterm",
    "report_failed_startup",
    "tune_garbage_collection",
    "wait_for_stop_signal",
]

log = logging.getLogger("agent_trio.app")

#: Quart logs on the logger named after the app; Hypercorn's server messages
_QUART_APP_LOGGER = "agent_trio"
_HYPERCORN_LOGGER = "hypercorn.error"

#: allocations (of objects the cyclic collector tracks, net of those freed) between
#: two collections of its youngest generation; Python's default is 700
GC_YOUNG_THRESHOLD = 10_000

_ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def keep_sigint_for_trio() -> None:
    """Give an ignored SIGINT Python's default handler back; call before ``trio.run``.

    A shell starts a background job with SIGINT ignored, and Trio then leaves
    SIGINT alone; with the default handler in place, Trio turns SIGINT into a
    KeyboardInterrupt in its main task, which Hypercorn takes as "stop".
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def tune_garbage_collection() -> None:
    """Call once the service is up: the cyclic collector leaves what exists by then
    alone, and looks at young objects less often.

    Reference counting frees almost every object a request makes; the cyclic
    collector only finds cycles, yet each of its passes walks objects that are
    alive. At 700 allocations a pass, with 16 chats in flight, its passes took
    about a tenth of the serving process's CPU (``bench/chat.py``). So the
    objects made while starting (modules, the service, a local model) move to
    the permanent generation (``gc.freeze``), and the youngest generation is
    collected every :data:`GC_YOUNG_THRESHOLD` allocations; the older
    generations keep Python's ratios.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


@trio.lowlevel.enable_ki_protection
async def relay_sigterm(on_signal: Callable[[], None] | None = None) -> None:
    """Turn the first SIGTERM or SIGINT into a KeyboardInterrupt of Trio's main task.

    Both are received here, in a KI-protected task. Then Trio's own SIGINT
    handler is put back (the receiver closes) and SIGINT is raised in this frame
    with ``signal.raise_signal``: the handler sees a protected frame and delivers
    the KeyboardInterrupt to the main task, exactly as for a Ctrl+C that lands
    while Trio is idle. Left to Trio alone, a SIGINT that lands while a task runs
    unprotected code would be raised inside that task instead, and tear down its
    nursery rather than stop the server. A SIGTERM handler someone else installed
    is left alone, and so is everything when SIGINT has no handler that Trio
    installed (then raising SIGINT would interrupt this task, not the server).
    ``on_signal`` is called first.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    sigint = signal.getsignal(signal.SIGINT)
    if sigint in (None, signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler):
        log.warning("SIGINT is not handled by Trio here, so SIGTERM stops the process at once")
        return
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        await wait_for_stop_signal(signals, on_signal)
    signal.raise_signal(signal.SIGINT)  # Trio's handler is back in place


async def wait_for_stop_signal(
    signals: AsyncIterator[int], on_signal: Callable[[], None] | None = None
) -> None:
    """Return on the first signal from ``signals`` (a Hypercorn ``shutdown_trigger``),
    once ``on_signal``, if given, was called."""
    async for signum in signals:
        log.info("%s: stopping", signal.Signals(signum).name)
        if on_signal is not None:
            on_signal()
        return


def report_failed_startup(reason: str, *, quiet_traceback: bool) -> None:
    """Say in one line on stderr why the service did not start.

    The process is ending for that reason, and what the ASGI machinery says next
    only repeats it at length, so it is kept off the terminal: Quart's log of the
    startup exception, and Hypercorn's "Running on" line (it announces its
    sockets as the failed lifespan ends). ``quiet_traceback`` is for the
    ``hypercorn`` command, where the lifespan's failure then ends the process as
    an uncaught exception: its traceback is not printed either (Python still
    exits with status 1).
    """
    print(f"agent-trio failed to start: {reason}", file=sys.stderr, flush=True)
    # first, before a relay to our handler (LOG_FORMAT=json) sees them
    logging.getLogger(_QUART_APP_LOGGER).filters.insert(0, _drop(lambda text: text == "Exception"))
    logging.getLogger(_HYPERCORN_LOGGER).filters.insert(
        0, _drop(lambda text: text.startswith("Running on"))
    )
    if quiet_traceback:
        sys.excepthook = _quiet_lifespan_failure(sys.excepthook)


def _drop(matches: Callable[[str], bool]) -> Callable[[logging.LogRecord], bool]:
    return lambda record: not matches(record.getMessage())


def _quiet_lifespan_failure(previous: _ExceptHook) -> _ExceptHook:
    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> object:
        if is_lifespan_failure(exc):
            return None
        return previous(kind, exc, tb)

    return hook


def is_lifespan_failure(exc: BaseException) -> bool:
    """True for Hypercorn's lifespan-startup failure, alone or in exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_lifespan_failure(inner) for inner in exc.exceptions)
    return isinstance(exc, LifespanFailureError)


def configure_logging(level: str, format: LogFormat = "text") -> None:
    """Send our loggers to stderr, unless someone already did.

    ``text`` is the ASGI server's format with the request appended; ``json`` is one
    object per line (``LOG_FORMAT``). Either way each line names its request. In
    ``json``, Hypercorn's own lines (its start, its errors with their tracebacks)
    go through our handler too, so that every line of the stream is an object.
    """
    use_own_retry_logs()
    logger = logging.getLogger("agent_trio")
    logger.setLevel(level)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = log_handler(format=format)
    logger.addHandler(handler)
    if format == "json":
        logging.getLogger(_HYPERCORN_LOGGER).addFilter(RelayTo(handler))


class RelayTo(logging.Filter):
    """A logger filter that hands each record to ``handler`` instead of the logger's own.

    A filter, not a handler: Hypercorn replaces its logger's handlers when it
    starts serving, after the app configured logging, and leaves its filters.
    """

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        self.handler.handle(record)
        return False
