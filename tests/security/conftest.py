"""Attack tests against a running service: `optibridge serve` as its own process, real PostgreSQL.

Fixtures:
- `served`: the service with default settings (no private destinations allowed, no worker), tenants
  `acme` (API-key auth, email + webhook channels) and `globex`, an admin key and a key scoped to each
  tenant;
- `serve_with(extra_env, workers=0)`: the same with more settings (OPTIBRIDGE_* variables).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from optibridge.core.config import TenantConfig
from optibridge.core.secretbox import SecretBox
from optibridge.store import tenants
from optibridge.web import auth

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from securitykit import Served

from servicekit import free_port, start, stop

ACME_OPTIMOVE_KEY = "acme-optimove-key-0123456789"
GLOBEX_OPTIMOVE_KEY = "globex-optimove-key-0123456789"


def _tenant(tenant_id: str, api_key: str) -> TenantConfig:
    return TenantConfig.model_validate(
        {
            "id": tenant_id,
            "name": tenant_id.title(),
            "api_base_url": "https://optimove.example.com",
            "api_key": api_key,
            "channels": [
                {
                    "name": "email",
                    "kind": "email",
                    "channel_id": 504,
                    "provider": {
                        "type": "smtp",
                        "host": "smtp.example.com",
                        "from_address": f"news@{tenant_id}.example.com",
                    },
                },
                {
                    "name": "hooks",
                    "kind": "webhook",
                    "channel_id": 508,
                    "provider": {
                        "type": "webhook",
                        "url": f"https://hooks.{tenant_id}.example.com/in",
                        "signing_secret": "s" * 32,
                    },
                },
            ],
        }
    )


async def _seed(db_url: str, secret_key: str) -> dict[str, str]:
    box = SecretBox([secret_key.encode()])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        await tenants.add(conn, box, _tenant("acme", ACME_OPTIMOVE_KEY), "api")
        await tenants.add(conn, box, _tenant("globex", GLOBEX_OPTIMOVE_KEY), "api")
        _, admin_key = await auth.create_key(conn, "ops", None)
        _, acme_key = await auth.create_key(conn, "acme-ops", "acme")
        _, globex_key = await auth.create_key(conn, "globex-ops", "globex")
    return {"admin": admin_key, "acme": acme_key, "globex": globex_key}


def _wait_live(served: Served, timeout_s: float = 90.0) -> None:
    """Until /livez answers (migrations done, HTTP up); the server log if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            raise AssertionError(f"serve exited with {served.proc.returncode}:\n{served.log_text()[-4000:]}")
        try:
            if served.request("GET", "/livez", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/livez never answered:\n{served.log_text()[-4000:]}")


@pytest.fixture
def serve_with(db_url: str, tmp_path: Path, test_secret_key: str) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []
    keys: dict[str, str] = {}

    def launch(extra_env: dict[str, str] | None = None, workers: int = 0) -> Served:
        if not keys:
            keys.update(asyncio.run(_seed(db_url, test_secret_key)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
        env.pop("DATABASE_URL", None)
        port = free_port()
        env |= {
            "OPTIBRIDGE_DATABASE_URL": db_url,
            "OPTIBRIDGE_SECRET_KEY": test_secret_key,
            "OPTIBRIDGE_DATA_DIR": str(tmp_path / "data"),
            "OPTIBRIDGE_LOG_FORMAT": "json",
            "OPTIBRIDGE_PORT": str(port),
            "OPTIBRIDGE_WORKERS": str(workers),
            "OPTIBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        env |= extra_env or {}
        log = tmp_path / f"serve-{len(started)}.log"
        proc = start(["serve"], env, tmp_path, log)
        served = Served(
            base_url=f"http://127.0.0.1:{port}",
            proc=proc,
            admin_key=keys["admin"],
            acme_key=keys["acme"],
            globex_key=keys["globex"],
            env=env,
            db_url=db_url,
            log=log,
            cwd=tmp_path,
        )
        started.append(served)
        _wait_live(served)
        return served

    yield launch
    for served in started:
        stop(served.proc)


@pytest.fixture
def served(serve_with: Callable[..., Served]) -> Served:
    return serve_with()
