"""Keys for tracking tokens and receipt signatures, derived from the service's secret key(s).

Nothing new to store or configure: each purpose gets its own key, derived with HKDF-SHA256 from the
Fernet key(s) that already protect credentials. Several configured keys (rotation) keep working as
for SecretBox: the first signs, every one verifies, so links in mail sent before a rotation still
resolve afterwards. A tenant's delivery-report key is derived from the same material plus its id, so
it can be shown to that tenant's operator without revealing anything about other tenants.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from optibridge.core.errors import SecretKeyError
from optibridge.core.secretbox import parse_keys

_SALT = b"optibridge feedback keys"
_TRACKING_INFO = b"tracking-token v1"
_RECEIPT_INFO = b"generic-receipt v1\x00"


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(master)


def _master(fernet_key: bytes) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(fernet_key)
    except (binascii.Error, ValueError):
        raise SecretKeyError("a secret key is not url-safe base64") from None
    if len(raw) != 32:
        raise SecretKeyError("a secret key must decode to 32 bytes")
    return raw


class TrackingKeys:
    """Signing and verifying keys; build with `from_secret_keys` or `from_settings`."""

    __slots__ = ("_masters", "signing", "verifying")

    def __init__(self, masters: Sequence[bytes]) -> None:
        if not masters:
            raise SecretKeyError("no secret key configured")
        self._masters = tuple(masters)
        self.signing = _derive(self._masters[0], _TRACKING_INFO)
        self.verifying = tuple(_derive(m, _TRACKING_INFO) for m in self._masters)

    @classmethod
    def from_secret_keys(cls, fernet_keys: Sequence[bytes | str]) -> TrackingKeys:
        """From Fernet keys as configured (url-safe base64), first = current."""
        return cls([_master(k.encode() if isinstance(k, str) else k) for k in fernet_keys])

    @classmethod
    def from_settings(cls, settings: object) -> TrackingKeys:
        """The keys the runtime's SecretBox was loaded with (setting, else key file).

        Call after `open_runtime`, which has validated (or, embedded, generated) the key file.
        """
        secret = getattr(settings, "secret_key", None)
        if secret is not None and secret.get_secret_value():
            return cls.from_secret_keys(parse_keys(secret.get_secret_value()))
        key_file = getattr(settings, "key_file", None)
        if key_file is None or not key_file.is_file():
            raise SecretKeyError("no secret key to derive tracking keys from")
        return cls.from_secret_keys(parse_keys(key_file.read_text()))

    def receipt_keys(self, tenant_id: str) -> tuple[bytes, ...]:
        """The tenant's delivery-report HMAC keys, current first."""
        info = _RECEIPT_INFO + tenant_id.encode()
        return tuple(_derive(m, info) for m in self._masters)

    def receipt_secret(self, tenant_id: str) -> str:
        """The tenant's current delivery-report secret, as given to whoever sends the reports."""
        return self.receipt_keys(tenant_id)[0].hex()


def sign_body(secret_hex: str, body: bytes) -> str:
    """The signature header value a sender puts on a generic delivery report."""
    return "sha256=" + hmac.new(bytes.fromhex(secret_hex), body, hashlib.sha256).hexdigest()


def verify_body_signature(keys: Sequence[bytes], body: bytes, header: str | None) -> bool:
    """Constant-time check of `sha256=<hex>` against every key (rotation)."""
    if not header or len(header) > 200:
        return False
    value = header.strip()
    if value.lower().startswith("sha256="):
        value = value[7:]
    try:
        given = bytes.fromhex(value)
    except ValueError:
        return False
    ok = False
    for key in keys:
        # No early exit: the time taken does not say which key (if any) matched.
        ok |= hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), given)
    return ok
