"""Provider sockets that close with a reset (SO_LINGER 0).

A request given up (the dispatcher's send fence, a cancelled job) must leave nothing in the
kernel's send buffer: with a plain close the kernel keeps retransmitting it, and when a cut link
returns it reaches the provider, after another worker has sent the message again. A connection
closed after its answer loses nothing by the reset: everything it sent was answered.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

RESET_ON_CLOSE: tuple[int, int, bytes] = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def resetting_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp's `socket_factory`: a TCP socket for `addr_info` with RESET_ON_CLOSE set."""
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(*RESET_ON_CLOSE)
    return sock
