"""Addresses from contacts when Optimove does not hold them; no address is a counted failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from optibridge.core.config import TenantConfig
from optibridge.core.errors import ConfigError
from optibridge.core.secretbox import SecretBox, generate_key
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.intake import registration
from optibridge.store import contacts, tenants

from inprocess import running_service

Conn = psycopg.AsyncConnection[dict[str, Any]]


async def add_tenant(
    conn: Conn, box: SecretBox, base_url: str = "http://127.0.0.1:9", **options: Any
) -> None:
    config = TenantConfig.model_validate(
        {
            "id": "acme",
            "api_base_url": base_url,
            "api_key": "k",
            "channels": [{"name": "sms", "kind": "sms", "channel_id": 505, "options": options}],
        }
    )
    await tenants.add(conn, box, config, "cli")


async def test_csv_import_upserts_and_a_second_load_changes_nothing(conn: Conn, tmp_path: Path) -> None:
    await add_tenant(conn, SecretBox([generate_key().encode()]))
    csv_file = tmp_path / "c.csv"
    csv_file.write_text(
        "CustomerID,Phone,email,Tier\nC1,+33600000001,a@x.fr,gold\nC2,,b@x.fr,\nC1,+33600000009,,silver\n"
    )
    report = await contacts.import_csv(conn, "acme", csv_file)
    assert (report.rows, report.upserted) == (3, 2)
    rows = await (
        await conn.execute("SELECT customer_id, email, phone, attributes FROM contacts ORDER BY 1")
    ).fetchall()
    assert rows == [
        {"customer_id": "C1", "email": None, "phone": "+33600000009", "attributes": {"Tier": "silver"}},
        {"customer_id": "C2", "email": "b@x.fr", "phone": None, "attributes": {}},
    ]
    again = await contacts.import_csv(conn, "acme", csv_file)
    assert (again.rows, again.upserted, again.skipped) == (3, 0, 3)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty file"),
        ("email,phone\na@x,1\n", "no customer_id column"),
        ("customer_id,email\nC1,a@x\n,b@x\n", "line 3: empty customer_id"),
        ("customer_id,email\nC1,a@x,extra\n", "line 2: more fields"),
        # An address with a control character inside it: header injection or a misdirected send.
        (
            'customer_id,email\nC1,a@x\nC2,"b@x.fr\r\nBcc: all@x.fr"\n',
            "line 3: email holds a control character",
        ),
        ("customer_id,phone\nC1,+336\u202e0000\n", "line 2: phone holds a control character"),
        ("customer_id,email\nC\x001,a@x\n", "line 2: customer_id holds a NUL"),
    ],
)
async def test_bad_csv_is_refused_and_nothing_is_loaded(
    conn: Conn, tmp_path: Path, text: str, reason: str
) -> None:
    await add_tenant(conn, SecretBox([generate_key().encode()]))
    csv_file = tmp_path / "c.csv"
    csv_file.write_text(text)  # where a good line precedes a bad one, it must not stay loaded
    with pytest.raises(ConfigError, match=reason):
        await contacts.import_csv(conn, "acme", csv_file)
    assert await (await conn.execute("SELECT count(*) AS n FROM contacts")).fetchone() == {"n": 0}


async def test_ingest_takes_addresses_from_contacts_and_counts_customers_without_one(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        rt = svc.runtime
        await emu.control.create_tenant("acme", api_key="k", channels={505: "SMS"})
        async with rt.pool.connection() as conn:
            await add_tenant(conn, rt.box, emu.base_url, address_attribute="")
            csv_file = tmp_path / "c.csv"
            csv_file.write_text(
                "customer_id,phone\n" + "".join(f"C{i},+4470000000{i:02d}\n" for i in range(1, 81))
            )
            await contacts.import_csv(conn, "acme", csv_file)
        await registration.sync_tenant(rt, "acme")
        cid = (await emu.control.create_campaign("acme", channel_ids=[505], customer_count=100))[
            "campaign_id"
        ]
        await emu.control.notify("acme", event_type_ids=[1], campaign_id=cid)
        await svc.wait_idle()
        async with rt.pool.connection() as conn:
            states = await (
                await conn.execute(
                    "SELECT state, reason, count(*) AS n, count(address) AS with_address FROM messages "
                    "GROUP BY state, reason ORDER BY state"
                )
            ).fetchall()
            campaign = await (await conn.execute("SELECT messages, no_address FROM campaigns")).fetchone()
            c5 = await (
                await conn.execute("SELECT address FROM messages WHERE customer_id = 'C5'")
            ).fetchone()
        assert states == [
            {"state": "pending", "reason": None, "n": 80, "with_address": 80},
            {"state": "failed", "reason": "no address", "n": 20, "with_address": 0},
        ]
        assert campaign == {"messages": 100, "no_address": 20}
        assert c5 == {"address": "+447000000005"}


async def test_control_characters_are_stripped_from_contact_attributes(conn: Conn, tmp_path: Path) -> None:
    await add_tenant(conn, SecretBox([generate_key().encode()]))
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("customer_id,email,FirstName\nC1,a@x.fr,Bo\x00b\x1b\n")
    report = await contacts.import_csv(conn, "acme", csv_file)
    assert report.upserted == 1
    row = await (await conn.execute("SELECT attributes FROM contacts")).fetchone()
    assert row == {"attributes": {"FirstName": "Bob"}}
