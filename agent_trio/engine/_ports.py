"""Free loopback ports for the engine's listeners."""

from __future__ import annotations

import socket

__all__ = ["LOOPBACK", "pick_free_ports"]

LOOPBACK = "127.0.0.1"


def pick_free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports that were free on loopback a moment ago.

    Another process may take one before the engine binds it; the engine then fails
    to start and the caller retries with new ports.
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
