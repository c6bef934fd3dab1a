"""Attack: guess API keys as fast as the server answers (issue 12, finding 2).

A storm of wrong keys from one address, against the admin API and the dashboard's login form, on a
real `optibridge serve` process. Before the fix every guess was looked up in the database and
answered 401, without end. Now: after 20 failures in the window, 429 with Retry-After and no lookup
(shown by locking the key table: a lookup would hang); a key that already worked from this process
still works; other addresses are not affected; X-Forwarded-For is believed only from a trusted proxy.
"""

from __future__ import annotations

import http.client
import secrets
import time
import urllib.parse
from collections.abc import Callable

import psycopg
from securitykit import Reply, Served

from optibridge.core.config import Settings
from optibridge.web.limits import rule_for, rules
from optibridge.web.ratelimit import FailureLimiter

LIMIT = 20
WINDOW_S = 15


def wrong_key() -> str:
    return "obk_" + secrets.token_urlsafe(32)


def call(
    served: Served,
    method: str,
    path: str,
    *,
    key: str | None = None,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One request from the loopback address `source` (127.0.0.0/8 is all ours)."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class KeysLocked:
    """Holds an exclusive lock on api_keys: any key lookup made meanwhile waits for it."""

    def __init__(self, db_url: str) -> None:
        self.conn = psycopg.connect(db_url)

    def __enter__(self) -> KeysLocked:
        self.conn.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()


def storm(served: Served, attempt: Callable[[], Reply], count: int) -> list[Reply]:
    return [attempt() for _ in range(count)]


def test_a_storm_of_wrong_api_keys_gets_429_without_lookups(serve_with: Callable[..., Served]) -> None:
    served = serve_with({"OPTIBRIDGE_AUTH_FAILURE_WINDOW_S": str(WINDOW_S)})
    # The operator's key works before the storm: this process has seen it succeed.
    assert call(served, "GET", "/api/v1/tenants/acme", key=served.acme_key).status == 200
    started = time.monotonic()
    replies = storm(served, lambda: call(served, "GET", "/api/v1/tenants/acme", key=wrong_key()), 200)
    assert time.monotonic() - started < WINDOW_S - 3, "the storm outlasted the window: no verdict"
    statuses = [r.status for r in replies]
    assert statuses == [401] * LIMIT + [429] * (200 - LIMIT), statuses
    for reply in replies[LIMIT:]:
        assert reply.json()["error"] == "too many requests"
        assert 1 <= int(reply.headers["retry-after"]) <= WINDOW_S
    # Other kinds of failure from the same address are refused the same way.
    assert call(served, "PATCH", "/api/v1/tenants/acme", body=b"{}").status == 429
    assert call(served, "GET", "/api/v1/tenants", key="not-a-key").status == 429

    with KeysLocked(served.db_url):
        # A lookup would now wait for the lock: fast 429s show that none is made.
        for _ in range(20):
            began = time.monotonic()
            assert call(served, "GET", "/api/v1/tenants", key=wrong_key(), timeout=3).status == 429
            assert time.monotonic() - began < 1
        # Meanwhile another address is not blocked: its guess is looked up (and waits for the lock).
        try:
            other = call(
                served, "GET", "/api/v1/tenants", key=wrong_key(), source="127.0.0.2", timeout=1
            ).status
        except TimeoutError:
            other = None
        assert other is None, other
    assert call(served, "GET", "/api/v1/tenants", key=wrong_key(), source="127.0.0.2").status == 401

    # A key that worked from this process still works from the blocked address ...
    assert call(served, "GET", "/api/v1/tenants/acme", key=served.acme_key).status == 200
    # ... one it has not seen yet waits for the end of the window (telling it from a guess would
    # take the very lookup the limit avoids).
    early = call(served, "GET", "/api/v1/tenants/globex", key=served.globex_key)
    assert early.status == 429
    time.sleep(int(early.headers["retry-after"]) + 0.5)
    assert call(served, "GET", "/api/v1/tenants/globex", key=served.globex_key).status == 200
    assert call(served, "GET", "/api/v1/tenants", key=wrong_key()).status == 401


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(serve_with: Callable[..., Served]) -> None:
    served = serve_with({"OPTIBRIDGE_AUTH_FAILURE_WINDOW_S": str(WINDOW_S)})
    # 127.0.0.2 is no proxy of ours: its X-Forwarded-For is ignored, so varying it evades nothing.
    for i in range(LIMIT):
        spoofed = {"X-Forwarded-For": f"10.0.0.{i}"}
        assert (
            call(
                served, "GET", "/api/v1/tenants", key=wrong_key(), source="127.0.0.2", headers=spoofed
            ).status
            == 401
        )
    blocked = call(
        served,
        "GET",
        "/api/v1/tenants",
        key=wrong_key(),
        source="127.0.0.2",
        headers={"X-Forwarded-For": "10.9.9.9"},
    )
    assert blocked.status == 429
    # 127.0.0.1 is the trusted proxy (forwarded_allow_ips): the clients behind it count one by one.
    for i in range(LIMIT):
        behind = {"X-Forwarded-For": "192.0.2.7"}
        assert call(served, "GET", "/api/v1/tenants", key=wrong_key(), headers=behind).status == 401, i
    assert (
        call(
            served, "GET", "/api/v1/tenants", key=wrong_key(), headers={"X-Forwarded-For": "192.0.2.7"}
        ).status
        == 429
    )
    assert (
        call(
            served, "GET", "/api/v1/tenants", key=wrong_key(), headers={"X-Forwarded-For": "192.0.2.8"}
        ).status
        == 401
    )


def login(served: Served, key: str, source: str = "127.0.0.1", timeout: float = 5.0) -> Reply:
    form = urllib.parse.urlencode({"api_key": key, "login_token": "t0ken", "next": "/ui/campaigns"}).encode()
    return call(
        served,
        "POST",
        "/ui/login",
        source=source,
        body=form,
        timeout=timeout,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": "optibridge_login=t0ken"},
    )


def test_a_storm_of_dashboard_logins_gets_429_without_lookups(serve_with: Callable[..., Served]) -> None:
    served = serve_with({"OPTIBRIDGE_AUTH_FAILURE_WINDOW_S": str(WINDOW_S)})
    assert login(served, served.acme_key).status == 303  # signs in: this key is now known
    replies = storm(served, lambda: login(served, wrong_key()), 60)
    statuses = [r.status for r in replies]
    assert statuses == [401] * LIMIT + [429] * (60 - LIMIT), statuses
    assert all(1 <= int(r.headers["retry-after"]) <= WINDOW_S for r in replies[LIMIT:])
    assert "Too many failed sign-ins" in replies[-1].text
    with KeysLocked(served.db_url):
        for _ in range(10):
            began = time.monotonic()
            assert login(served, wrong_key(), timeout=3).status == 429
            assert time.monotonic() - began < 1
    # The API shares the count: the same address is refused there too.
    assert call(served, "GET", "/api/v1/tenants", key=wrong_key()).status == 429
    assert login(served, served.acme_key).status == 303
    assert login(served, served.globex_key).status == 429
    assert login(served, wrong_key(), source="127.0.0.2").status == 401


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_counts_failures_per_window_and_stays_bounded() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, 10.0, max_entries=100, max_known=2, clock=clock)
    for _ in range(3):
        assert limiter.refuse("a", None) is None
        limiter.failed("a")
    assert limiter.refuse("a", None) == 10
    assert limiter.refuse("b", None) is None
    clock.now += 4.2
    assert limiter.refuse("a", b"guess") == 6  # Retry-After: the rest of the window, rounded up
    limiter.succeeded(b"k1")
    assert limiter.refuse("a", b"k1") is None  # a key seen to work is still checked
    limiter.succeeded(b"k2")
    limiter.succeeded(b"k3")  # past max_known: the oldest (k1) is forgotten
    assert limiter.refuse("a", b"k1") == 6
    clock.now += 6
    assert limiter.refuse("a", None) is None  # the window is over
    # A spray of addresses keeps at most max_entries windows, evicting the oldest first.
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    assert FailureLimiter(0, 10.0).refuse("a", None) is None  # limit 0: off


def test_every_route_family_has_a_body_rule() -> None:
    table = rules(Settings())
    picked = {
        path: rule_for(table, method, path).name
        for method, path in [
            ("POST", "/api/v1/tenants/acme/contacts/import"),
            ("PUT", "/api/v1/tenants/acme/channels/email/templates/7"),
            ("PATCH", "/api/v1/tenants/x"),
            ("POST", "/optimove/acme/tok/events"),
            ("POST", "/r/generic/acme"),
            ("POST", "/t/u/tok"),
            ("POST", "/ui/login"),
            ("POST", "/livez"),
        ]
    }
    assert list(picked.values()) == [
        "contacts import",
        "templates",
        "admin API",
        "listener",
        "receipts",
        "tracking",
        "dashboard",
        "other",
    ]
    assert rule_for(table, "GET", "/api/v1/tenants/acme/contacts/import").name == "admin API"
