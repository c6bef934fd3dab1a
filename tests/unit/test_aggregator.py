"""The SMS aggregator flow's pure parts: the x-hub-signature, batch parsing (one bad recipient never
fails the others), the report decision and its retry backoff."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from optibridge.feedback.aggregator_reports import backoff, report_body, verdict
from optibridge.intake.aggregator_batch import (
    PREPARED_TEMPLATE_ID,
    InvalidBatch,
    normalise_number,
    parse,
    scheduled_time,
    text_problem,
)
from optibridge.intake.aggregator_intake import campaign_send_url
from optibridge.intake.ingest import message_id
from optibridge.optimove.aggregator import classify, encode, key_matches, signature, signature_valid
from optibridge.store.aggregator import ReportCandidate

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_signature_is_lower_hex_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) == f"sha256={expected}"
    assert signature_valid("s3cret", body, f"sha256={expected}")
    assert signature_valid("s3cret", body, f"SHA256={expected.upper()}")  # hex either case


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "deadbeef", "sha1=abc", "sha256=" + "0" * 64, "sha256=" + "a" * 500],
)
def test_a_wrong_or_missing_signature_is_refused(header: str | None) -> None:
    assert not signature_valid("s3cret", b"{}", header)


def test_the_signature_covers_every_byte_and_the_secret() -> None:
    good = signature("s3cret", b'{"a":1}')
    assert not signature_valid("s3cret", b'{"a": 1}', good)  # same JSON, other bytes
    assert not signature_valid("other", b'{"a":1}', good)
    assert not signature_valid("", b'{"a":1}', signature("", b'{"a":1}'))  # no secret, no trust


def test_key_matches_exactly() -> None:
    assert key_matches("k1", "k1")
    assert not key_matches("k1", "k2")
    assert not key_matches("k1", None)
    assert not key_matches("k1", "k1 ")


def test_status_classification() -> None:
    assert classify(200) is None
    assert classify(204) is None
    assert classify(429) is True
    assert classify(503) is True
    assert classify(408) is True
    assert classify(400) is False
    assert classify(401) is False
    assert classify(404) is False


def test_encode_is_compact_utf8() -> None:
    assert encode({"m": "é ✓"}) == '{"m":"é ✓"}'.encode()


def batch(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "batchId": "b1",
        "requestId": "r1",
        "senderId": "ACME",
        "metadata": {"campaignId": 42, "channelId": 505, "scheduledTime": 1_764_417_600_000, "tenantId": 7},
        "recipients": [
            {"customerId": "c1", "mobileNumber": "+1 (555) 000-0001", "message": "Hi c1\nline two"},
            {"customerId": 2, "mobileNumber": "+15550000002", "message": "Hi 2"},
        ],
    }
    body.update(over)
    return body


def test_parse_a_good_batch() -> None:
    b = parse(batch(), "acme", 505, NOW)
    assert (b.batch_id, b.request_id, b.campaign_id, b.sender_id) == ("b1", "r1", 42, "ACME")
    assert b.scheduled_at == datetime(2025, 11, 29, 12, 0, tzinfo=UTC)
    assert [r.customer_id for r in b.rows] == ["c1", "2"]
    assert b.rows[0].mobile_number == "+15550000001"
    assert b.rows[0].attrs == {"message": "Hi c1\nline two", "sender_id": "ACME"}
    assert b.rows[0].id == message_id("acme", 505, 42, "c1", PREPARED_TEMPLATE_ID)
    assert b.accepted == 2
    assert not b.notes


def test_message_ids_are_stable_so_a_repeat_inserts_nothing() -> None:
    first = parse(batch(), "acme", 505, NOW)
    again = parse(batch(batchId="b2", requestId="r2"), "acme", 505, NOW + timedelta(hours=1))
    assert [r.id for r in first.rows] == [r.id for r in again.rows]
    other_channel = parse(batch(), "acme", 506, NOW)
    assert not {r.id for r in first.rows} & {r.id for r in other_channel.rows}


def test_one_bad_recipient_fails_alone_with_a_note() -> None:
    recipients = [
        {"customerId": "ok", "mobileNumber": "+15550000001", "message": "fine"},
        {"customerId": "nonum", "message": "x"},
        {"customerId": "empty", "mobileNumber": "+15550000003", "message": " "},
        {"customerId": "ctl", "mobileNumber": "+15550000004", "message": "a\x00b"},
        {"customerId": "letters", "mobileNumber": "call me", "message": "x"},
        {"mobileNumber": "+15550000005", "message": "no customer"},
        "not an object",
        {"customerId": "ok", "mobileNumber": "+15550000001", "message": "listed twice"},
    ]
    b = parse(batch(recipients=recipients), "acme", 505, NOW)
    reasons = {r.customer_id: r.reason for r in b.rows}
    assert reasons == {
        "ok": None,
        "nonum": "no usable mobileNumber",
        "empty": "empty message text",
        "ctl": "message text holds a control character",
        "letters": "no usable mobileNumber",
    }
    assert b.accepted == 1
    assert b.recipients == 8
    joined = " | ".join(b.notes)
    for reason in ("without customerId", "not an object", "listed twice", "control character"):
        assert reason in joined


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "JSON object"),
        (batch(batchId=None), "batchId"),
        (batch(batchId=""), "batchId"),
        (batch(metadata=None), "metadata"),
        (batch(metadata={"campaignId": "x"}), "campaignId"),
        (batch(metadata={"campaignId": -1}), "campaignId"),
        (batch(recipients={"a": 1}), "recipients"),
        (batch(senderId="x\ny"), "senderId"),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_whole(body: object, reason: str) -> None:
    with pytest.raises(InvalidBatch, match=reason):
        parse(body, "acme", 505, NOW)


def test_scheduled_time_in_ms_or_seconds() -> None:
    assert scheduled_time(1_764_417_600_000, NOW) == datetime(2025, 11, 29, 12, 0, tzinfo=UTC)
    assert scheduled_time(1_764_417_600, NOW) == datetime(2025, 11, 29, 12, 0, tzinfo=UTC)
    assert scheduled_time("1764417600000", NOW) == datetime(2025, 11, 29, 12, 0, tzinfo=UTC)
    for unusable in (None, "soon", -5, True, 10**30):
        assert scheduled_time(unusable, NOW) == NOW


def test_numbers_and_texts() -> None:
    assert normalise_number(" +44 20 7946 0958 ") == "+442079460958"
    assert normalise_number(15550001) == "15550001"
    for bad in ("", "abc", "+1\n555", "12", None, True, "+" + "1" * 40):
        assert normalise_number(bad) is None
    assert text_problem("a\r\nb") is None
    assert text_problem("x" * 5001) is not None
    assert text_problem(5) is not None


def candidate(**over: Any) -> ReportCandidate:
    base: dict[str, Any] = {
        "message_id": uuid.uuid4(),
        "tenant_id": "acme",
        "channel_id": 505,
        "batch_id": "b1",
        "request_id": "r1",
        "sender_id": "ACME",
        "metadata": {"campaignId": 42, "tenantId": 7, "type": "ignored"},
        "customer_id": "c1",
        "mobile_number": "+15550000001",
        "state": "sent",
        "reason": None,
        "sent_at": NOW,
        "receipt": None,
        "receipt_reason": None,
        "attempts": 0,
    }
    base.update(over)
    return ReportCandidate(**base)


def test_verdicts() -> None:
    v = verdict(candidate(), NOW, 0)
    assert not isinstance(v, datetime)
    assert (v.status, v.sub_status) == ("Delivered", "AcceptedByProvider")
    assert verdict(candidate(), NOW, 60) == NOW + timedelta(seconds=60)  # wait for a receipt
    v = verdict(candidate(receipt="delivered"), NOW, 60)
    assert not isinstance(v, datetime)
    assert (v.status, v.sub_status) == ("Delivered", "DeliveredToHandset")
    v = verdict(candidate(receipt="bounced"), NOW, 60)
    assert not isinstance(v, datetime)
    assert (v.status, v.sub_status) == ("Failed", "InvalidNumber")
    v = verdict(candidate(state="failed", reason="twilio 21211"), NOW, 0)
    assert not isinstance(v, datetime)
    assert (v.status, v.sub_status) == ("Failed", "twilio 21211")
    v = verdict(candidate(state="expired"), NOW, 0)
    assert not isinstance(v, datetime)
    assert (v.status, v.sub_status) == ("Failed", "Expired")


def test_report_body_echoes_metadata_and_names_the_recipient() -> None:
    c = candidate()
    v = verdict(c, NOW, 0)
    assert not isinstance(v, datetime)
    body = report_body(c, v, NOW)
    assert body["type"] == {"status": "Delivered", "subStatus": "AcceptedByProvider"}
    assert body["campaignId"] == 42
    assert body["tenantId"] == 7
    assert (body["batchId"], body["customerId"], body["mobileNumber"]) == ("b1", "c1", "+15550000001")
    assert body["messageId"] == str(c.message_id)
    assert body["timestamp"] == int(NOW.timestamp() * 1000)


def test_backoff_grows_to_an_hour() -> None:
    assert backoff(1, transient=True) == timedelta(seconds=15)
    assert backoff(3, transient=True) == timedelta(seconds=60)
    assert backoff(30, transient=True) == timedelta(hours=1)
    assert backoff(1, transient=False) == timedelta(hours=1)


def test_campaign_send_url_carries_the_token() -> None:
    assert (
        campaign_send_url("https://ob.example/", "acme", "tok", 505)
        == "https://ob.example/aggregator/acme/tok/channels/505/campaigns"
    )
