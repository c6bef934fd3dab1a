"""release_claims writes a chunk sent without a hitch through a two-array statement; whichever
statement writes it, a sent message's row must end the same, and only the claimer's rows change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from optibridge.core.secretbox import SecretBox, generate_key, parse_keys
from optibridge.core.states import MessageState
from optibridge.store import messages as message_store
from optibridge.store.messages import ClaimOutcome
from optibridge.testing.feedback import add_tenant, seed_campaign

TENANT, CHANNEL_ID = "acme", 77
COLUMNS = (
    "state::text, reason, attempts, provider, provider_message_id, sent_at, claimed_by, claimed_until, "
    "send_at"
)


async def _claimed(conn: Any, me: str, now: datetime, n: int) -> list[message_store.ClaimedMessage]:
    await add_tenant(conn, SecretBox(parse_keys(generate_key())), TENANT, "http://127.0.0.1:9", "k")
    await seed_campaign(
        conn, tenant_id=TENANT, channel_name="sms", channel_kind="sms", channel_id=CHANNEL_ID,
        campaign_id=1, customers=n, sent_at=now - timedelta(minutes=1), state="pending",
    )  # fmt: skip
    return await message_store.claim_due(
        conn, TENANT, CHANNEL_ID, me, now, limit=n, until=now + timedelta(minutes=10)
    )


async def _row(conn: Any, message_id: object) -> dict[str, Any]:
    found = await (
        await conn.execute(f"SELECT {COLUMNS} FROM messages WHERE id = %s", (message_id,))
    ).fetchone()
    assert found is not None
    return dict(found)


async def test_a_sent_chunk_is_written_as_the_general_statement_writes_it(conn: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = await _claimed(conn, "w1", now, 5)
    assert [r.attempts for r in rows] == [1] * 5
    assert all(r.attrs is not None for r in rows)
    fast, general, retried = rows[:2], rows[2:4], rows[4]

    def sent(row: message_store.ClaimedMessage) -> ClaimOutcome:
        return ClaimOutcome(
            row.id, MessageState.SENT, provider="twilio", provider_message_id=f"SM{row.id.hex}"
        )

    # All sent: the two-array statement.
    assert await message_store.release_claims(conn, [sent(r) for r in fast], "w1", now) == 2
    # A retry among them: the general statement writes the sent ones too.
    retry_at = now + timedelta(minutes=5)
    mixed = [
        *(sent(r) for r in general),
        ClaimOutcome(retried.id, MessageState.PENDING, "busy", retry_at, -1),
    ]
    assert await message_store.release_claims(conn, mixed, "w1", now) == 3

    written = [await _row(conn, r.id) for r in rows]
    for row, got in zip(fast + general, written, strict=False):
        assert got == {
            "state": "sent", "reason": None, "attempts": 1, "provider": "twilio",
            "provider_message_id": f"SM{row.id.hex}", "sent_at": now, "claimed_by": None,
            "claimed_until": None, "send_at": row.send_at,
        }  # fmt: skip
    assert written[4] | {"send_at": None} == {
        "state": "pending", "reason": "busy", "attempts": 0, "provider": None, "provider_message_id": None,
        "sent_at": None, "claimed_by": None, "claimed_until": None, "send_at": None,
    }  # fmt: skip
    assert written[4]["send_at"] == retry_at


async def test_a_sent_chunk_leaves_rows_another_worker_holds(conn: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = await _claimed(conn, "w1", now, 3)
    # Reconciled meanwhile and claimed again by w2: w1's late answer must not write over it.
    await conn.execute("UPDATE messages SET claimed_by = 'w2' WHERE id = %s", (rows[0].id,))
    outcomes = [ClaimOutcome(r.id, MessageState.SENT, provider="twilio") for r in rows]
    assert await message_store.release_claims(conn, outcomes, "w1", now) == 2
    assert (await _row(conn, rows[0].id))["state"] == "claimed"
    assert [(await _row(conn, r.id))["state"] for r in rows[1:]] == ["sent", "sent"]
