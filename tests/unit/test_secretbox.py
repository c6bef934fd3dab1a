"""Secrets at rest: round trips, key rotation, and clear errors for wrong or malformed keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from optibridge.core.errors import SecretKeyError
from optibridge.core.secretbox import SecretBox, generate_key, load_box, parse_keys


def test_round_trip_and_ciphertext_hides_the_value() -> None:
    box = SecretBox([generate_key().encode()])
    token = box.encrypt_json({"api_key": "very-secret-value"})
    assert b"very-secret-value" not in token
    assert box.decrypt_json(token) == {"api_key": "very-secret-value"}


def test_rotation_new_key_first_still_reads_old_data() -> None:
    old, new = generate_key(), generate_key()
    written = SecretBox(parse_keys(old)).encrypt_json("x")
    rotated = SecretBox(parse_keys(f"{new},{old}"))
    assert rotated.decrypt_json(written) == "x"
    with pytest.raises(SecretKeyError):
        SecretBox(parse_keys(old)).decrypt(rotated.encrypt(b"y"))


def test_wrong_key_fails_the_check_value() -> None:
    check = SecretBox(parse_keys(generate_key())).check_value()
    with pytest.raises(SecretKeyError, match="does not match"):
        SecretBox(parse_keys(generate_key())).verify_check_value(check)


def test_malformed_key_is_reported_as_such() -> None:
    with pytest.raises(SecretKeyError, match="malformed"):
        SecretBox([b"not-a-key"])


def test_key_file_generated_only_when_allowed(tmp_path: Path) -> None:
    key_file = tmp_path / "d" / "secret.key"
    with pytest.raises(SecretKeyError, match="no secret key"):
        load_box(None, key_file, may_generate=False)
    assert not key_file.exists()
    box = load_box(None, key_file, may_generate=True)
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = load_box(None, key_file, may_generate=False)
    assert again.decrypt(box.encrypt(b"z")) == b"z"


def test_explicit_key_wins_over_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(generate_key())
    explicit = generate_key()
    box = load_box(explicit, key_file, may_generate=False)
    assert SecretBox(parse_keys(explicit)).decrypt(box.encrypt(b"q")) == b"q"
