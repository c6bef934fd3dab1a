"""SSRF: a tenant's key must never make the service connect to loopback, private, link-local or
metadata addresses, through any destination it can set (issue 12, finding 1).

Against a real `optibridge serve` (default settings: no private destination allowed):
- every tenant-settable destination (Optimove `api_base_url`, json `url`, webhook `url`, Twilio
  and FCM `base_url`, FCM `token_uri` and the service account's, the `delivery_lookup_url` option)
  set to every internal spelling is refused with 422 and nothing is stored; the CLI and the config
  file refuse the same;
- a destination already stored (a row written before the policy, or a name re-pointed inside
  later) is refused at connect time: a real HTTP server on loopback records that no request
  reaches it from the listeners endpoint, a webhook, the json provider, Twilio, FCM's token fetch
  or the delivery lookup;
- the operator's `allow_private_destinations` opens exactly that: loopback then works, and what
  the upstream answers (its body) still never reaches the API caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from outboundkit import INTERNAL_SECRET, own_hostname_inside, recorder, service_account
from securitykit import Served, livez_watch

from optibridge.channels import OutboundMessage, Outcome, SendResult, build_provider
from optibridge.channels.settings import SmtpSettings
from optibridge.channels.smtp import SmtpProvider
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy
from optibridge.delivery.lookup import LookupTarget, delivered_ids

SECRET_TOKEN = "tok-SECRET-5d1e8b0a77"  # a provider secret sent along: never in a 422 answer
SIGNING_SECRET = "whsec-SECRET-0123456789abcdef"
BODY = '{"to": "{{to}}", "text": "{{body}}"}'
EMAIL = {
    "name": "email",
    "kind": "email",
    "channel_id": 504,
    "provider": {"type": "smtp", "host": "smtp.example.com", "from_address": "news@acme.example.com"},
}
HOOKS = {
    "name": "hooks",
    "kind": "webhook",
    "channel_id": 508,
    "provider": {"type": "webhook", "url": "https://hooks.acme.example.com/in"},  # keeps its secret
}


def internal_targets(port: int) -> list[str]:
    """Every spelling of "inside" a tenant might try; `port` is where the recorder listens."""
    targets = [
        f"http://127.0.0.1:{port}/",
        f"http://[::1]:{port}/",
        "http://10.0.0.1/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/",
        "http://100.64.0.1/",  # carrier-grade NAT
        f"http://0.0.0.0:{port}/",
        f"http://localhost:{port}/",
        f"http://api.localhost:{port}/",
        f"http://2130706433:{port}/",  # 127.0.0.1 as one decimal number
        f"http://0x7f.1:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
    ]
    name = own_hostname_inside()
    if name is not None:  # a name in /etc/hosts resolving to this machine
        targets.append(f"http://{name}:{port}/")
    return targets


def patches(target: str, account: dict[str, str]) -> dict[str, dict[str, Any]]:
    """PATCH bodies that put `target` into each destination a tenant key can set."""
    sms_json = {"type": "json", "url": target, "body_template": BODY, "auth_token": SECRET_TOKEN}
    twilio = {
        "type": "twilio",
        "account_sid": "AC1",
        "auth_token": SECRET_TOKEN,
        "from_number": "+15005550006",
        "base_url": target,
    }

    def with_channel(extra: dict[str, Any]) -> dict[str, Any]:
        return {"channels": [EMAIL, HOOKS, extra]}

    return {
        "api_base_url": {"api_base_url": target},
        "json url": with_channel({"name": "sms", "kind": "sms", "channel_id": 505, "provider": sms_json}),
        "twilio base_url": with_channel(
            {"name": "sms", "kind": "sms", "channel_id": 505, "provider": twilio}
        ),
        "webhook url": {"channels": [EMAIL, {**HOOKS, "provider": {"type": "webhook", "url": target}}]},
        "fcm base_url": with_channel(
            {
                "name": "push",
                "kind": "push",
                "channel_id": 506,
                "provider": {"type": "fcm", "credentials": account, "base_url": target},
            }
        ),
        "fcm token_uri": with_channel(
            {
                "name": "push",
                "kind": "push",
                "channel_id": 506,
                "provider": {"type": "fcm", "credentials": account, "token_uri": target},
            }
        ),
        "fcm credentials.token_uri": with_channel(
            {
                "name": "push",
                "kind": "push",
                "channel_id": 506,
                "provider": {"type": "fcm", "credentials": {**account, "token_uri": target}},
            }
        ),
        "delivery_lookup_url": {
            "channels": [{**EMAIL, "options": {"delivery_lookup_url": target}}, HOOKS],
        },
    }


def stored_state(db_url: str) -> tuple[Any, ...]:
    """Everything a PATCH could change, straight from the database."""
    with psycopg.connect(db_url) as conn:
        tenant = conn.execute("SELECT api_base_url, updated_at FROM tenants WHERE id = 'acme'").fetchone()
        channels = conn.execute(
            "SELECT name, settings::text, secrets, options::text, updated_at FROM channels "
            "WHERE tenant_id = 'acme' ORDER BY name"
        ).fetchall()
    return tenant, tuple(channels)


def test_a_tenant_key_cannot_point_any_destination_inside(served: Served) -> None:
    account = service_account()
    before = stored_state(served.db_url)
    shown_before = served.request("GET", "/api/v1/tenants/acme", key=served.admin_key).json()
    refused: list[str] = []
    with recorder() as rec, livez_watch(served) as watch:
        targets = internal_targets(rec.port)
        assert len(targets) <= 20  # bounded: 20 targets x 8 fields
        for target in targets:
            for field, body in patches(target, account).items():
                reply = served.request("PATCH", "/api/v1/tenants/acme", key=served.acme_key, json=body)
                assert reply.status == 422, (field, target, reply.status, reply.text)
                assert "refused" in reply.text, (field, target, reply.text)
                for secret in (SECRET_TOKEN, account["private_key"][40:80], SIGNING_SECRET):
                    assert secret not in reply.text
                refused.append(f"{field} {target}")
    assert rec.requests == []  # nothing connected anywhere while refusing
    assert len(refused) == len(targets) * 8
    assert stored_state(served.db_url) == before  # nothing stored, not even a timestamp
    shown_after = served.request("GET", "/api/v1/tenants/acme", key=served.admin_key).json()
    assert shown_after == shown_before
    assert watch.failures == []
    assert served.livez_ms() < 1000


def test_a_tenant_cannot_turn_allow_private_on_for_its_webhook(served: Served) -> None:
    before = stored_state(served.db_url)
    body = {"channels": [EMAIL, {**HOOKS, "provider": {**HOOKS["provider"], "allow_private": True}}]}
    reply = served.request("PATCH", "/api/v1/tenants/acme", key=served.acme_key, json=body)
    assert reply.status == 422, reply.text
    assert "allow_private is an operator setting now: allow_private_destinations" in reply.json()["detail"]
    assert stored_state(served.db_url) == before


def test_public_destinations_still_pass(served: Served) -> None:
    """The policy refuses only inside: a tenant can still move its own destinations around."""
    body = {
        "api_base_url": "https://api5.optimove.example.com",
        "channels": [EMAIL, {**HOOKS, "provider": {"type": "webhook", "url": "https://93.184.216.34/in"}}],
    }
    reply = served.request("PATCH", "/api/v1/tenants/acme", key=served.acme_key, json=body)
    assert reply.status == 200, reply.text
    assert reply.json()["api_base_url"] == "https://api5.optimove.example.com"


def _cli(served: Served, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optibridge", *args],
        env=served.env | (env or {}),
        cwd=served.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_and_the_config_file_refuse_the_same(served: Served, tmp_path: Path) -> None:
    tenant_file = tmp_path / "initech.toml"
    tenant_file.write_text('id = "initech"\napi_base_url = "http://127.1:8080"\napi_key = "k-SECRET-1"\n')
    added = _cli(served, "tenants", "add", "--file", str(tenant_file))
    assert added.returncode != 0
    assert "api_base_url refused: 127.0.0.1 is loopback" in added.stderr + added.stdout
    config = tmp_path / "optibridge.toml"
    config.write_text(
        """
