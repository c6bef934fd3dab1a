"""The listener over real HTTP: who gets 404, what gets 400, and fuzzing for 5xx and leaks."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optibridge.core.config import TenantConfig
from optibridge.store import listener_tokens, tenants
from optibridge.web import listener as listener_module

from inprocess import running_service


@dataclass
class Listener:
    host: str
    port: int
    token: str
    db_url: str

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers or {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def channel_path(self, token: str | None = None, tenant: str = "acme", channel: str = "504") -> str:
        return f"/optimove/{tenant}/{token or self.token}/channels/{channel}/events"

    def stored(self) -> tuple[int, int]:
        with psycopg.connect(self.db_url) as conn:
            notes = conn.execute("SELECT count(*) FROM notifications").fetchone()
            jobs = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'intake'"
            ).fetchone()
        assert notes is not None
        assert jobs is not None
        return notes[0], jobs[0]


@pytest.fixture
def listener(db_url: str, test_secret_key: str) -> Iterator[Listener]:
    """The service in a thread of its own (hypothesis drives it synchronously from the test)."""
    ready: dict[str, Any] = {}
    started = threading.Event()
    stop: asyncio.Event | None = None
    loop_box: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        # No worker: jobs stay queued, so a test can count exactly what was enqueued.
        async with running_service(db_url, test_secret_key, worker=False) as svc:
            config = TenantConfig.model_validate(
                {
                    "id": "acme",
                    "api_base_url": "http://127.0.0.1:9",
                    "api_key": "k",
                    "channels": [{"name": "email", "kind": "email", "channel_id": 504}],
                }
            )
            async with svc.runtime.pool.connection() as conn:
                await tenants.add(conn, svc.runtime.box, config, "cli")
                ready["token"] = await listener_tokens.current(conn, svc.runtime.box, "acme")
            ready["url"] = svc.base_url
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(60), "service did not start"
    parts = urlsplit(ready["url"])
    assert parts.hostname
    assert parts.port
    try:
        yield Listener(parts.hostname, parts.port, ready["token"], db_url)
    finally:
        loop_box[0].call_soon_threadsafe(lambda: stop.set() if stop else None)
        thread.join(30)


VALID = json.dumps({"EventTypeID": 1, "TimeStamp": "2026-06-01 10:00:00", "CampaignID": 42}).encode()


def test_unknown_tenant_wrong_token_or_channel_get_a_bare_404(listener: Listener) -> None:
    for path in (
        listener.channel_path(tenant="nobody"),
        listener.channel_path(token="x" * 32),
        listener.channel_path(channel="999"),
        listener.channel_path(channel="abc"),
        "/optimove/ACME/tok/events",
    ):
        assert listener.post(path, VALID) == (404, {"error": "not found"})
    assert listener.stored() == (0, 0)


def test_malformed_bodies_get_400_with_the_reason_and_store_nothing(listener: Listener) -> None:
    path = listener.channel_path()
    assert listener.post(path, b"{not json")[0] == 400
    assert listener.post(path, b"") == (400, {"error": "empty body: expected a JSON object"})
    assert listener.post(path, b"\xff\xfe") == (400, {"error": "body is not UTF-8"})
    assert listener.post(path, b'{"EventTypeID": 1}') == (
        400,
        {"error": "CampaignID is missing (EventTypeID 1)"},
    )
    assert listener.post(path, b"x" * 70_000)[0] == 413
    deep = b"[" * 50_000 + b"]" * 50_000  # 100 kB would be 413; nested 20,000 deep fits in 40 kB
    status, reply = listener.post(path, b"[" * 20_000 + b"]" * 20_000)
    assert (status, reply) == (400, {"error": "body is not valid JSON: nested too deeply"})
    assert listener.post(path, deep)[0] == 413
    assert listener.stored() == (0, 0)


def test_a_valid_notification_is_stored_with_its_job_and_a_repeat_only_recorded(listener: Listener) -> None:
    path = listener.channel_path()
    status, body = listener.post(path, VALID, {"Content-Type": "text/plain"})  # content type not trusted
    assert (status, body) == (200, {"status": "accepted", "outcome": ["channel 504: ingest queued"]})
    assert listener.post(path, VALID) == (200, {"status": "accepted", "outcome": ["channel 504: duplicate"]})
    other = json.dumps({"EventTypeID": 13, "CampaignID": 42, "ChannelID": 505}).encode()
    assert listener.post(path, other)[1]["outcome"] == [
        "ignored: ChannelID 505 is not this listener's channel 504"
    ]
    assert listener.stored() == (3, 1)


def test_unreadable_optional_fields_never_cost_the_campaign(listener: Listener) -> None:
    """Optimove does not resend after a 400: a notification is refused only for what it needs."""
    path = listener.channel_path()
    odd = {"EventTypeID": "1", "CampaignID": "43", "TimeStamp": "19/07/2022 08:54", "ChannelID": "x"}
    status, body = listener.post(path, json.dumps(odd).encode())
    assert (status, body) == (200, {"status": "accepted", "outcome": ["channel 504: ingest queued"]})
    with psycopg.connect(listener.db_url) as conn:
        row = conn.execute("SELECT campaign_id, channel_id FROM notifications").fetchone()
    assert row == (43, 504)
    assert listener.stored() == (1, 1)


def test_a_rotated_token_works_until_its_grace_ends(listener: Listener, test_secret_key: str) -> None:
    from datetime import UTC, datetime, timedelta

    from optibridge.core.secretbox import SecretBox, parse_keys

    async def rotate(grace: timedelta) -> str:
        async with await psycopg.AsyncConnection.connect(
            listener.db_url, autocommit=True, row_factory=psycopg.rows.dict_row
        ) as conn:
            return await listener_tokens.rotate(
                conn, SecretBox(parse_keys(test_secret_key)), "acme", datetime.now(UTC), grace
            )

    old = listener.token
    new = asyncio.run(rotate(timedelta(hours=1)))
    assert listener.post(listener.channel_path(token=new), VALID)[0] == 200
    assert listener.post(listener.channel_path(token=old), VALID)[0] == 200
    newest = asyncio.run(rotate(timedelta(seconds=-1)))  # the previous one expires at once
    assert listener.post(listener.channel_path(token=new), VALID)[0] == 404
    assert listener.post(listener.channel_path(token=newest), VALID)[0] == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
notification_like = st.dictionaries(
    st.sampled_from(
        ["EventTypeID", "eventtypeid", "CampaignID", "ChannelID", "TimeStamp", "ClearanceRequiredBy", "x"]
    ),
    json_values | st.sampled_from([1, 2, 3, 4, 5, 13, "1", "13", 504, "2026-01-01 00:00:00"]),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        notification_like.map(lambda v: json.dumps(v).encode()),
    ),
    token_kind=st.sampled_from(["valid", "random", "empty-ish"]),
    random_token=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"),
        min_size=1,
        max_size=60,
    ),
    tenant=st.sampled_from(["acme", "other", "a" * 70]),
    channel=st.sampled_from(["504", "505", "0", "99999999999"]),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]),
)
def test_fuzzed_requests_never_5xx_and_only_accepted_ones_are_stored(
    listener: Listener,
    body: bytes,
    token_kind: str,
    random_token: str,
    tenant: str,
    channel: str,
    content_type: str,
) -> None:
    token = listener.token if token_kind == "valid" else random_token if token_kind == "random" else "_"
    before = listener.stored()[0]
    status, reply = listener.post(
        f"/optimove/{tenant}/{token}/channels/{channel}/events",
        body,
        {"Content-Type": content_type} if content_type else {},
    )
    assert status < 500
    after = listener.stored()[0]
    if status == 200:
        assert reply["status"] == "accepted"
        assert after == before + 1
    else:
        assert after == before
        assert set(reply) == {"error"}
    if not (token_kind == "valid" and tenant == "acme" and channel == "504"):
        assert status == 404


def test_a_trickled_body_is_cut_off_in_bounded_time(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "BODY_TIMEOUT_S", 0.5)
    path = listener.channel_path()
    with socket.create_connection((listener.host, listener.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{".encode()
        )
        started = time.monotonic()
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 5
    assert listener.stored() == (0, 0)
