"""One engine per data directory: an exclusive ``flock`` held for the engine's lifetime."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from agent_trio._errors import DataDirLocked

__all__ = ["hold_data_dir"]


@contextlib.contextmanager
def hold_data_dir(data_dir: Path, lock_file: Path) -> Iterator[None]:
    """Hold the data directory's lock, with our pid written in the lock file.

    Raises :class:`DataDirLocked` at once when another process holds it. The lock
    belongs to the open file: it is released when the file is closed, and when the
    process dies however it dies. ``os.open`` makes the descriptor non-inheritable,
    so the engine process does not keep the lock alive after we are gone.
    """
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(data_dir, _read_holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _read_holder(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _locked(data_dir: Path, holder: int | None) -> DataDirLocked:
    who = f"process {holder}" if holder is not None else "another process"
    stop = f"stop process {holder}" if holder is not None else "stop the other process"
    return DataDirLocked(
        f"the data directory {data_dir} is in use by {who}, which runs an embedded "
        f"engine on it: set AGENT_DATA_DIR to another directory or {stop}"
    )
