"""A child process that cannot outlive us.

The kernel kills the child when we die: the command runs under util-linux's
``setpriv --pdeathsig KILL``, which sets the Linux parent-death signal and then
executes it (the signal survives ``exec``). No Python code runs between ``fork``
and ``exec`` (a ``preexec_fn`` would, and is unsafe while other threads run, as
the thread importing the local model's libraries does during the engine's
start). A tiny ``sh`` step between ``setpriv`` and the command checks that its
parent is still us: if we died before the signal was set, it exits at once
instead of running orphaned. ``setpriv`` is part of util-linux, installed on
every Debian-like system; without it the engine refuses to start with an
:class:`EngineError` that says so (an engine that may outlive a killed service
keeps the data directory busy, so there is no silent fallback).

``subprocess.Popen`` is called directly from the Trio thread, never from a worker
thread: the Linux parent-death signal is tied to the *thread* that forked, and
Trio's idle worker threads exit after a few seconds, which would kill the child
(``trio.lowlevel.open_process`` and ``trio.run_process`` fork in a worker thread).
Exit is awaited on a pidfd, so no thread waits for the child either.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import trio

from agent_trio._errors import EngineError

__all__ = ["ChildProcess", "find_setpriv"]

_log = logging.getLogger("agent_trio.engine")

#: where util-linux installs setpriv, should PATH not name it
_SETPRIV_FALLBACKS = ("/usr/bin/setpriv", "/bin/setpriv")
#: run by ``sh -c`` with our pid and the command: go on only if we are still its parent
_PARENT_CHECK = '[ "$PPID" = "$1" ] || exit 125; shift; exec "$@"'
#: how long to wait for the kernel to reap a SIGKILLed child before giving up on it
_KILL_WAIT_SECONDS = 5.0


class ChildProcess:
    """A running child with merged stdout/stderr on a pipe we read from Trio."""

    def __init__(self, popen: subprocess.Popen[bytes], output_fd: int) -> None:
        self._popen = popen
        self._pidfd = os.pidfd_open(popen.pid)
        #: the read end of the child's stdout+stderr pipe; the caller owns it from here
        self.output_fd = output_fd

    @classmethod
    def spawn(cls, command: Sequence[str], *, cwd: Path) -> ChildProcess:
        """Start ``command`` in its own session, killed by the kernel if we die.

        Its own session: a Ctrl-C in our terminal reaches us, and we stop the child
        in order, instead of both receiving SIGINT at once. Raises
        :class:`EngineError` when ``setpriv`` is missing, ``OSError`` when it cannot
        be run.
        """
        setpriv = find_setpriv()
        if shutil.which(command[0]) is None:  # said here: past setpriv it is only an exit status
            raise FileNotFoundError(errno.ENOENT, "no such executable", command[0])
        guarded = [
            setpriv,
            "--pdeathsig",
            "KILL",
            "--",
            "/bin/sh",
            "-c",
            _PARENT_CHECK,
            "agent-trio-child",
            str(os.getpid()),
            *command,
        ]
        read_fd, write_fd = os.pipe()  # both non-inheritable; Popen dups write_fd to 1 and 2
        try:
            popen = subprocess.Popen(
                guarded,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return cls(popen, read_fd)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (``-N`` for signal N), else ``None``."""
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the child to exit, reap it, and return its exit status."""
        while (code := self._popen.poll()) is None:
            await trio.lowlevel.wait_readable(self._pidfd)
        return code

    async def stop(self, grace: float) -> int | None:
        """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL; reap. Idempotent.

        Returns the exit status, or ``None`` if even SIGKILL did not end it in time.
        """
        for sig, wait_for in ((signal.SIGTERM, grace), (signal.SIGKILL, _KILL_WAIT_SECONDS)):
            if self.returncode is not None:
                break
            if sig == signal.SIGKILL:
                _log.warning(
                    "engine pid %d ignored SIGTERM for %.1f s; killing it", self.pid, grace
                )
            self._popen.send_signal(sig)
            with trio.move_on_after(wait_for):
                await self.wait()
        if self.returncode is None:
            _log.error("engine pid %d did not exit after SIGKILL", self.pid)
        return self.returncode

    def close(self) -> None:
        """Release the pidfd. Call after :meth:`stop`, with no task waiting."""
        if self._pidfd >= 0:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


def find_setpriv() -> str:
    """The path of util-linux's ``setpriv``; :class:`EngineError` if it is not installed."""
    found = shutil.which("setpriv") or next(
        (path for path in _SETPRIV_FALLBACKS if os.access(path, os.X_OK)), None
    )
    if found is None:
        raise EngineError(
            "the embedded engine needs setpriv (util-linux) so that the engine cannot "
            "outlive this process: install util-linux, or set NEO4J_URI to use an "
            "external graph server"
        )
    return found
