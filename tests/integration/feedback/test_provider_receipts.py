"""Provider receipts over real HTTP, and send-time results: de-duplicated, tenant-scoped, suppressing."""

from __future__ import annotations

import json
import uuid
from typing import Any

from feedback_helpers import T0, TWILIO_AUTH_TOKEN, Seeded

from optibridge.channels.base import SENT, Outcome, SendResult
from optibridge.feedback.keys import sign_body
from optibridge.feedback.links import generic_receipt_url, twilio_status_callback_url
from optibridge.feedback.receipt_parsing import twilio_signature
from optibridge.feedback.send_results import record_send_results
from optibridge.feedback.suppression import suppressed
from optibridge.web.receipts import SIGNATURE_HEADER, TWILIO_SIGNATURE_HEADER


async def _events(seeded: Seeded) -> list[tuple[Any, ...]]:
    async with seeded.stack.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT tenant_id, customer_id, kind, source FROM message_events ORDER BY id")
        ).fetchall()
    return [(r["tenant_id"], r["customer_id"], r["kind"], r["source"]) for r in rows]


async def _twilio(
    seeded: Seeded, index: int, form: dict[str, str], *, auth_token: str = TWILIO_AUTH_TOKEN
) -> int:
    """POST a status callback signed as Twilio signs it (the stack has no public URL: the URL called)."""
    url = twilio_status_callback_url(
        seeded.stack.base_url, seeded.sms[index].id, seeded.stack.keys, issued_at=T0
    )
    headers = {TWILIO_SIGNATURE_HEADER: twilio_signature(auth_token, url, form.items())}
    async with seeded.stack.session.post(url, data=form, headers=headers) as resp:
        return resp.status


async def test_twilio_callbacks_record_delivery_once_however_often_twilio_repeats(seeded: Seeded) -> None:
    for status in ("queued", "sent", "delivered", "delivered", "delivered"):
        assert await _twilio(seeded, 0, {"MessageSid": "SM" + "a" * 32, "MessageStatus": status}) == 200
    assert await _events(seeded) == [("t1", "C1", "delivered", "twilio")]


async def test_twilio_undelivered_bad_number_is_a_bounce_and_suppresses_the_number(seeded: Seeded) -> None:
    form = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered", "ErrorCode": "30006"}
    assert await _twilio(seeded, 1, form) == 200
    assert await _events(seeded) == [("t1", "C2", "bounced", "twilio")]
    async with seeded.stack.runtime.pool.connection() as conn:
        found = await suppressed(conn, "t1", "sms", addresses=["+1 555 000 0002", seeded.sms[2].address])
    assert found == {"+1 555 000 0002"}


async def test_twilio_callback_with_a_bad_token_or_body_records_nothing(seeded: Seeded) -> None:
    base = seeded.stack.base_url
    async with seeded.stack.session.post(f"{base}/r/twilio/abc", data={"MessageStatus": "delivered"}) as resp:
        assert resp.status == 404
    assert await _twilio(seeded, 0, {"MessageSid": "SM1"}) == 400
    assert await _twilio(seeded, 0, {"MessageSid": "SM1", "MessageStatus": "exploded"}) == 400
    assert await _events(seeded) == []


async def test_twilio_callbacks_unsigned_or_signed_with_another_token_are_403(seeded: Seeded) -> None:
    form = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "undelivered", "ErrorCode": "21610"}
    assert await _twilio(seeded, 0, form, auth_token="not-the-accounts-token") == 403
    url = twilio_status_callback_url(seeded.stack.base_url, seeded.sms[0].id, seeded.stack.keys, issued_at=T0)
    async with seeded.stack.session.post(url, data=form) as resp:
        assert resp.status == 403
    assert await _events(seeded) == []


async def test_twilio_callbacks_past_the_reporting_window_are_410(seeded: Seeded) -> None:
    form = {"MessageSid": "SM" + "d" * 32, "MessageStatus": "delivered"}
    seeded.clock.advance(days=8, minutes=1)  # sent at T0; window 7 days + 1 day of grace
    assert await _twilio(seeded, 0, form) == 410
    assert await _events(seeded) == []


async def _generic(
    seeded: Seeded, tenant: str, payload: Any, *, secret: str | None = None
) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    key = secret or seeded.stack.keys.receipt_secret(tenant)
    async with seeded.stack.session.post(
        generic_receipt_url(seeded.stack.base_url, tenant),
        data=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(key, body)},
    ) as resp:
        return resp.status, await resp.json()


async def test_generic_reports_are_deduplicated_by_event_id(seeded: Seeded) -> None:
    m = seeded.email
    batch = [
        {"message_id": str(m[0].id), "status": "delivered", "event_id": "e1"},
        {
            "message_id": str(m[1].id),
            "status": "complained",
            "event_id": "e2",
            "occurred_at": "2024-03-01T13:00:00Z",
        },
        {"message_id": str(m[0].id), "status": "delivered", "event_id": "e1"},
    ]
    assert await _generic(seeded, "t1", batch) == (200, {"received": 3, "recorded": 2})
    assert await _generic(seeded, "t1", batch) == (200, {"received": 3, "recorded": 0})
    assert await _events(seeded) == [
        ("t1", "C1", "delivered", "generic"),
        ("t1", "C2", "complained", "generic"),
    ]


async def test_generic_reports_cannot_touch_another_tenants_messages(seeded: Seeded) -> None:
    event = {"message_id": str(seeded.email[0].id), "status": "bounced", "event_id": "x"}
    status, answer = await _generic(seeded, "t2", event)  # signed by t2, about a message of t1
    assert (status, answer["recorded"]) == (200, 0)
    status, _ = await _generic(seeded, "t1", event, secret=seeded.stack.keys.receipt_secret("t2"))
    assert status == 404  # t2's key does not sign for t1
    assert await _events(seeded) == []


async def test_a_generic_report_with_one_bad_event_records_none(seeded: Seeded) -> None:
    batch = [
        {"message_id": str(seeded.email[0].id), "status": "delivered", "event_id": "ok"},
        {"message_id": "not-a-uuid", "status": "delivered", "event_id": "bad"},
    ]
    status, answer = await _generic(seeded, "t1", batch)
    assert status == 400
    assert "message_id" in answer["error"]
    assert await _events(seeded) == []


async def test_send_time_bounces_are_recorded_and_suppressed_others_are_not(seeded: Seeded) -> None:
    m = seeded.email
    results = [
        (m[0].id, SENT),
        (m[1].id, SendResult(Outcome.PERMANENT, reason="550 5.1.1 user unknown", bounce=True)),
        (str(m[2].id), SendResult(Outcome.PERMANENT, reason="552 message too big")),
        (m[3].id, SendResult(Outcome.TRANSIENT, reason="421 try later")),
        (uuid.uuid4(), SendResult(Outcome.PERMANENT, bounce=True)),  # unknown message: ignored
    ]
    async with seeded.stack.runtime.pool.connection() as conn:
        async with conn.transaction():
            assert await record_send_results(conn, results, now=T0) == 1
            assert await record_send_results(conn, results, now=T0) == 0
        found = await suppressed(conn, "t1", "email", addresses=[a.address for a in m], customer_ids=["C2"])
    assert await _events(seeded) == [("t1", "C2", "bounced", "send")]
    assert found == {m[1].address}  # a bounce suppresses the address, not the customer
