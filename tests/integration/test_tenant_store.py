"""Tenants in the database: encrypted credentials, duplicates refused whole, config upserts."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from optibridge.core.config import TenantConfig
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.core.secretbox import SecretBox, generate_key
from optibridge.store import tenants as store

Conn = psycopg.AsyncConnection[dict[str, Any]]


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([generate_key().encode()])


def tenant(**over: Any) -> TenantConfig:
    data: dict[str, Any] = {
        "id": "acme",
        "name": "Acme",
        "api_base_url": "https://api5.optimove.net",
        "api_key": "key-123456",
        "channels": [
            {
                "name": "email",
                "kind": "email",
                "channel_id": 504,
                "provider": {"host": "smtp.acme", "password": "smtp-pass-999"},
            },
            {"name": "sms", "kind": "sms", "channel_id": 505},
        ],
    }
    data.update(over)
    return TenantConfig.model_validate(data)


async def test_added_tenant_reads_back_without_credentials_in_clear(conn: Conn, box: SecretBox) -> None:
    await store.add(conn, box, tenant(), "cli")
    got = await store.get(conn, "acme")
    assert (got.name, got.auth_kind, got.source) == ("Acme", "api_key", "cli")
    assert [(c.name, c.optimove_channel_id) for c in got.channels] == [("email", 504), ("sms", 505)]
    assert got.channels[0].settings == {"host": "smtp.acme"}
    assert await store.credentials(conn, box, "acme") == {"api_key": "key-123456"}
    raw = await (await conn.execute("SELECT credentials::text AS c FROM tenants")).fetchone()
    assert raw is not None
    assert "key-123456" not in raw["c"]
    dump = await (await conn.execute("SELECT secrets::text AS s FROM channels")).fetchall()
    assert all("smtp-pass-999" not in (r["s"] or "") for r in dump)


async def test_duplicate_tenant_is_refused_and_leaves_the_first_intact(conn: Conn, box: SecretBox) -> None:
    await store.add(conn, box, tenant(), "cli")
    with pytest.raises(ConflictError, match="already exists"):
        await store.add(conn, box, tenant(api_key="other", name="Other"), "cli")
    assert (await store.get(conn, "acme")).name == "Acme"
    assert await store.credentials(conn, box, "acme") == {"api_key": "key-123456"}


async def test_a_failing_channel_rolls_back_the_whole_tenant(conn: Conn, box: SecretBox) -> None:
    class Boom(Exception):
        pass

    original = store._insert_channel
    calls = 0

    async def failing(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Boom
        await original(*args)

    store._insert_channel = failing  # type: ignore[assignment]
    try:
        with pytest.raises(Boom):
            await store.add(conn, box, tenant(), "cli")
    finally:
        store._insert_channel = original  # type: ignore[assignment]
    assert await store.list_all(conn) == []
    count = await (await conn.execute("SELECT count(*) AS n FROM channels")).fetchone()
    assert count == {"n": 0}


async def test_config_upsert_adds_updates_and_leaves_unchanged(conn: Conn, box: SecretBox) -> None:
    assert await store.upsert_from_config(conn, box, tenant()) == "added"
    assert await store.upsert_from_config(conn, box, tenant()) == "unchanged"
    changed = tenant(api_key="rotated", channels=[{"name": "push", "kind": "push", "channel_id": 506}])
    assert await store.upsert_from_config(conn, box, changed) == "updated"
    got = await store.get(conn, "acme")
    assert [c.name for c in got.channels] == ["push"]
    assert await store.credentials(conn, box, "acme") == {"api_key": "rotated"}


async def test_config_upsert_keeps_a_channel_in_place_and_states_its_secrets_whole(
    conn: Conn, box: SecretBox
) -> None:
    """A file lists every secret: one dropped from the file is dropped from the store (unlike the API)."""
    await store.upsert_from_config(conn, box, tenant())
    before = await (await conn.execute("SELECT created_at FROM channels WHERE name = 'email'")).fetchone()
    changed = tenant(
        channels=[{"name": "email", "kind": "email", "channel_id": 514, "provider": {"host": "smtp2.acme"}}]
    )
    assert await store.upsert_from_config(conn, box, changed) == "updated"
    row = await (await conn.execute("SELECT * FROM channels WHERE tenant_id = 'acme'")).fetchall()
    assert len(row) == 1
    assert before is not None
    assert row[0]["created_at"] == before["created_at"]  # updated in place: its templates survive
    assert (row[0]["optimove_channel_id"], row[0]["settings"], row[0]["secrets"]) == (
        514, {"host": "smtp2.acme"}, None,
    )  # fmt: skip


async def test_config_does_not_overwrite_a_tenant_added_by_hand(conn: Conn, box: SecretBox) -> None:
    await store.add(conn, box, tenant(), "cli")
    with pytest.raises(ConflictError, match="already added by cli"):
        await store.upsert_from_config(conn, box, tenant(api_key="from-file"))
    assert await store.credentials(conn, box, "acme") == {"api_key": "key-123456"}


async def test_remove_deletes_channels_too_and_unknown_ids_are_not_found(conn: Conn, box: SecretBox) -> None:
    await store.add(conn, box, tenant(), "cli")
    await store.remove(conn, "acme")
    count = await (await conn.execute("SELECT count(*) AS n FROM channels")).fetchone()
    assert count == {"n": 0}
    with pytest.raises(NotFoundError):
        await store.remove(conn, "acme")
    with pytest.raises(NotFoundError):
        await store.get(conn, "nobody")
