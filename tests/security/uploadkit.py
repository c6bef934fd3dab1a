"""Raw-socket uploads for the body-limit attacks: a huge body made lazily, or a body trickled slowly,
with the server's answer read as soon as it comes (a server that refuses early closes the connection
mid-upload: a client that sends everything before reading would never see the answer).

Every loop is bounded in bytes and in time.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Upload:
    status: int | None  # None: no answer before the connection closed or the time ran out
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client managed to hand to the kernel before the answer
    elapsed_s: float
    closed: bool = False  # the server closed the connection
    raw: bytes = field(default=b"", repr=False)

    def json(self) -> Any:
        return json.loads(self.body)

    def json_error(self) -> str | None:
        """The `error` of a JSON error body, None if the body is not one."""
        try:
            data = self.json()
        except ValueError:
            return None
        return data.get("error") if isinstance(data, dict) else None


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return status, headers, rest[:length]


def filler(total: int, size: int = 256 * 1024, fill: bytes = b"a") -> Iterator[bytes]:
    """`total` bytes in pieces of `size`, made as they are sent: never held whole."""
    block = fill * size
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


def upload(
    port: int,
    method: str,
    path: str,
    body: Iterator[bytes],
    *,
    headers: dict[str, str] | None = None,
    content_length: int | None = None,
    time_limit_s: float = 60.0,
) -> Upload:
    """Send `body` (chunked unless `content_length` is given) while watching for the answer."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(
        f"Content-Length: {content_length}" if content_length is not None else "Transfer-Encoding: chunked"
    )
    pending = ("\r\n".join(head) + "\r\n\r\n").encode()
    head_len = len(pending)
    written = 0
    raw = b""
    closed = False
    sending = True
    answer = None
    try:
        while time.monotonic() - started < time_limit_s:
            if sending and not pending:
                piece = next(body, None)
                if piece is None:
                    pending = b"0\r\n\r\n" if content_length is None else b""
                    sending = False  # the last bytes (if any) go out below, once
                elif content_length is None:
                    pending = b"%x\r\n" % len(piece) + piece + b"\r\n"
                else:
                    pending = piece
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 0.2)
            if readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if not data:
                    closed = True
                    break
                raw += data
                answer = _parse(raw)
                if answer is not None:
                    break
            if writable and pending:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    sending, pending = False, b""
                    continue
                written += n
                pending = pending[n:]
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    sent = max(0, written - head_len)
    if answer is None:
        return Upload(None, {}, b"", sent, elapsed, closed, raw)
    status, hdrs, data = answer
    return Upload(status, hdrs, data, sent, elapsed, closed, raw)


def trickle(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    declared: int = 1000,
    every_s: float = 1.0,
    time_limit_s: float = 30.0,
    prefix: bytes = b"",
    byte: bytes = b"{",
) -> Upload:
    """Declare `declared` bytes, send `prefix` at once, then one `byte` every `every_s` until
    answered (or out of time)."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {declared}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + prefix)
    sent = len(prefix)
    raw = b""
    closed = False
    answer = None
    try:
        while time.monotonic() - started < time_limit_s and sent < declared:
            readable, _, _ = select.select([sock], [], [], every_s)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed = True
                    break
                raw += data
                answer = _parse(raw)
                if answer is not None:
                    break
                continue
            try:
                sock.send(byte)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    if answer is None:
        return Upload(None, {}, b"", sent, elapsed, closed, raw)
    status, hdrs, data = answer
    return Upload(status, hdrs, data, sent, elapsed, closed, raw)
