"""What a running embedded engine tells its users."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EngineInfo"]


@dataclass(frozen=True)
class EngineInfo:
    """How to reach a running embedded engine; every address is on loopback.

    ``password`` is kept out of ``repr()`` so that logging the info never leaks it.
    """

    bolt_uri: str
    http_url: str
    user: str
    password: str = field(repr=False)
    database: str
    pid: int
