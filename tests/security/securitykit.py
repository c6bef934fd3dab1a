"""Attack helpers: a real `optibridge serve` process to attack, raw HTTP requests, and a /livez watch.

The server runs as its own OS process (not in the test's event loop) so that its resident memory can
be measured and a stalled event loop shows up as a slow /livez, exactly as an operator would see it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Served:
    """A running `optibridge serve` with two tenants (acme, globex) and keys of each kind."""

    base_url: str
    proc: subprocess.Popen[bytes]
    admin_key: str
    acme_key: str
    globex_key: str
    env: dict[str, str]
    db_url: str
    log: Path
    cwd: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        port = urlsplit(self.base_url).port
        assert port is not None
        return port

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json: Any = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """One HTTP request. `body` may be an iterable of chunks (sent chunked, generated lazily)."""
        return http_request(
            self.port, method, path, key=key, json_body=json, body=body, headers=headers, timeout=timeout
        )

    def rss_mb(self) -> float:
        """Resident memory of the server process (VmRSS), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS for the server process")

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `optibridge ARGS` against the same database and settings."""
        return subprocess.run(
            [sys.executable, "-m", "optibridge", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def livez_ms(self, timeout: float = 5.0) -> float:
        started = time.monotonic()
        reply = self.request("GET", "/livez", timeout=timeout)
        assert reply.status == 200, reply
        return (time.monotonic() - started) * 1000

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    key: str | None = None,
    json_body: Any = None,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    host: str = "127.0.0.1",
) -> Reply:
    sent_headers = dict(headers or {})
    if key is not None:
        sent_headers.setdefault("Authorization", f"Bearer {key}")
    payload: bytes | Iterable[bytes] | None = body
    if json_body is not None:
        payload = json.dumps(json_body).encode()
        sent_headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if payload is None or isinstance(payload, bytes):
            conn.request(method, path, body=payload, headers=sent_headers)
        else:
            # http.client sends an iterable body with Transfer-Encoding: chunked; a server that
            # answers early (413, 401) may close the socket mid-upload, which is what we test for.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request(method, path, body=payload, headers=sent_headers, encode_chunked=True)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (how a remote client reaches us), or None."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a UDP "connect" sends nothing; it only picks a route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def chunks(total_bytes: int, size: int = 1 << 20, fill: bytes = b"a") -> Iterator[bytes]:
    """`total_bytes` of filler in chunks of `size`, made as they are sent (never held whole)."""
    block = fill * size
    sent = 0
    while sent < total_bytes:
        piece = block[: min(size, total_bytes - sent)]
        sent += len(piece)
        yield piece


class livez_watch:
    """Polls /livez every `every_s` in a thread while the block runs; `max_ms` and `failures` after.

    A request that does not answer within `timeout_s` counts as a failure (the event loop is stuck).
    """

    def __init__(self, served: Served, every_s: float = 0.1, timeout_s: float = 5.0) -> None:
        self._served = served
        self._every_s = every_s
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples_ms: list[float] = []
        self.failures: list[str] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                reply = self._served.request("GET", "/livez", timeout=self._timeout_s)
                if reply.status != 200:
                    self.failures.append(f"status {reply.status}")
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.samples_ms.append((time.monotonic() - started) * 1000)
            self._stop.wait(self._every_s)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms, default=0.0)

    def __enter__(self) -> livez_watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._timeout_s + 1)

    def assert_responsive(self, within_ms: float = 1000.0) -> None:
        assert self.samples_ms, "no /livez sample was taken"
        assert not self.failures, f"/livez failed: {self.failures[:5]}"
        assert self.max_ms < within_ms, f"/livez took {self.max_ms:.0f} ms (limit {within_ms:.0f})"
