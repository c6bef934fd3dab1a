"""Fixtures for the channel adapters against the sinks: real servers on 127.0.0.1, no mocks."""

from __future__ import annotations

import itertools
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from optibridge.channels import OutboundMessage
from optibridge.sinks import HttpSink, SmtpSink
from optibridge.testing.tls import loopback_certificate

MakeMessage = Callable[..., OutboundMessage]
_NAMESPACE = uuid.UUID("6f1c3c1e-6f0b-4c2a-9d6e-0d1b5a9c7e11")


@pytest.fixture
def make_message() -> MakeMessage:
    """A factory of messages with deterministic (uuid5) ids, one per customer."""
    counter = itertools.count(1)

    def make(**overrides: Any) -> OutboundMessage:
        n = next(counter)
        fields: dict[str, Any] = {
            "message_id": str(uuid.uuid5(_NAMESPACE, f"t1/7/c{n}/3")),
            "tenant_id": "t1",
            "campaign_id": 7,
            "customer_id": f"c{n}",
            "template_id": 3,
            "to": f"customer{n}@example.test",
            "body": f"<p>Hello customer {n}</p>",
        }
        fields.update(overrides)
        return OutboundMessage(**fields)

    return make


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def http_sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def service_account() -> dict[str, str]:
    """A service-account JSON like Google's, with a fresh RSA key (google-auth signs with it)."""
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
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(certificate, key) paths of a self-signed certificate for 127.0.0.1, its own CA."""
    return loopback_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server_tls(tls_files: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context
