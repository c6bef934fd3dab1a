"""The new providers' pure parts: settings (secrets named to be encrypted, bad keys refused), the
APNs token and error mapping, and the receipt checks that need no server."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic import ValidationError

from optibridge.channels.apns import classify_apns, provider_token
from optibridge.channels.base import Outcome
from optibridge.channels.provider_settings import (
    EXTRA_SETTINGS_BY_TYPE,
    ApnsSettings,
    PostmarkSettings,
    SendgridSettings,
)
from optibridge.core.config import split_provider_settings
from optibridge.feedback.provider_receipts import (
    basic_auth_valid,
    mailgun_fresh,
    plivo_signature_v3,
    plivo_signature_valid,
    sns_cert_url_allowed,
    vonage_signature_valid,
)

P256 = ec.generate_private_key(ec.SECP256R1())
P8 = P256.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def test_every_secret_of_the_new_providers_is_stored_encrypted() -> None:
    samples = {
        "ses": {"aws_secret": "a", "session_token": "b"},
        "sendgrid": {"api_key": "c"},
        "mailgun": {"api_key": "d", "webhook_signing_secret": "e"},
        "postmark": {"server_token": "f", "webhook_password": "g"},
        "vonage": {"api_key": "h", "api_secret": "i", "signature_secret": "j"},
        "plivo": {"auth_token": "k"},
        "apns": {"signing_private_key": "l"},
    }
    assert set(samples) == set(EXTRA_SETTINGS_BY_TYPE)
    for provider, secrets in samples.items():
        plain, secret = split_provider_settings({"type": provider, "from_address": "a@b.test", **secrets})
        assert secret == secrets, provider
        assert set(plain) == {"type", "from_address"}


def test_settings_refuse_keys_that_cannot_verify_or_sign() -> None:
    rsa_der = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValidationError, match="P-256"):
        SendgridSettings(
            type="sendgrid",
            api_key="k",
            from_address="a@b.test",
            webhook_public_key=base64.b64encode(rsa_der).decode(),
        )
    with pytest.raises(ValidationError, match="base64 DER"):
        SendgridSettings(
            type="sendgrid", api_key="k", from_address="a@b.test", webhook_public_key="not a key"
        )
    with pytest.raises(ValidationError, match="PEM"):
        ApnsSettings(
            type="apns", key_id="ABC123DEFG", team_id="TEAM123456", signing_private_key="x", topic="a.b"
        )
    with pytest.raises(ValidationError, match="go together"):
        PostmarkSettings(type="postmark", server_token="t", from_address="a@b.test", webhook_username="u")
    with pytest.raises(ValidationError, match="line break"):
        ApnsSettings(
            type="apns",
            key_id="ABC123DEFG",
            team_id="TEAM123456",
            signing_private_key=P8,
            topic="a.b",
            name="x\r\nInjected: 1",
        )


def test_apns_provider_token_is_an_es256_jwt_apple_can_verify() -> None:
    token = provider_token(P256, "ABC123DEFG", "TEAM123456", 1_700_000_000)
    header_b64, claims_b64, signature_b64 = token.split(".")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    assert json.loads(decode(header_b64)) == {"alg": "ES256", "kid": "ABC123DEFG"}
    assert json.loads(decode(claims_b64)) == {"iss": "TEAM123456", "iat": 1_700_000_000}
    raw = decode(signature_b64)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    P256.public_key().verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("status", "reason", "outcome", "unregistered"),
    [
        (400, "BadDeviceToken", Outcome.PERMANENT, True),
        (400, "DeviceTokenNotForTopic", Outcome.PERMANENT, True),
        (410, "Unregistered", Outcome.PERMANENT, True),
        (429, "TooManyRequests", Outcome.THROTTLED, False),
        (403, "ExpiredProviderToken", Outcome.TRANSIENT, False),
        (503, "ServiceUnavailable", Outcome.TRANSIENT, False),
        (413, "PayloadTooLarge", Outcome.PERMANENT, False),
    ],
)
def test_apns_errors(status: int, reason: str, outcome: Outcome, unregistered: bool) -> None:
    result = classify_apns(status, json.dumps({"reason": reason}).encode(), {})
    assert (result.outcome, result.unregistered) == (outcome, unregistered)
    assert reason in (result.reason or "")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.eu-west-1.amazonaws.com.evil.test/SimpleNotificationService-abc.pem", False),
        ("https://evil.test/sns.eu-west-1.amazonaws.com/x.pem", False),
        ("http://sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com:8443/x.pem", False),
        ("https://user@sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com/x.pem", False),
        (None, False),
    ],
)
def test_sns_certificates_only_from_under_the_configured_base(url: str | None, ok: bool) -> None:
    assert sns_cert_url_allowed(url, "https://sns.eu-west-1.amazonaws.com") is ok


def test_basic_auth_compares_the_whole_credentials() -> None:
    good = "Basic " + base64.b64encode(b"user:password-0123456789").decode()
    assert basic_auth_valid(good, "user", "password-0123456789")
    assert not basic_auth_valid(good, "user", "password-012345678")
    assert not basic_auth_valid(
        "Basic " + base64.b64encode(b"user:password-0123456789x").decode(), "user", "password-0123456789"
    )
    assert not basic_auth_valid("Bearer x", "user", "password-0123456789")
    assert not basic_auth_valid("Basic !!!", "user", "password-0123456789")
    assert not basic_auth_valid(None, "user", "password-0123456789")


def test_mailgun_timestamps_older_than_an_hour_are_stale() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    stamp = int(now.timestamp())
    assert mailgun_fresh({"timestamp": str(stamp - 3500)}, now)
    assert not mailgun_fresh({"timestamp": str(stamp - 3700)}, now)
    assert not mailgun_fresh({"timestamp": "soon"}, now)


def test_vonage_signature_needs_sig_and_timestamp() -> None:
    assert not vonage_signature_valid({"status": "delivered"}, "s", "sha256")
    assert not vonage_signature_valid({"status": "delivered", "sig": "00"}, "s", "sha256")


def test_plivo_signature_covers_url_query_parameters_and_nonce() -> None:
    url = "https://hooks.example.test/r/plivo/t1/606?message_id=m1"
    params = {"Status": "delivered", "MessageUUID": "u1"}
    signature = plivo_signature_v3(url, params, "nonce1", "token")
    assert plivo_signature_valid(["other", "token"], url, params, "nonce1", f"x, {signature}")
    assert not plivo_signature_valid(["token"], url.replace("m1", "m2"), params, "nonce1", signature)
    assert not plivo_signature_valid(["token"], url, dict(params, Status="failed"), "nonce1", signature)
    assert not plivo_signature_valid(["token"], url, params, "nonce2", signature)
