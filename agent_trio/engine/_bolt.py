"""A raw Bolt version handshake: is a Bolt server listening on this port?"""

from __future__ import annotations

import struct

import trio

__all__ = ["bolt_handshake"]

_MAGIC = b"\x60\x60\xb0\x17"
#: four proposals, each ``[0, range, minor, major]``: 5.4 down to 5.0, 4.4, 4.0, 3.0
_PROPOSALS = (0x00040405, 0x00000404, 0x00000004, 0x00000003)


async def bolt_handshake(host: str, port: int) -> tuple[int, int]:
    """Open a connection, negotiate a protocol version, close; return ``(major, minor)``.

    Raises ``OSError`` when nothing listens or the peer hangs up, ``ValueError`` when
    the peer answers but agrees on no version. Callers bound it with a deadline.
    """
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(_MAGIC + struct.pack(">4I", *_PROPOSALS))
        answer = await _receive_exactly(stream, 4)
    major, minor = answer[3], answer[2]
    if major == 0:
        raise ValueError(f"the Bolt server on port {port} accepts none of our versions")
    return major, minor


async def _receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise ConnectionResetError("the Bolt server closed the connection during the handshake")
        data += chunk
    return data
