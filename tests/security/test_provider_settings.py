"""Provider settings written through the API are validated like the config file's (issue 12,
finding 2): header injection through `message_id_domain` and friends, non-HTTP URLs and SMTP
settings that cannot work are refused with 422 before anything is stored, and the refusal never
quotes the secrets sent along. Against a real `optibridge serve`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from securitykit import Served, livez_watch

SMTP_PASSWORD = "smtp-SECRET-pw-93f1c0"
TOKEN = "tok-SECRET-77aa21"
SIGNING_SECRET = "whsec-SECRET-0123456789abcdef"
SMTP = {
    "type": "smtp",
    "host": "smtp.example.com",
    "from_address": "news@acme.example.com",
    "username": "mailer",
    "password": SMTP_PASSWORD,
}
HOOKS = {
    "name": "hooks",
    "kind": "webhook",
    "channel_id": 508,
    "provider": {
        "type": "webhook",
        "url": "https://hooks.acme.example.com/in",
        "signing_secret": SIGNING_SECRET,
    },
}
JSON_SMS = {
    "type": "json",
    "url": "https://sms.example.com/send",
    "body_template": '{"to": "{{to}}"}',
    "auth_token": TOKEN,
}


def email(**provider: Any) -> dict[str, Any]:
    return {
        "channels": [
            {"name": "email", "kind": "email", "channel_id": 504, "provider": SMTP | provider},
            HOOKS,
        ]
    }


def sms(**provider: Any) -> dict[str, Any]:
    channel = {"name": "sms", "kind": "sms", "channel_id": 505, "provider": JSON_SMS | provider}
    return {"channels": [channel, HOOKS]}


def hooks(**provider: Any) -> dict[str, Any]:
    return {"channels": [{**HOOKS, "provider": HOOKS["provider"] | provider}]}


# (what, PATCH body, a fragment the 422 names)
SPY = "\r\nBcc: spy@evil.example"
RCPT = "\r\nRCPT TO:<spy@evil.example>"
ATTACKS: list[tuple[str, dict[str, Any], str]] = [
    # Header injection into every mail (a Bcc to the attacker, forged headers).
    ("message_id_domain CRLF Bcc", email(message_id_domain="acme.example.com>" + SPY), "message_id_domain"),
    ("message_id_domain LF", email(message_id_domain="acme.example.com\nX-Evil: 1"), "message_id_domain"),
    ("message_id_domain NUL", email(message_id_domain="acme.example.com\x00"), "message_id_domain"),
    ("message_id_domain not a host", email(message_id_domain="<acme>"), "message_id_domain"),
    ("local_hostname CRLF", email(local_hostname="mx.acme.example.com" + RCPT), "local_hostname"),
    ("from_name CRLF", email(from_name="Acme" + SPY), "from_name"),
    ("host CRLF", email(host="smtp.example.com\r\nX: y"), "host"),
    ("envelope_from CRLF", email(envelope_from="bounce@acme.example.com" + RCPT), "envelope_from"),
    ("json header value CRLF", sms(headers={"X-Tenant": "acme\r\nX-Admin: true"}), "line break"),
    ("json header name", sms(headers={"X-Tenant\r\nX-Admin": "1"}), "invalid header name"),
    ("json auth_scheme CRLF", sms(auth_scheme="Bearer\r\nX-Admin: true"), "auth_scheme"),
    ("json auth_token CRLF", sms(auth_token=TOKEN + "\r\nX-Admin: true"), "auth_token"),
    ("webhook header NUL", hooks(headers={"X-A": "1\x00"}), "line break or NUL"),
    # Only http(s) URLs with a host.
    ("ftp url", sms(url="ftp://files.example.com/send"), "http:// or https://"),
    ("file url", sms(url="file:///etc/passwd"), "http:// or https://"),
    ("gopher webhook", hooks(url="gopher://hooks.example.com:70/_x"), "http:// or https://"),
    ("url without host", sms(url="http:///send"), "host"),
    ("url with a bad port", hooks(url="https://hooks.example.com:99999/in"), "well-formed"),
    # SMTP settings that cannot work (the send job used to fail on them every second).
    ("implicit TLS on 587", email(tls="implicit", port=587), "cannot work on port 587"),
    ("STARTTLS on 465", email(tls="starttls", port=465), "cannot work on port 465"),
    ("port 0", email(port=0), "port"),
    ("no from_address", {"channels": [{"name": "email", "kind": "email", "channel_id": 504, "provider": {"type": "smtp", "host": "smtp.example.com", "password": SMTP_PASSWORD}}]}, "from_address"),  # noqa: E501
    ("bad from_address", email(from_address="not an address"), "from_address"),
    ("user without password", {"channels": [{"name": "sms", "kind": "email", "channel_id": 509, "provider": {**{k: v for k, v in SMTP.items() if k != "password"}}}]}, "username and password"),  # noqa: E501
    ("no type", {"channels": [{"name": "email", "kind": "email", "channel_id": 504, "provider": {"host": "smtp.example.com", "password": SMTP_PASSWORD}}]}, "type"),  # noqa: E501
    ("unknown field", email(colour="red"), "colour"),
]  # fmt: skip


def stored(db_url: str) -> tuple[Any, ...]:
    with psycopg.connect(db_url) as conn:
        tenant = conn.execute("SELECT api_base_url, updated_at FROM tenants WHERE id = 'acme'").fetchone()
        channels = conn.execute(
            "SELECT name, settings::text, secrets, options::text, updated_at FROM channels "
            "WHERE tenant_id = 'acme' ORDER BY name"
        ).fetchall()
    return tenant, tuple(channels)


def test_bad_provider_settings_are_refused_and_nothing_is_stored(served: Served) -> None:
    before = stored(served.db_url)
    with livez_watch(served) as watch:
        for what, body, fragment in ATTACKS:
            reply = served.request("PATCH", "/api/v1/tenants/acme", key=served.acme_key, json=body)
            assert reply.status == 422, (what, reply.status, reply.text)
            detail = reply.json()["detail"]
            assert fragment in str(detail), (what, detail)
            for secret in (SMTP_PASSWORD, TOKEN, SIGNING_SECRET, "spy@evil", "X-Admin: true"):
                assert secret not in reply.text, (what, secret, reply.text)
    assert stored(served.db_url) == before
    assert watch.failures == []
    assert served.livez_ms() < 1000


def test_the_admin_key_gets_the_same_checks_when_adding_a_tenant(served: Served) -> None:
    body = {
        "id": "initech",
        "api_base_url": "https://api.example.com",
        "api_key": "k-SECRET-initech",
        "channels": [
            {
                "name": "email",
                "kind": "email",
                "channel_id": 504,
                "provider": SMTP | {"message_id_domain": "initech.example\r\nBcc: spy@evil.example"},
            }
        ],
    }
    reply = served.request("POST", "/api/v1/tenants", key=served.admin_key, json=body)
    assert reply.status == 422, reply.text
    assert "message_id_domain" in reply.json()["detail"]
    for secret in (SMTP_PASSWORD, "k-SECRET-initech", "spy@evil"):
        assert secret not in reply.text
    with psycopg.connect(served.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM tenants WHERE id = 'initech'").fetchone() == (0,)


def test_a_change_that_keeps_stored_secrets_is_checked_with_them(served: Served) -> None:
    """No secret sent: the stored signing secret is merged in, so a valid change passes, and the
    merged result is what is judged (a broken one is refused)."""
    ok = served.request(
        "PATCH",
        "/api/v1/tenants/acme",
        key=served.acme_key,
        json={
            "channels": [
                {**HOOKS, "provider": {"type": "webhook", "url": "https://hooks2.acme.example.com/in"}}
            ]
        },
    )
    assert ok.status == 200, ok.text
    hooks_out = next(c for c in ok.json()["channels"] if c["name"] == "hooks")
    assert hooks_out["settings"]["url"] == "https://hooks2.acme.example.com/in"
    assert hooks_out["has_secrets"] is True
    broken = served.request(
        "PATCH",
        "/api/v1/tenants/acme",
        key=served.acme_key,
        json={"channels": [{**HOOKS, "provider": {"type": "webhook", "url": "https://h.example/\r\nX: y"}}]},
    )
    assert broken.status == 422, broken.text
