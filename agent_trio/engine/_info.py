"""What a running embedded engine tells its users."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EngineInfo"]


@dataclass(frozen=True)
class EngineInfo:
    """How to reach a running engine: on loopback, unless it was told another address.

    ``password`` is kept out of ``repr()`` so that logging the info never leaks it.
    """

    bolt_uri: str
    http_url: str
    user: str
    password: str = field(repr=False)
    database: str
    pid: int
    #: the file that holds ``password`` (mode 0600), for whoever must hand it on
    password_file: Path
