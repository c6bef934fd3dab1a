"""Helpers for the outbound-policy attacks: a loopback HTTP server that records every request it
gets (the internal service an attacker wants to reach), and a service account to build FCM with.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# What the internal service answers: if this text ever shows up in an API answer, a stored reason
# or a log, an upstream body leaked.
INTERNAL_SECRET = "INTERNAL-ONLY-7f3a9c-db-password=hunter2"


@dataclass
class Recorder:
    """A real HTTP server on 127.0.0.1 in a thread; `requests` holds (method, path) of each call."""

    port: int = 0
    status: int = 500
    requests: list[tuple[str, str]] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1", path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"


@contextlib.contextmanager
def recorder(status: int = 500) -> Iterator[Recorder]:
    rec = Recorder(status=status)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 20))
            rec.requests.append((self.command, self.path))
            body = json.dumps({"error": INTERNAL_SECRET, "detail": INTERNAL_SECRET}).encode()
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def own_hostname_inside() -> str | None:
    """This machine's name, if it resolves to a loopback or private address (it does here)."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        return None
    inside = [a for a in addresses if a.startswith(("127.", "10.", "192.168.", "172.")) or a == "::1"]
    return name if inside else None


def service_account(token_uri: str = "https://oauth2.googleapis.com/token") -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "sender@demo-project.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }
