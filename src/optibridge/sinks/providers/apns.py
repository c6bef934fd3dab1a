"""A loopback APNs: HTTP/2 speaking Apple's request and error shapes.

Over TLS with ALPN "h2" when given a certificate (`tls=(certfile, keyfile)`), as Apple serves it
and as the adapter's client requires; else cleartext HTTP/2 with prior knowledge.

    POST /3/device/<token>   headers authorization: bearer <ES256 JWT>, apns-topic, apns-push-type
        200 + apns-id                      accepted
        403 {"reason": "MissingProviderToken" | "InvalidProviderToken"}
        400 {"reason": "MissingTopic" | "BadDeviceToken"}    (tokens starting "bad")
        410 {"reason": "Unregistered", "timestamp": ms}       (tokens starting "gone")

The JWT's signature is checked with `public_key` when given (the sink then proves the adapter
signs as Apple verifies). Requests are recorded (headers, JSON body); `latency` delays answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import ProtocolError


@dataclass(slots=True)
class ApnsRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_valid(token: str, public_key: ec.EllipticCurvePublicKey | None) -> bool:
    """ES256 JWS compact form with a kid and an iss; the signature checked when a key is given."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(claims_b64))
        raw = _b64decode(signature_b64)
    except ValueError:
        return False
    if header.get("alg") != "ES256" or not header.get("kid") or not claims.get("iss") or len(raw) != 64:
        return False
    if public_key is None:
        return True
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public_key.verify(signature, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


class _Connection(asyncio.Protocol):
    def __init__(self, sink: ApnsSink) -> None:
        self.sink = sink
        self.h2 = H2Connection(config=H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            self.transport.write(self.h2.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = (
                    {str(k): str(v) for k, v in event.headers or []},
                    bytearray(),
                )
            elif isinstance(event, DataReceived) and event.stream_id in self.streams:
                self.streams[event.stream_id][1].extend(event.data or b"")
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded) and event.stream_id in self.streams:
                task = asyncio.ensure_future(self.respond(event.stream_id))
                self.sink.tasks.add(task)
                task.add_done_callback(self.sink.tasks.discard)
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                self.transport.close()
        self.transport.write(self.h2.data_to_send())

    async def respond(self, stream_id: int) -> None:
        headers, body = self.streams.pop(stream_id)
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        status, answer = self.sink.decide(headers)
        self.sink.record(ApnsRequest(headers.get(":path", ""), headers, bytes(body), status))
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self.h2.send_headers(
                stream_id, [(":status", str(status)), ("apns-id", apns_id)], end_stream=answer is None
            )
            if answer is not None:
                self.h2.send_data(stream_id, answer, end_stream=True)
        except ProtocolError:
            return
        self.transport.write(self.h2.data_to_send())


class ApnsSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        public_key: ec.EllipticCurvePublicKey | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self._host = host
        self._tls = tls
        self._port = 0
        self.public_key = public_key
        self.requests: list[ApnsRequest] = []
        self.max_records = 100_000
        self.delay = 0.0
        self.tasks: set[asyncio.Future[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ApnsSink:
        loop = asyncio.get_running_loop()
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._tls)
            context.set_alpn_protocols(["h2"])
        self._server = await loop.create_server(lambda: _Connection(self), self._host, 0, ssl=context)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self.tasks):
                task.cancel()
            self._server = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    def record(self, request: ApnsRequest) -> None:
        if len(self.requests) < self.max_records:
            self.requests.append(request)

    def decide(self, headers: dict[str, str]) -> tuple[int, bytes | None]:
        def error(status: int, reason: str, **extra: Any) -> tuple[int, bytes | None]:
            return status, json.dumps({"reason": reason, **extra}).encode()

        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return error(403, "MissingProviderToken")
        if not jwt_valid(auth[7:], self.public_key):
            return error(403, "InvalidProviderToken")
        if not headers.get("apns-topic"):
            return error(400, "MissingTopic")
        token = headers.get(":path", "").rpartition("/")[2]
        if token.startswith("bad"):
            return error(400, "BadDeviceToken")
        if token.startswith("gone"):
            return error(410, "Unregistered", timestamp=int(time.time() * 1000))
        return 200, None
