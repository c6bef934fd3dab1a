"""Turning send details into message rows: ids, addresses, attributes, send times."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from optibridge.intake.ingest import build_rows, message_id, plan
from optibridge.optimove import SendDetail

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def test_plan_requests_address_zone_extras_and_template_attributes_once() -> None:
    p = plan(
        "acme", 504, 7, "email",
        {"timezone_attribute": "TimeZone", "extra_attributes": ["email", "Tier"]},
        ["FirstName", "TimeZone", "Tier", "FirstName"],
    )  # fmt: skip
    assert p.attributes == ("Email", "TimeZone", "Tier", "FirstName")
    assert (p.address_index, p.timezone_index) == (0, 1)
    assert p.contact_column == "email"


def test_resumed_ingest_keeps_the_attributes_it_started_with() -> None:
    p = plan("acme", 505, 7, "sms", {}, ["NewAttr"], fixed_attributes=["MobilePhone", "Old"])
    assert p.attributes == ("MobilePhone", "Old")
    assert p.address_index == 0


def test_address_only_from_contacts_when_configured_empty() -> None:
    p = plan("acme", 505, 7, "sms", {"address_attribute": ""}, ["FirstName"])
    assert p.attributes == ("FirstName",)
    assert p.address_index is None


def test_rows_carry_deterministic_ids_addresses_and_attributes() -> None:
    p = plan("acme", 504, 7, "email", {}, ["FirstName"])
    details = [
        SendDetail("C1", 101, T0, ("c1@example.com", "Ann")),
        SendDetail("C2", 102, T0, ("  ", "Bo")),
        SendDetail("C3", 101, T0, ("c3@example.com",)),  # short attribute list
    ]
    rows = build_rows(p, details)
    assert [r[0] for r in rows] == [
        message_id("acme", 504, 7, "C1", 101),
        message_id("acme", 504, 7, "C2", 102),
        message_id("acme", 504, 7, "C3", 101),
    ]
    assert message_id("acme", 504, 7, "C1", 101) != message_id("acme", 504, 7, "C1", 102)
    assert [r[5] for r in rows] == ["c1@example.com", None, "c3@example.com"]
    assert json.loads(rows[0][6]) == {"Email": "c1@example.com", "FirstName": "Ann"}
    assert json.loads(rows[2][6]) == {"Email": "c3@example.com"}
    assert all(r[3] == r[4] == T0 for r in rows)


def test_rows_get_local_send_times_from_the_zone_attribute() -> None:
    p = plan(
        "acme", 504, 7, "email",
        {"timezone_attribute": "TZ", "local_send_time": True, "reference_timezone": "Europe/London"},
        [],
    )  # fmt: skip
    rows = build_rows(
        p,
        [
            SendDetail("C1", 1, T0, ("a@x", "America/New_York")),
            SendDetail("C2", 1, T0, ("b@x", "Nowhere/Special")),
        ],
    )
    assert rows[0][4] == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    assert rows[1][4] == T0
    assert rows[0][3] == T0  # Optimove's own time is kept beside it
