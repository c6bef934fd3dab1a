"""The reporting mode and the engagement token through every write path: the admin API, the config
file and the CLI. The token is stored encrypted and never answered back; a base URL override passes
the outbound policy; config-file tenants are left to the file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg
import pytest

from optibridge.channels.factory import validate_tenant
from optibridge.core.config import TenantConfig
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.core.secretbox import SecretBox, parse_keys
from optibridge.store import engagement_events as engagement_store
from optibridge.store import tenants
from optibridge.web import admin, auth

from inprocess import Service, running_service

TOKEN = "engagement-secret-5d1f0a"
NEW_TOKEN = "engagement-secret-rotated-77c3"


def tenant_config(tenant_id: str, engagement: dict[str, Any] | None) -> TenantConfig:
    data: dict[str, Any] = {
        "id": tenant_id,
        "api_base_url": "http://127.0.0.1:9",
        "api_key": "k-" + tenant_id,
    }
    if engagement is not None:
        data["engagement_events"] = engagement
    return TenantConfig.model_validate(data)


@dataclass
class Api:
    svc: Service
    keys: dict[str, str]
    texts: list[str]

    async def call(self, method: str, path: str, key: str = "admin", body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        url = f"{self.svc.base_url}/api/v1/tenants/{path}/engagement-events"
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, url, json=body, headers=headers) as r,
        ):
            text = await r.text()
            self.texts.append(text)
            return r.status, json.loads(text) if text else None


@pytest.fixture
async def api(db_url: str, test_secret_key: str) -> AsyncIterator[Api]:
    async with running_service(
        db_url, test_secret_key, worker=False, configure_app=lambda app: admin.install(app, app.state.runtime)
    ) as svc:
        async with svc.runtime.pool.connection() as conn:
            await tenants.add(conn, svc.runtime.box, tenant_config("acme", None), "cli")
            await tenants.add(conn, svc.runtime.box, tenant_config("globex", None), "cli")
            await tenants.upsert_from_config(conn, svc.runtime.box, tenant_config("filed", None))
            _, admin_key = await auth.create_key(conn, "ops", None)
            _, acme_key = await auth.create_key(conn, "acme-ops", "acme")
        yield Api(svc, {"admin": admin_key, "acme": acme_key}, [])


async def test_the_admin_api_sets_the_mode_and_never_shows_the_token(api: Api, db_url: str) -> None:
    status, body = await api.call("GET", "acme")
    assert (status, body["mode"], body["has_token"]) == (200, "classic", False)

    status, body = await api.call("PUT", "acme", body={"mode": "events", "metric_tenant_id": "1234"})
    assert status == 422  # events mode without a token
    assert "token" in body["detail"]

    status, body = await api.call(
        "PUT", "acme", key="acme", body={"mode": "events", "metric_tenant_id": "1234", "token": TOKEN}
    )
    assert status == 200  # a tenant key sets its own tenant's
    assert body["mode"] == "events"
    assert body["has_token"] is True
    assert body["effective_base_url"] == "https://metric-1234.optimove.net"

    # No token in the change: the stored one stays.
    status, body = await api.call("PUT", "acme", body={"mode": "both", "metric_tenant_id": "1234"})
    assert (status, body["mode"], body["has_token"]) == (200, "both", True)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT token FROM tenant_engagement WHERE tenant_id = 'acme'").fetchone()
    assert row is not None
    assert TOKEN.encode() not in bytes(row[0])  # encrypted at rest
    async with api.svc.runtime.pool.connection() as aconn:
        assert await engagement_store.token(aconn, api.svc.runtime.box, "acme") == TOKEN

    # A base URL inside a network the operator did not open is refused; loopback is open here.
    inside = {"mode": "events", "metric_tenant_id": "1234", "base_url": "http://10.0.0.7/metric-{tenant_id}"}
    status, body = await api.call("PUT", "acme", body=inside)
    assert status == 422
    assert "base_url refused" in body["detail"]
    loop = {**inside, "base_url": "http://127.0.0.1:9/metric-{tenant_id}"}
    status, body = await api.call("PUT", "acme", body=loop)
    assert (status, body["effective_base_url"]) == (200, "http://127.0.0.1:9/metric-1234")

    assert (await api.call("GET", "globex", key="acme"))[0] == 403
    assert (await api.call("PUT", "globex", key="acme", body={"mode": "classic"}))[0] == 403
    assert (await api.call("GET", "nobody"))[0] == 404
    status, body = await api.call("PUT", "filed", body={"mode": "classic"})
    assert status == 409  # the config file defines it
    assert (await api.call("PUT", "acme", body={"mode": "events", "token": 5}))[0] == 422
    assert (await api.call("PUT", "acme", body={"mode": "sometimes"}))[0] == 422

    assert (await api.call("DELETE", "acme"))[0] == 204
    status, body = await api.call("GET", "acme")
    assert (body["mode"], body["has_token"], body["metric_tenant_id"]) == ("classic", False, None)
    assert not any(TOKEN in text for text in api.texts)


async def test_the_config_file_states_the_settings_and_a_start_keeps_them_in_step(
    conn: psycopg.AsyncConnection[dict[str, Any]], test_secret_key: str
) -> None:
    box = SecretBox(parse_keys(test_secret_key))
    settings = {"mode": "both", "metric_tenant_id": "77", "token": TOKEN}
    assert await tenants.upsert_from_config(conn, box, tenant_config("filed", settings)) == "added"
    assert (await engagement_store.get(conn, "filed")).mode == "both"
    assert await tenants.upsert_from_config(conn, box, tenant_config("filed", settings)) == "unchanged"
    rotated = {**settings, "token": NEW_TOKEN}
    assert await tenants.upsert_from_config(conn, box, tenant_config("filed", rotated)) == "updated"
    assert await engagement_store.token(conn, box, "filed") == NEW_TOKEN
    assert await tenants.upsert_from_config(conn, box, tenant_config("filed", None)) == "updated"
    assert (await engagement_store.get(conn, "filed")).mode == "classic"
    assert await engagement_store.token(conn, box, "filed") is None


def test_every_write_path_refuses_incomplete_settings_or_an_inside_url() -> None:
    strict = OutboundPolicy.from_strings(["127.0.0.0/8"])  # the tenants' API base is on loopback
    with pytest.raises(ConfigError, match="needs the engagement token"):
        validate_tenant(tenant_config("a", {"mode": "events", "metric_tenant_id": "1"}), strict)
    with pytest.raises(ConfigError, match="needs metric_tenant_id"):
        validate_tenant(tenant_config("a", {"mode": "both", "token": TOKEN}), strict)
    inside = {"mode": "events", "metric_tenant_id": "1", "token": TOKEN, "base_url": "http://169.254.169.254"}
    with pytest.raises(ConfigError, match="base_url refused"):
        validate_tenant(tenant_config("a", inside), strict)
    validate_tenant(tenant_config("a", {"mode": "events", "metric_tenant_id": "1", "token": TOKEN}), strict)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optibridge", *args], env=env, capture_output=True, text=True, timeout=120
    )


# Five CLI processes (each starts Python and opens the database): about 10 s, the slow tier.
@pytest.mark.slow
def test_the_cli_sets_shows_and_clears_without_echoing_the_token(service_env: dict[str, str]) -> None:
    added = run(service_env, "tenants", "add", "acme", "--api-url", "http://127.0.0.1:9", "--api-key", "k")
    assert added.returncode == 0, added.stderr
    env = service_env | {"OPTIBRIDGE_ENGAGEMENT_TOKEN": TOKEN}
    proc = run(env, "tenants", "engagement-events", "acme", "--mode", "events", "--metric-tenant-id", "55")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert (shown["mode"], shown["has_token"], shown["effective_base_url"]) == (
        "events",
        True,
        "https://metric-55.optimove.net",
    )
    assert TOKEN not in proc.stdout + proc.stderr
    # Options not given keep their stored values (the token too).
    proc = run(service_env, "tenants", "engagement-events", "acme", "--mode", "both")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metric_tenant_id"] == "55"
    assert json.loads(proc.stdout)["has_token"] is True
    bad = run(service_env, "tenants", "engagement-events", "acme", "--base-url", "http://10.1.1.1")
    assert bad.returncode != 0
    assert "base_url refused" in bad.stderr
    assert "Traceback" not in bad.stderr
    cleared = run(service_env, "tenants", "engagement-events", "acme", "--clear")
    assert json.loads(cleared.stdout)["mode"] == "classic"
    assert json.loads(cleared.stdout)["has_token"] is False
