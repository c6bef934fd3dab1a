"""Turning send details into message rows: ids, addresses, attributes, send times."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from optibridge.intake.ingest import (
    ADDRESS_CONTROL_REASON,
    NUL_REASON,
    address_refused,
    build_rows,
    clean_attribute_values,
    message_id,
    plan,
)
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


def fields(text: str) -> list[list[str | None]]:
    """The COPY text back into columns, unescaping as PostgreSQL does."""
    unescape = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
    out: list[list[str | None]] = []
    for line in text.split("\n")[:-1]:
        cols: list[str | None] = []
        for raw in line.split("\t"):
            if raw == "\\N":
                cols.append(None)
                continue
            value, i = [], 0
            while i < len(raw):
                if raw[i] == "\\" and i + 1 < len(raw):
                    value.append(unescape.get(raw[i + 1], raw[i + 1]))
                    i += 2
                else:
                    value.append(raw[i])
                    i += 1
            cols.append("".join(value))
        out.append(cols)
    return out


def test_rows_carry_deterministic_ids_addresses_and_attributes() -> None:
    p = plan("acme", 504, 7, "email", {}, ["FirstName"])
    details = [
        SendDetail("C1", 101, T0, ("c1@example.com", "Ann")),
        SendDetail("C2", 102, T0, ("  ", 'Bo "the\tbest"')),
        SendDetail("C3", 101, T0, ("c3@example.com",)),  # short attribute list
    ]
    page = build_rows(p, details)
    assert (page.count, page.unaddressed) == (3, 1)
    rows = fields(page.copy_text)
    assert [r[:3] for r in rows] == [["acme", "504", "7"]] * 3
    assert [r[3] for r in rows] == [
        message_id("acme", 504, 7, c, t).hex for c, t in (("C1", 101), ("C2", 102), ("C3", 101))
    ]
    assert message_id("acme", 504, 7, "C1", 101) != message_id("acme", 504, 7, "C1", 102)
    assert [r[8] for r in rows] == ["c1@example.com", None, "c3@example.com"]
    assert all(r[9] is not None for r in rows)
    assert json.loads(str(rows[0][9])) == {"Email": "c1@example.com", "FirstName": "Ann"}
    assert json.loads(str(rows[1][9])) == {"Email": "  ", "FirstName": 'Bo "the\tbest"'}
    assert json.loads(str(rows[2][9])) == {"Email": "c3@example.com"}
    assert all(r[6] == r[7] == T0.isoformat() for r in rows)


def test_rows_get_local_send_times_from_the_zone_attribute() -> None:
    p = plan(
        "acme", 504, 7, "email",
        {"timezone_attribute": "TZ", "local_send_time": True, "reference_timezone": "Europe/London"},
        [],
    )  # fmt: skip
    page = build_rows(
        p,
        [
            SendDetail("C1", 1, T0, ("a@x", "America/New_York")),
            SendDetail("C2", 1, T0, ("b@x", "Nowhere/Special")),
        ],
    )
    rows = fields(page.copy_text)
    assert rows[0][7] == datetime(2026, 6, 1, 14, 0, tzinfo=UTC).isoformat()
    assert rows[1][7] == T0.isoformat()
    assert rows[0][6] == T0.isoformat()  # Optimove's own time is kept beside it


def test_a_row_with_a_problem_carries_its_reason_and_no_attributes() -> None:
    p = plan("acme", 504, 7, "email", {}, ["FirstName"])
    bad = SendDetail("C2", 101, T0, (), "customer attributes: 3 values for 2 requested attributes")
    page = build_rows(p, [SendDetail("C1", 101, T0, ("c1@example.com", "Ann")), bad])
    assert (page.count, page.invalid) == (2, 1)
    rows = fields(page.copy_text)
    assert [r[10] for r in rows] == [None, "customer attributes: 3 values for 2 requested attributes"]
    assert json.loads(str(rows[1][9])) == {}
    assert rows[1][8] is None


def test_a_nul_in_a_value_is_stripped_and_in_a_customer_id_fails_that_row_alone() -> None:
    p = plan("acme", 504, 7, "email", {}, ["FirstName"])
    page = build_rows(
        p,
        [
            SendDetail("C1", 101, T0, ("c1@example.com", "Ann")),
            SendDetail("C2", 101, T0, ("c2@example.com", "Bo\x00b")),
            SendDetail("C\x003", 101, T0, ("c3@example.com", "Cy")),
        ],
    )
    assert (page.count, page.invalid, page.cleaned) == (3, 1, 1)
    assert "\x00" not in page.copy_text
    assert "\\u0000" not in page.copy_text.replace("(\\\\u0000)", "")
    rows = fields(page.copy_text)
    assert [r[10] for r in rows] == [None, None, NUL_REASON]
    assert json.loads(str(rows[1][9])) == {"Email": "c2@example.com", "FirstName": "Bob"}
    assert rows[1][8] == "c2@example.com"
    assert json.loads(str(rows[2][9])) == {}
    assert rows[2][8] is None
    assert rows[2][4] == "C\ufffd3"
    # The message id still derives from the customer id Optimove sent.
    assert rows[2][3] == message_id("acme", 504, 7, "C\x003", 101).hex


def test_attribute_values_lose_c0_c1_del_and_surrogates_but_keep_tab_lf_cr() -> None:
    assert clean_attribute_values(("Ann", "Paris", "")) is None
    assert clean_attribute_values(("line 1\nline 2\r\n\tend", "Zoë 😀 \u202eRTL")) is None
    dirty = ("A\x01n\x07n\x1b[31m", "B\x7fo\x85b\x9f", "\ud800C\x0b\x0cy\x08", "keep\ttab\n")
    assert clean_attribute_values(dirty) == ("Ann[31m", "Bob", "Cy", "keep\ttab\n")


def test_an_address_with_any_control_character_refuses_its_row() -> None:
    for bad in ("a@x.com\r\nBcc: b@y.com", "a\x00@x.com", "+1555\t0001", "a@x.com\u2028", "\u202em@x.com",
                "a\x85@x.com", "a\ud800@x.com", "a\x7f@x.com"):  # fmt: skip
        assert address_refused(bad), repr(bad)
    for good in ("a@x.com", "+15550001", "Zoë@exämple.com", "device-token_1:AbC"):
        assert not address_refused(good), good
    p = plan("acme", 504, 7, "email", {}, ["FirstName"])
    page = build_rows(
        p,
        [
            SendDetail("C1", 101, T0, ("c1@example.com\r\nBcc: all@example.com", "Ann")),
            SendDetail("C2", 101, T0, ("  c2@example.com\n", "Bo\x01")),  # trimmed, as before
            SendDetail("C3", 101, T0, ("c3@exam\x00ple.com", "Cy")),
        ],
    )
    assert (page.count, page.invalid, page.unaddressed, page.cleaned) == (3, 2, 2, 1)
    rows = fields(page.copy_text)
    assert [r[10] for r in rows] == [ADDRESS_CONTROL_REASON, None, ADDRESS_CONTROL_REASON]
    assert [r[8] for r in rows] == [None, "c2@example.com", None]
    assert [json.loads(str(r[9])) for r in rows] == [
        {},
        {"Email": "  c2@example.com\n", "FirstName": "Bo"},
        {},
    ]


def test_a_lone_surrogate_in_a_customer_id_fails_that_row_and_does_not_break_the_page() -> None:
    p = plan("acme", 504, 7, "email", {}, ["FirstName"])
    page = build_rows(p, [SendDetail("C\udc801", 101, T0, ("c1@example.com", "Ann"))])
    page.copy_text.encode()  # the whole page must still encode for COPY
    rows = fields(page.copy_text)
    assert (rows[0][4], rows[0][10]) == ("C\ufffd1", NUL_REASON)
