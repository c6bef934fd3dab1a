"""Fuzzed tracking URLs and receipt bodies against the real endpoints: never a 5xx, nothing recorded."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from feedback_helpers import Seeded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optibridge.feedback.keys import sign_body
from optibridge.web.receipts import SIGNATURE_HEADER

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TOKEN_CHARS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
B64_TOKENS = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=0, max_size=200
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
receipt_like = st.fixed_dictionaries(
    {},
    optional={
        "message_id": st.uuids().map(str) | st.text(max_size=40),
        "status": st.sampled_from(["delivered", "bounced", "opened", "weird", ""]) | st.integers(),
        "event_id": st.text(max_size=300) | st.integers(),
        "occurred_at": st.text(max_size=40) | st.datetimes().map(lambda d: d.isoformat()),
        "reason": st.text(max_size=20) | st.integers(),
    },
)


async def _count(seeded: Seeded) -> int:
    async with seeded.stack.runtime.pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) AS n FROM message_events")).fetchone()
    assert row is not None
    return int(row["n"])


@FUZZ
@given(
    token=TOKEN_CHARS | B64_TOKENS,
    kind=st.sampled_from(["o", "c", "u"]),
    method=st.sampled_from(["GET", "POST"]),
)
async def test_fuzzed_tracking_tokens_are_never_a_server_error(
    seeded: Seeded, token: str, kind: str, method: str
) -> None:
    url = f"{seeded.stack.base_url}/t/{kind}/{quote(token, safe='')}"
    async with seeded.stack.session.request(
        method, url, data="List-Unsubscribe=One-Click", allow_redirects=False
    ) as resp:
        assert resp.status < 500
        assert resp.status in (404, 405) or not token  # nothing forged gets through
    assert await _count(seeded) == 0


@FUZZ
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()), signed=st.booleans())
async def test_fuzzed_generic_reports_are_never_a_server_error(
    seeded: Seeded, body: bytes, signed: bool
) -> None:
    headers = {SIGNATURE_HEADER: sign_body(seeded.stack.keys.receipt_secret("t1"), body)} if signed else {}
    async with seeded.stack.session.post(
        f"{seeded.stack.base_url}/r/generic/t1", data=body, headers=headers
    ) as resp:
        assert resp.status < 500
    assert await _count(seeded) == 0


@FUZZ
@given(events=st.lists(receipt_like, max_size=4) | receipt_like)
async def test_fuzzed_signed_receipt_objects_record_nothing_for_unknown_messages(
    seeded: Seeded, events: Any
) -> None:
    body = json.dumps(events).encode()
    headers = {SIGNATURE_HEADER: sign_body(seeded.stack.keys.receipt_secret("t1"), body)}
    async with seeded.stack.session.post(
        f"{seeded.stack.base_url}/r/generic/t1", data=body, headers=headers
    ) as resp:
        assert resp.status in (200, 400)
    assert await _count(seeded) == 0


@FUZZ
@given(
    form=st.dictionaries(
        st.sampled_from(["MessageSid", "MessageStatus", "ErrorCode", "x"]), st.text(max_size=50)
    )
)
async def test_fuzzed_twilio_forms_with_forged_tokens_are_404(seeded: Seeded, form: dict[str, str]) -> None:
    async with seeded.stack.session.post(
        f"{seeded.stack.base_url}/r/twilio/AAAA{len(form)}", data=form
    ) as resp:
        assert resp.status == 404
    assert await _count(seeded) == 0
