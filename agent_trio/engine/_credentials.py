"""The engine's root password: generated once per data directory, then reused."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from agent_trio._errors import EngineError

__all__ = ["load_or_create_password"]

_log = logging.getLogger("agent_trio.engine")

#: ArcadeDB accepts root passwords of 8 to 256 characters
_MIN_LENGTH = 8
_MAX_LENGTH = 256


def load_or_create_password(password_file: Path, users_file: Path) -> str:
    """Return the stored root password, creating it (mode 0600) on first use.

    ``users_file`` is where the engine keeps its users; the engine reads the password
    file only when it creates the root user, so a lost password file cannot be
    replaced while that user exists. The caller holds the data directory's lock.
    """
    if password_file.exists():
        return _read(password_file)
    if users_file.exists():
        raise EngineError(
            f"the engine's root password file {password_file} is missing, but the engine "
            f"already has a root user in {users_file}: restore the password file, or "
            f"delete {users_file} to let the engine start with a new password"
        )
    password = secrets.token_urlsafe(32)
    _write_private(password_file, password)
    return password


def _read(password_file: Path) -> str:
    mode = stat.S_IMODE(password_file.stat().st_mode)
    if mode & 0o077:
        _log.warning("%s was readable by others (mode %o); set it to 0600", password_file, mode)
        password_file.chmod(0o600)
    password = password_file.read_text(encoding="utf-8")
    if not _MIN_LENGTH <= len(password) <= _MAX_LENGTH or password != password.strip():
        raise EngineError(
            f"the engine's root password file {password_file} is not valid "
            f"({_MIN_LENGTH} to {_MAX_LENGTH} characters, no surrounding whitespace)"
        )
    return password


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start (never world-readable, not even briefly), written
    # in full, then renamed into place: a crash leaves no half-written password.
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)  # no newline: the engine reads the file verbatim
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)
