"""Secrets at rest: round trips, key rotation, and clear errors for wrong or malformed keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog.testing

from optibridge.core.errors import SecretKeyError
from optibridge.core.secretbox import SecretBox, generate_key, load_box, loose_permissions, parse_keys


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


def test_a_key_file_others_can_read_is_used_but_named_in_a_warning(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(generate_key() + "\n")
    key_file.chmod(0o600)
    assert loose_permissions(key_file) is None
    with structlog.testing.capture_logs() as quiet:
        load_box(None, key_file, may_generate=False)
    assert not [e for e in quiet if "readable by other users" in e["event"]]
    key_file.chmod(0o644)
    assert loose_permissions(key_file) == "0644"
    with structlog.testing.capture_logs() as logs:
        load_box(None, key_file, may_generate=False)
    [warning] = [e for e in logs if "readable by other users" in e["event"]]
    assert (warning["mode"], warning["key_file"]) == ("0644", str(key_file))
