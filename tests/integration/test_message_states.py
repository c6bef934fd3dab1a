"""MessageState is the one list of message states: the database's enum must say the same, in order."""

from __future__ import annotations

from typing import Any

from optibridge.core.states import FINAL_STATES, OPEN_STATES, MessageState


async def test_the_migrated_message_state_enum_matches_message_state(conn: Any) -> None:
    rows = await (
        await conn.execute(
            """SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
               WHERE t.typname = 'message_state' ORDER BY e.enumsortorder"""
        )
    ).fetchall()
    assert [r["enumlabel"] for r in rows] == [s.value for s in MessageState]


def test_every_state_is_either_open_or_final() -> None:
    assert set(MessageState) == OPEN_STATES | FINAL_STATES
    assert not OPEN_STATES & FINAL_STATES
