"""Webhooks signed exactly as each provider signs them (keys made here, never an account's).

`ReceiptSigner` holds a self-signed RSA certificate (the SNS signing certificate a `ProviderSink`
serves), an ECDSA P-256 key (SendGrid's event webhook key pair), and shared secrets; each method
returns (body, headers) ready to POST, the way the provider would send them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from optibridge.feedback.provider_receipts import (
    MESSAGE_KEY,
    plivo_signature_v3,
    sns_string_to_sign,
    vonage_signature,
)


def _self_signed(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.loopback.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class ReceiptSigner:
    def __init__(self) -> None:
        self.sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sns_cert_pem = _self_signed(self.sns_key)
        self.sendgrid_key = ec.generate_private_key(ec.SECP256R1())
        der = self.sendgrid_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.sendgrid_public_key = base64.b64encode(der).decode()  # as SendGrid's UI shows it

    # SES through SNS
    def sns(
        self,
        notification: dict[str, Any],
        *,
        topic_arn: str,
        cert_url: str,
        message_id: str | None = None,
        version: str = "2",
        kind: str = "Notification",
        subscribe_url: str | None = None,
    ) -> bytes:
        message: dict[str, Any] = {
            "Type": kind,
            "MessageId": message_id or secrets.token_hex(16),
            "TopicArn": topic_arn,
            "Message": json.dumps(notification),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "SignatureVersion": version,
            "SigningCertURL": cert_url,
        }
        if kind != "Notification":
            message["Token"] = secrets.token_hex(16)
            message["SubscribeURL"] = subscribe_url or ""
        algorithm: hashes.HashAlgorithm = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303
        signature = self.sns_key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return json.dumps(message).encode()

    @staticmethod
    def ses_event(event_type: str, message_id: str, ses_id: str, **extra: Any) -> dict[str, Any]:
        """An SES event-publishing record with our message tag."""
        mail = {
            "timestamp": "2026-01-01T00:00:00.000Z",
            "messageId": ses_id,
            "source": "news@example.test",
            "destination": ["c1@example.test"],
            "tags": {MESSAGE_KEY: [message_id], "ses:configuration-set": ["optibridge"]},
        }
        return {"eventType": event_type, "mail": mail, **extra}

    # SendGrid
    def sendgrid(
        self, events: list[dict[str, Any]], *, timestamp: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(events).encode()
        stamp = timestamp or str(int(time.time()))
        signature = self.sendgrid_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return body, {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }

    # Mailgun
    @staticmethod
    def mailgun(signing_key: str, event_data: dict[str, Any]) -> bytes:
        timestamp, token = str(int(time.time())), secrets.token_hex(25)
        digest = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
        signature = {"timestamp": timestamp, "token": token, "signature": digest}
        return json.dumps({"signature": signature, "event-data": event_data}).encode()

    # Postmark
    @staticmethod
    def postmark_auth(username: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}

    # Vonage
    @staticmethod
    def vonage(params: dict[str, str], secret: str, method: str = "sha256") -> bytes:
        signed = dict(params, timestamp=str(int(time.time())))
        signed["sig"] = vonage_signature(signed, secret, method)
        return urlencode(signed).encode()

    # Plivo
    @staticmethod
    def plivo(url: str, params: dict[str, str], auth_token: str) -> tuple[bytes, dict[str, str]]:
        nonce = secrets.token_hex(10)
        return urlencode(params).encode(), {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Plivo-Signature-V3": plivo_signature_v3(url, params, nonce, auth_token),
            "X-Plivo-Signature-V3-Nonce": nonce,
        }
