"""Promotion settings through the admin API and the CLI: checked against the outbound policy,
the token write-only and stored encrypted, a tenant key limited to its tenant."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from optibridge.channels.factory import validate_tenant
from optibridge.core.config import TenantConfig
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.store import promotions as store
from optibridge.store import tenants
from optibridge.web import admin, auth

from inprocess import Service, running_service

TOKEN = "promo-bearer-9d1e77"


def tenant(tenant_id: str) -> TenantConfig:
    return TenantConfig.model_validate(
        {"id": tenant_id, "api_base_url": "https://api5.example.com", "api_key": f"k-{tenant_id}"}
    )


class Api:
    def __init__(self, svc: Service, keys: dict[str, str]) -> None:
        self.svc = svc
        self.keys = keys
        self.texts: list[str] = []

    async def call(self, method: str, path: str, body: Any = None, key: str = "admin") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.svc.base_url + path, json=body, headers=headers) as resp,
        ):
            text = await resp.text()
            self.texts.append(text)
            return resp.status, json.loads(text) if text else None


@pytest.fixture
async def api(db_url: str, test_secret_key: str) -> AsyncIterator[Api]:
    def mount(app: Any) -> None:
        admin.install(app, app.state.runtime)

    async with running_service(db_url, test_secret_key, worker=False, configure_app=mount) as svc:
        async with svc.runtime.pool.connection() as conn:
            for tid in ("acme", "globex"):
                await tenants.add(conn, svc.runtime.box, tenant(tid), "cli")
            _, admin_key = await auth.create_key(conn, "ops", None)
            _, globex_key = await auth.create_key(conn, "globex-ops", "globex")
        yield Api(svc, {"admin": admin_key, "globex": globex_key})


PATH = "/api/v1/tenants/acme/promotions"


async def test_settings_round_trip_without_the_token(api: Api) -> None:
    status, body = await api.call("GET", PATH)
    assert (status, body["enabled"], body["webhook_url"], body["has_token"]) == (200, False, None, False)
    wanted = {
        "enabled": True,
        "webhook_url": "http://127.0.0.1:9/activate",
        "bearer_token": TOKEN,
        "batch_size": 500,
        "deadline_margin_s": 60,
        "on_deadline": "leave",
    }
    status, body = await api.call("PUT", PATH, wanted)
    assert status == 200, body
    assert body == {
        "enabled": True,
        "webhook_url": "http://127.0.0.1:9/activate",
        "has_token": True,
        "batch_size": 500,
        "deadline_margin_s": 60,
        "on_deadline": "leave",
    }
    # No token in the change: the stored one is kept; "" removes it; no URL: accept all.
    status, body = await api.call("PUT", PATH, {"enabled": True, "webhook_url": "http://127.0.0.1:9/b"})
    assert (status, body["has_token"], body["batch_size"]) == (200, True, 10_000)
    rt = api.svc.runtime
    async with rt.pool.connection() as conn:
        assert await store.bearer_token(conn, rt.box, "acme") == TOKEN
    status, body = await api.call("PUT", PATH, {"enabled": True, "webhook_url": None, "bearer_token": ""})
    assert (status, body["has_token"], body["webhook_url"]) == (200, False, None)
    assert not any(TOKEN in text for text in api.texts)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook_url": "http://10.1.2.3/activate"}, "outbound policy"),
        ({"webhook_url": "ftp://promo.example.com/"}, "http"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"on_deadline": "retry_forever"}, "on_deadline"),
        ({"bearer_token": "a\r\nX-Injected: 1"}, "single line"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_settings_are_refused_and_nothing_changes(
    api: Api, change: dict[str, Any], reason: str
) -> None:
    status, body = await api.call("PUT", PATH, {"enabled": True, **change})
    assert status == 422
    assert reason in json.dumps(body)
    assert (await api.call("GET", PATH))[1]["enabled"] is False


async def test_a_tenant_key_reaches_only_its_tenant_and_runs_are_listed(api: Api) -> None:
    status, _ = await api.call("PUT", PATH, {"enabled": True}, key="globex")
    assert status == 403
    assert (await api.call("GET", "/api/v1/tenants/globex/promotions", key="globex"))[0] == 200
    assert (await api.call("GET", "/api/v1/tenants/nope/promotions"))[0] == 404
    async with api.svc.runtime.pool.connection() as conn:
        await store.start_run(conn, "acme", 77, datetime(2026, 12, 1, tzinfo=UTC))
        await store.batch_done(conn, "acme", 77, from_skip=0, count=10, activated=7, refused=3)
    status, runs = await api.call("GET", PATH + "/runs")
    assert status == 200
    assert [(r["campaign_id"], r["status"], r["next_skip"], r["activated"], r["refused"]) for r in runs] == [
        (77, "running", 10, 7, 3)
    ]


def test_the_cli_shows_and_sets_the_settings(service_env: dict[str, str]) -> None:
    def cli(*args: str, env: dict[str, str] = service_env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "optibridge", *args], env=env, capture_output=True, text=True, timeout=120
        )

    add = cli("tenants", "add", "acme", "--api-url", "https://api5.example.com", "--api-key", "k1")
    assert add.returncode == 0, add.stderr
    set_env = service_env | {"OPTIBRIDGE_PROMOTIONS_TOKEN": TOKEN}
    done = cli(
        "tenants", "promotions", "acme", "--enable", "--webhook-url", "http://127.0.0.1:9/a",
        "--batch-size", "2000", env=set_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["enabled"], shown["webhook_url"], shown["has_token"], shown["batch_size"]) == (
        True, "http://127.0.0.1:9/a", True, 2000
    )  # fmt: skip
    assert TOKEN not in done.stdout + done.stderr
    accept = json.loads(cli("tenants", "promotions", "acme", "--accept-all").stdout)
    assert (accept["enabled"], accept["webhook_url"], accept["batch_size"]) == (True, None, 2000)
    refused = cli("tenants", "promotions", "acme", "--webhook-url", "http://10.0.0.8/x")
    assert refused.returncode != 0
    assert "outbound policy" in refused.stderr


async def test_a_config_file_tenant_takes_its_settings_from_the_file(api: Api) -> None:
    rt = api.svc.runtime

    def from_file(promotions: dict[str, Any] | None) -> TenantConfig:
        data: dict[str, Any] = {"id": "initech", "api_base_url": "https://api5.example.com", "api_key": "k"}
        if promotions is not None:
            data["promotions"] = promotions
        return TenantConfig.model_validate(data)

    file_settings = {"enabled": True, "webhook_url": "http://127.0.0.1:9/p", "bearer_token": TOKEN}
    async with rt.pool.connection() as conn:
        assert await tenants.upsert_from_config(conn, rt.box, from_file(file_settings)) == "added"
        assert await tenants.upsert_from_config(conn, rt.box, from_file(file_settings)) == "unchanged"
        assert await store.bearer_token(conn, rt.box, "initech") == TOKEN
        # The file no longer states the token: it is gone (a file states everything).
        without_token = {k: v for k, v in file_settings.items() if k != "bearer_token"}
        assert await tenants.upsert_from_config(conn, rt.box, from_file(without_token)) == "updated"
        assert await store.bearer_token(conn, rt.box, "initech") is None
        assert (await store.get_settings(conn, "initech")).enabled is True
        assert await tenants.upsert_from_config(conn, rt.box, from_file(None)) == "updated"
        assert await store.get_settings(conn, "initech") == store.PromotionSettings()
        assert await tenants.upsert_from_config(conn, rt.box, from_file(without_token)) == "updated"
    status, body = await api.call("PUT", "/api/v1/tenants/initech/promotions", {"enabled": False})
    assert status == 409
    assert "config file" in json.dumps(body)
    assert (await api.call("GET", "/api/v1/tenants/initech/promotions"))[1]["enabled"] is True


def test_a_refused_webhook_url_in_the_config_file_is_a_config_error() -> None:
    config = TenantConfig.model_validate(
        {
            "id": "initech",
            "api_base_url": "https://api5.example.com",
            "api_key": "k",
            "promotions": {"enabled": True, "webhook_url": "http://169.254.169.254/latest"},
        }
    )
    with pytest.raises(ConfigError, match=r"promotions\.webhook_url refused"):
        validate_tenant(config, OutboundPolicy())
