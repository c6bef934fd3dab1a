"""Encryption of credentials at rest (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`).

Several keys may be configured (comma-separated) so that keys can be rotated: the first encrypts,
any of them decrypts. The database keeps a check value encrypted with the key it was first written
with, so a wrong key is reported at start-up instead of as a decryption error in the middle of a job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from optibridge.core.errors import SecretKeyError

log = structlog.get_logger(__name__)

CHECK_PLAINTEXT = b"optibridge-secret-key-check"


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key configured")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError):
            raise SecretKeyError(
                "the secret key is malformed: each key must be 32 url-safe base64-encoded bytes "
                "(make one with: optibridge keygen)"
            ) from None

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(bytes(token))
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be decrypted with the configured key(s)") from None

    def encrypt_json(self, obj: Any) -> bytes:
        return self.encrypt(json.dumps(obj, separators=(",", ":")).encode())

    def decrypt_json(self, token: bytes) -> Any:
        return json.loads(self.decrypt(token))

    def check_value(self) -> bytes:
        return self.encrypt(CHECK_PLAINTEXT)

    def verify_check_value(self, token: bytes) -> None:
        try:
            ok = self._fernet.decrypt(bytes(token)) == CHECK_PLAINTEXT
        except InvalidToken:
            ok = False
        if not ok:
            raise SecretKeyError(
                "the configured secret key does not match the one this database was written with; "
                "set OPTIBRIDGE_SECRET_KEY (or the key file) to the original key"
            )


def generate_key() -> str:
    return Fernet.generate_key().decode()


def parse_keys(text: str) -> list[bytes]:
    return [k.strip().encode() for k in text.replace("\n", ",").split(",") if k.strip()]


def loose_permissions(path: Path) -> str | None:
    """The file's mode (e.g. "0644") if users other than its owner may read or write it."""
    mode = path.stat().st_mode & 0o777
    return f"{mode:04o}" if mode & 0o077 else None


def load_box(key_text: str | None, key_file: Path, *, may_generate: bool) -> SecretBox:
    """Keys from the setting, else the key file, else (embedded default only) a new key file.

    A key is generated only for the embedded default: with an external database several machines
    share the data, and a key made up on one of them would lock the others out.
    """
    if key_text:
        return SecretBox(parse_keys(key_text))
    if key_file.is_file():
        loose = loose_permissions(key_file)
        if loose is not None:
            # A warning, not a refusal: Kubernetes mounts secrets 0644 unless told otherwise, and
            # a service that will not start is no safer than one that says what to fix.
            log.warning(
                "the secret key file is readable by other users; restrict it with chmod 600",
                key_file=str(key_file),
                mode=loose,
            )
        try:
            return SecretBox(parse_keys(key_file.read_text()))
        except PermissionError:
            raise SecretKeyError(f"the key file {key_file} cannot be read") from None
    if not may_generate:
        raise SecretKeyError(
            "no secret key: set OPTIBRIDGE_SECRET_KEY or OPTIBRIDGE_SECRET_KEY_FILE "
            f"(looked for {key_file}); make one with: optibridge keygen"
        )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(generate_key() + "\n")
    log.warning(
        "generated a new secret key; back it up: without it the stored credentials are lost",
        key_file=str(key_file),
    )
    return SecretBox(parse_keys(key_file.read_text()))
