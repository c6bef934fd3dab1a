"""Configuration: file, environment and validation, each problem as one clear ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from optibridge.core.config import load_settings, split_provider_settings
from optibridge.core.errors import ConfigError

TENANT = """
[[tenants]]
id = "acme"
api_base_url = "https://api5.optimove.net"
api_key = "k1"
[[tenants.channels]]
name = "email"
kind = "email"
channel_id = 504
provider = { host = "smtp.example.com", password = "p" }
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPTIBRIDGE_CONFIG", "DATABASE_URL", "OPTIBRIDGE_DATABASE_URL", "OPTIBRIDGE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./optibridge.toml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(text)
    return path


def test_defaults_use_the_embedded_database_in_the_data_folder() -> None:
    s = load_settings()
    assert s.embedded
    assert s.pg_dir == Path(".optibridge/pg")
    assert s.key_file == Path(".optibridge/secret.key")


def test_file_tenants_are_loaded_with_their_channels(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, TENANT))
    assert [t.id for t in s.tenants] == ["acme"]
    assert s.tenants[0].channels[0].channel_id == 504
    assert s.tenants[0].credentials() == {"api_key": "k1"}


def test_environment_overrides_the_file_and_flags_override_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "port = 9000\nhost = '0.0.0.0'\n")
    monkeypatch.setenv("OPTIBRIDGE_PORT", "9100")
    s = load_settings(path)
    assert (s.port, s.host) == (9100, "0.0.0.0")
    assert load_settings(path, port=9200).port == 9200


def test_plain_database_url_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.example/x")
    s = load_settings()
    assert s.database_url == "postgresql://u@db.example/x"
    assert not s.embedded


def test_config_file_found_through_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIBRIDGE_CONFIG", str(write(tmp_path, "port = 9300\n")))
    assert load_settings().port == 9300


def test_missing_file_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_malformed_file_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_settings(write(tmp_path, "port = 1\nhost = \n"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port = 'many'\n", "port"),
        ("colour = 'red'\n", "colour: Extra inputs are not permitted"),
        ("database_url = 'mysql://x'\n", "postgresql://"),
        (TENANT + TENANT, "appears twice"),
        (TENANT.replace('api_key = "k1"', ""), "exactly one"),
        (TENANT.replace('id = "acme"', 'id = "Bad Id"'), "tenants.0.id"),
        (TENANT.replace("channel_id = 504", "channel_id = 0"), "channel_id"),
        (TENANT.replace('kind = "email"', 'kind = "fax"'), "kind"),
    ],
)
def test_invalid_settings_are_one_line_naming_the_field(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_secret_provider_fields_are_split_from_plain_ones() -> None:
    plain, secret = split_provider_settings(
        {"host": "h", "port": 25, "password": "p", "auth_token": "t", "api_key": "k", "user": "u"}
    )
    assert plain == {"host": "h", "port": 25, "user": "u"}
    assert secret == {"password": "p", "auth_token": "t", "api_key": "k"}


def test_nested_provider_secrets_are_split_and_merged_back() -> None:
    from optibridge.core.config import merge_provider_settings

    provider = {
        "providers": [
            {"type": "smtp", "host": "a", "password": "p1"},
            {"type": "smtp", "host": "b", "password": "p2", "tls": {"client_private_key": "k"}},
        ],
        "auth_token": "t",
    }
    plain, secret = split_provider_settings(provider)
    assert plain == {"providers": [{"type": "smtp", "host": "a"}, {"type": "smtp", "host": "b", "tls": {}}]}
    assert secret == {
        "providers/0/password": "p1",
        "providers/1/password": "p2",
        "providers/1/tls/client_private_key": "k",
        "auth_token": "t",
    }
    assert merge_provider_settings(plain, secret) == provider