[[tenants]]
id = "initech"
api_base_url = "https://api.example.com"
api_key = "k-SECRET-1"
[[tenants.channels]]
name = "hooks"
kind = "webhook"
channel_id = 508
[tenants.channels.provider]
type = "webhook"
url = "http://169.254.169.254/latest/meta-data/"
signing_secret = "whsec-SECRET-0123456789abcdef"
"""
    )
    synced = _cli(served, "tenants", "sync", env={"OPTIBRIDGE_CONFIG": str(config)})
    assert synced.returncode != 0
    output = synced.stderr + synced.stdout
    assert "169.254.169.254 is a cloud metadata address" in output
    assert SIGNING_SECRET not in output
    with psycopg.connect(served.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM tenants WHERE id = 'initech'").fetchone() == (0,)


def _point_acme_at(served: Served, url: str) -> None:
    """A stored row written before the policy existed (or a name re-pointed inside later)."""
    with psycopg.connect(served.db_url) as conn:
        conn.execute("UPDATE tenants SET api_base_url = %s WHERE id = 'acme'", (url,))


def test_listeners_never_reach_inside_and_never_echo_upstream_bodies(served: Served, serve_with: Any) -> None:
    name = own_hostname_inside()
    with recorder(status=500) as rec:
        urls = [rec.url()] + ([rec.url(name)] if name else [])  # literal IP, and a name (resolver)
        for url in urls:
            _point_acme_at(served, url)
            reply = served.request("GET", "/api/v1/tenants/acme/listeners", key=served.acme_key)
            assert reply.status == 200, reply.text
            problem = reply.json()["problem"]
            assert reply.json()["registered"] is None
            assert "refused" in problem, problem
            assert INTERNAL_SECRET not in reply.text
        assert rec.requests == []  # the default policy: nothing reached the internal server
        # The operator opens loopback: the same call now reaches it, and its body is still ours.
        opened = serve_with({"OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8"]'})
        _point_acme_at(opened, rec.url())
        reply = opened.request("GET", "/api/v1/tenants/acme/listeners", key=opened.acme_key)
        assert reply.status == 200, reply.text
        assert len(rec.requests) == 1
        assert reply.json()["problem"] == "Optimove answered 500 (server error)"
        assert INTERNAL_SECRET not in reply.text
        synced = opened.request("POST", "/api/v1/tenants/acme/listeners/sync", key=opened.acme_key)
        assert synced.status == 502, synced.text
        assert INTERNAL_SECRET not in synced.text
    assert INTERNAL_SECRET not in served.log_text() + opened.log_text()


# -- connect time: providers built by the production factory under the default policy -------------


def _message(to: str) -> OutboundMessage:
    return OutboundMessage(
        message_id="m-1", tenant_id="acme", campaign_id=1, customer_id="c1", template_id=1, to=to, body="{}"
    )


def _providers(url: str) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "webhook": ("webhook", {"type": "webhook", "url": url, "signing_secret": SIGNING_SECRET}),
        "json": ("sms", {"type": "json", "url": url, "body_template": BODY, "auth_token": SECRET_TOKEN}),
        "twilio": (
            "sms",
            {
                "type": "twilio",
                "account_sid": "AC1",
                "auth_token": SECRET_TOKEN,
                "from_number": "+15005550006",
                "base_url": url.rstrip("/"),
            },
        ),
        "fcm token": ("push", {"type": "fcm", "credentials": service_account(token_uri=url)}),
    }


async def _send_each(policy: OutboundPolicy, url: str) -> dict[str, Any]:
    results = {}
    for label, (kind, settings) in _providers(url).items():
        provider = build_provider(kind, settings, policy=policy)
        async with provider:
            results[label] = await provider.send(_message("device-token" if kind == "push" else "+15550100"))
    return results


async def test_providers_refuse_a_name_that_resolves_inside_at_connect_time() -> None:
    name = own_hostname_inside()
    if name is None:
        pytest.skip("this machine's name does not resolve inside")
    with recorder(status=200) as rec:
        url = rec.url(name)
        results = await _send_each(OutboundPolicy(), url)  # the default: what a worker runs with
        for label, result in results.items():
            assert result.outcome in (Outcome.PERMANENT, Outcome.TRANSIENT), (label, result)
            reason = result.reason or ""
            assert "destination refused" in reason or "outbound policy" in reason, (label, reason)
        with pytest.raises(DestinationRefusedError):
            await delivered_ids(LookupTarget(url), ["m-1"])
        with pytest.raises(DestinationRefusedError):  # a literal IP never reaches the resolver
            await delivered_ids(LookupTarget(rec.url()), ["m-1"])
        assert rec.requests == []
        # The operator's switch: the same providers reach loopback.
        opened = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])
        reached = await _send_each(opened, url)
        assert reached["webhook"].outcome is Outcome.SENT
        assert reached["json"].outcome is Outcome.SENT
        assert await delivered_ids(LookupTarget(url, opened), ["m-1"]) == set()
        assert {path for _, path in rec.requests} >= {"/", "/2010-04-01/Accounts/AC1/Messages.json"}


def test_the_factory_refuses_literal_inside_urls_under_the_default_policy() -> None:
    name = own_hostname_inside()
    with recorder() as rec:
        for target in internal_targets(rec.port):
            if name is not None and target.startswith(f"http://{name}:"):
                continue  # a name is judged when resolved (the test above)
            for label, (kind, settings) in _providers(target).items():
                with pytest.raises(ConfigError, match="refused"):
                    build_provider(kind, settings)
                assert label  # each of webhook, json, twilio, fcm token
        assert rec.requests == []


async def test_upstream_bodies_never_become_a_message_reason() -> None:
    opened = OutboundPolicy.from_strings(["127.0.0.0/8"])
    with recorder(status=500) as rec:
        results = await _send_each(opened, rec.url())
    assert len(rec.requests) >= 3  # the webhook, json and Twilio sends reached it (FCM: its token)
    for label, result in results.items():
        assert result.outcome is not Outcome.SENT, label
        assert "hunter2" not in (result.reason or ""), (label, result.reason)
    body = json.dumps({"error": INTERNAL_SECRET, "detail": INTERNAL_SECRET}).encode()
    assert results["json"].reason == f"HTTP 500 (server error, {len(body)}-byte body)"


def test_the_environment_spells_the_setting_as_documented() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
    env["OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS"] = '["127.0.0.0/8", "::1/128"]'
    code = (
        "from optibridge.core.config import Settings; "
        "print(Settings().outbound_policy.check_url('http://[::1]/'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


async def test_smtp_refuses_a_host_that_resolves_inside_at_connect_time() -> None:
    """The SMTP host is checked when saved, but a name can be re-pointed inside afterwards (DNS
    rebinding): every new SMTP connection checks the addresses again."""
    from optibridge.sinks import SmtpSink

    name = own_hostname_inside()
    if name is None:
        pytest.skip("this machine's name does not resolve inside")
    message = OutboundMessage(
        message_id="m-smtp-1",
        tenant_id="acme",
        campaign_id=1,
        customer_id="c1",
        template_id=1,
        to="someone@example.com",
        subject="hi",
        body="<p>hi</p>",
    )
    async with SmtpSink(host="0.0.0.0") as sink:
        for host in (name, "127.0.0.1"):
            settings = SmtpSettings(
                type="smtp", host=host, port=sink.port, tls="none", from_address="news@acme.example.com"
            )
            # Built directly: the write-time check would refuse these, the connect-time one must too.
            refused = await _smtp_send(SmtpProvider(settings, policy=OutboundPolicy()), message)
            assert refused.outcome is Outcome.PERMANENT, (host, refused)
            assert "destination refused" in (refused.reason or ""), (host, refused.reason)
        assert sink.messages == []
        opened = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128", "192.0.2.0/24"])
        settings = SmtpSettings(
            type="smtp", host="127.0.0.1", port=sink.port, tls="none", from_address="news@acme.example.com"
        )
        sent = await _smtp_send(SmtpProvider(settings, policy=opened), message)
        assert sent.outcome is Outcome.SENT, sent
        assert len(sink.messages) == 1


async def _smtp_send(provider: SmtpProvider, message: OutboundMessage) -> SendResult:
    async with provider:
        return await provider.send(message)
