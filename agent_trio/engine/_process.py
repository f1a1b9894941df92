"""A child process that cannot outlive us.

``subprocess.Popen`` is called directly from the Trio thread, never from a worker
thread: the Linux parent-death signal is tied to the *thread* that forked, and
Trio's idle worker threads exit after a few seconds, which would kill the child
(``trio.lowlevel.open_process`` and ``trio.run_process`` fork in a worker thread).
Exit is awaited on a pidfd, so no thread waits for the child either.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

__all__ = ["ChildProcess"]

_log = logging.getLogger("agent_trio.engine")

_PR_SET_PDEATHSIG = 1
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
        in order, instead of both receiving SIGINT at once.
        """
        read_fd, write_fd = os.pipe()  # both non-inheritable; Popen dups write_fd to 1 and 2
        try:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
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


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when we die.

    Everything is looked up before the fork; the child only makes the prctl call,
    then checks that we did not die before it took effect.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(127)

    return preexec
