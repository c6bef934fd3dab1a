"""Attacks on what the service shows: /metrics on the public port, error bodies that echo secrets,
JSON nested deep enough to crash a recursive parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from psycopg.rows import dict_row
from securitykit import Served, http_request, livez_watch, non_loopback_address

from optibridge.core.secretbox import SecretBox
from optibridge.store import listener_tokens


def _remote_host() -> str:
    host = non_loopback_address()
    if host is None:
        pytest.skip("this machine has no non-loopback address to play a remote client from")
    return host


def test_metrics_are_not_shown_to_remote_clients(serve_with: Callable[..., Served]) -> None:
    served = serve_with({"OPTIBRIDGE_HOST": "0.0.0.0"})
    remote = _remote_host()
    # A tenant's traffic puts its id into the counters; a remote scrape must not see them.
    served.request("GET", "/api/v1/tenants/acme", key=served.acme_key)
    outside = http_request(served.port, "GET", "/metrics", host=remote)
    assert outside.status == 404
    assert b"acme" not in outside.body
    # A forwarded-for header from a remote client cannot pass it off as loopback.
    spoofed = http_request(
        served.port, "GET", "/metrics", host=remote, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert spoofed.status == 404
    inside = served.request("GET", "/metrics")  # loopback: the operator's own scraper
    assert inside.status == 200
    assert b"optibridge_" in inside.body


def test_metrics_token_is_required_when_set(serve_with: Callable[..., Served]) -> None:
    served = serve_with({"OPTIBRIDGE_HOST": "0.0.0.0", "OPTIBRIDGE_METRICS_TOKEN": "scrape-me-0123456789"})
    remote = _remote_host()
    assert http_request(served.port, "GET", "/metrics", host=remote).status == 404
    wrong = {"Authorization": "Bearer scrape-me-wrong"}
    assert http_request(served.port, "GET", "/metrics", host=remote, headers=wrong).status == 404
    right = {"Authorization": "Bearer scrape-me-0123456789"}
    assert http_request(served.port, "GET", "/metrics", host=remote, headers=right).status == 200
    # With a token set, loopback alone is not enough either.
    assert served.request("GET", "/metrics").status == 404


def test_validation_errors_never_echo_secrets(served: Served) -> None:
    secret = "SECRET-optimove-key-do-not-echo"
    password = "SECRET-smtp-password-do-not-echo"
    reply = served.request(
        "PATCH",
        "/api/v1/tenants/acme",
        key=served.acme_key,
        json={
            "api_key": secret,
            "username": "both-styles-at-once",
            "channels": [
                {
                    "name": "email",
                    "kind": "email",
                    "channel_id": 504,
                    "provider": {"type": "smtp", "host": "", "from_address": "x", "password": password},
                }
            ],
        },
    )
    assert reply.status == 422
    assert secret not in reply.text
    assert password not in reply.text
    bad_type = served.request(
        "PATCH", "/api/v1/tenants/acme", key=served.acme_key, json={"api_key": [secret]}
    )
    assert bad_type.status == 422
    assert secret not in bad_type.text
    assert secret not in served.log_text()
    assert password not in served.log_text()


async def _listener_path(served: Served) -> str:
    box = SecretBox([served.env["OPTIBRIDGE_SECRET_KEY"].encode()])
    async with await psycopg.AsyncConnection.connect(
        served.db_url, autocommit=True, row_factory=dict_row
    ) as conn:
        token = await listener_tokens.current(conn, box, "acme")
    return f"/optimove/acme/{token}/events"


def test_deeply_nested_json_is_a_clear_error_not_a_crash(served: Served) -> None:
    path = asyncio.run(_listener_path(served))
    deep_list = b"[" * 20_000 + b"]" * 20_000
    with livez_watch(served) as watch:
        listener = served.request("POST", path, body=deep_list, headers={"Content-Type": "application/json"})
        admin = served.request(
            "PATCH",
            "/api/v1/tenants/acme",
            key=served.acme_key,
            body=b'{"name": ' + deep_list + b"}",
            headers={"Content-Type": "application/json"},
        )
        preview = served.request(
            "POST",
            "/api/v1/tenants/acme/channels/email/templates/preview",
            key=served.acme_key,
            body=b'{"attributes": ' + deep_list + b"}",
            headers={"Content-Type": "application/json"},
        )
    assert listener.status == 400, listener
    assert admin.status in (400, 422), admin
    assert preview.status in (400, 422), preview
    assert "Traceback" not in served.log_text()
    assert "RecursionError" not in served.log_text()
    watch.assert_responsive()
