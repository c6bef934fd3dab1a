"""Attack: exhaust the server's memory or request slots with request bodies (issue 12, finding 1).

Each test performs the attack against a real `optibridge serve` process: a 1 GB body generated
lazily, a Content-Length far over the limit, bodies trickled at 1 byte/s. Before the fix, a 1 GB
PATCH without a key grew the server by 1.6 GB before its 422, the contacts import read the whole
upload before its 401, and a trickled admin body was waited for without end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
from securitykit import Served, livez_watch
from uploadkit import Upload, filler, trickle, upload

GIB = 1024**3
MIB = 1024**2
BOUNDARY = "optibridge-attack-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
JSON = {"Content-Type": "application/json"}
# The client's and the server's socket buffers hold a few MiB that the server never read: a body
# refused unread is one where far less than this left the client before the answer came.
UNREAD = 16 * MIB

# Admin routes with a body, and the dashboard's login form: none may read a body before its 401.
UNAUTHENTICATED_TARGETS = [
    ("PATCH", "/api/v1/tenants/x", JSON),
    ("POST", "/api/v1/tenants/acme/contacts/import", MULTIPART),
    ("POST", "/api/v1/tenants", JSON),
    ("PUT", "/api/v1/tenants/acme/channels/email/templates/7", JSON),
    ("POST", "/api/v1/tenants/acme/channels/email/templates/preview", JSON),
    ("POST", "/api/v1/tenants/acme/channels/email/campaigns/1/pause", JSON),
]


def multipart(content: Iterator[bytes], filename: str = "contacts.csv") -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    yield from content
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def csv_rows(total_bytes: int) -> Iterator[bytes]:
    """A contacts CSV of about `total_bytes`, made 1,000 rows at a time."""
    yield b"customer_id,email,first_name,notes\n"
    made, row = 0, 0
    while made < total_bytes:
        batch = b"".join(
            f"c{i},c{i}@example.com,Name{i},{'n' * 300}\n".encode() for i in range(row, row + 1000)
        )
        row += 1000
        made += len(batch)
        yield batch


def contacts_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM contacts").fetchone()
    assert row is not None
    return int(row[0])


def warm_up(served: Served) -> None:
    """First use of each code path (imports, caches) is not growth under attack."""
    for method, path, headers in UNAUTHENTICATED_TARGETS:
        served.request(method, path, body=b"{}", headers=headers)
    served.request("GET", "/api/v1/tenants/acme", key=served.acme_key)


def test_huge_unauthenticated_bodies_are_refused_unread(served: Served) -> None:
    warm_up(served)
    before = served.rss_mb()
    results: list[tuple[str, Upload]] = []
    with livez_watch(served) as watch:
        for method, path, headers in UNAUTHENTICATED_TARGETS:
            for key in (None, "obk_" + "w" * 43):
                sent = dict(headers) | ({"Authorization": f"Bearer {key}"} if key else {})
                body = multipart(filler(GIB)) if headers is MULTIPART else filler(GIB)
                results.append((f"{method} {path}", upload(served.port, method, path, body, headers=sent)))
        grown = served.rss_mb() - before
    print(
        f"\n1 GiB x {len(results)} unauthenticated: RSS +{grown:.1f} MiB, most sent before the answer"
        f" {max(up.sent for _, up in results) / MIB:.1f} MiB, slowest answer"
        f" {max(up.elapsed_s for _, up in results):.2f} s, /livez max {watch.max_ms:.0f} ms"
    )
    for what, up in results:
        assert up.status in (401, 413), (what, up)
        assert up.sent < UNREAD, (what, up.sent)
        assert up.elapsed_s < 5, (what, up.elapsed_s)
    assert grown <= 20, f"the server grew by {grown:.0f} MiB"
    watch.assert_responsive(1000)


def test_huge_body_with_a_valid_key_stops_at_the_limit_and_stores_nothing(served: Served) -> None:
    warm_up(served)
    name_before = served.request("GET", "/api/v1/tenants/acme", key=served.acme_key).json()["name"]
    before = served.rss_mb()
    auth = {"Authorization": f"Bearer {served.acme_key}"}
    with livez_watch(served) as watch:
        patch = upload(
            served.port, "PATCH", "/api/v1/tenants/acme", filler(GIB, fill=b" "), headers=JSON | auth
        )
        template = upload(
            served.port,
            "PUT",
            "/api/v1/tenants/acme/channels/email/templates/7",
            filler(GIB, fill=b" "),
            headers=JSON | auth,
        )
        imported = upload(
            served.port,
            "POST",
            "/api/v1/tenants/acme/contacts/import",
            multipart(csv_rows(GIB)),
            headers=MULTIPART | auth,
        )
        grown = served.rss_mb() - before
    print(
        f"\n1 GiB with a valid key: sent before 413: PATCH {patch.sent / MIB:.1f} MiB, template"
        f" {template.sent / MIB:.1f} MiB, import {imported.sent / MIB:.1f} MiB; RSS +{grown:.1f} MiB,"
        f" /livez max {watch.max_ms:.0f} ms"
    )
    assert (patch.status, patch.json_error()) == (413, "too large"), patch
    assert patch.sent < 1 * MIB + UNREAD
    assert (template.status, template.json_error()) == (413, "too large"), template
    assert template.sent < 8 * MIB + UNREAD
    assert (imported.status, imported.json_error()) == (413, "too large"), imported
    assert imported.sent < 64 * MIB + UNREAD
    assert grown <= 20, f"the server grew by {grown:.0f} MiB"
    watch.assert_responsive(1000)
    assert served.request("GET", "/api/v1/tenants/acme", key=served.acme_key).json()["name"] == name_before
    assert contacts_count(served.db_url) == 0


def test_content_length_over_the_limit_is_refused_before_the_app_runs(served: Served) -> None:
    # With the key table locked, anything that checked the key (or touched the database for it)
    # would hang: a fast 413 shows the refusal came first.
    auth = {"Authorization": f"Bearer {served.acme_key}"}
    with psycopg.connect(served.db_url) as lock:
        lock.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        cases = [
            ("PATCH", "/api/v1/tenants/acme", 2 * GIB, JSON | auth),
            ("POST", "/api/v1/tenants/acme/contacts/import", 65 * MIB, MULTIPART | auth),
            ("POST", "/api/v1/tenants", 2 * MIB, JSON),
            ("POST", "/optimove/acme/some-token/events", 65 * 1024, JSON),
            ("POST", "/ui/login", 300 * 1024, {"Content-Type": "application/x-www-form-urlencoded"}),
        ]
        for method, path, declared, headers in cases:
            up = upload(
                served.port,
                method,
                path,
                filler(1024),
                headers=headers,
                content_length=declared,
                time_limit_s=5,
            )
            assert up.status == 413, (method, path, up)
            assert up.elapsed_s < 1, (method, path, up.elapsed_s)
            assert up.headers.get("connection") == "close"
        lock.rollback()
    assert contacts_count(served.db_url) == 0


def test_trickled_bodies_get_408_at_the_deadline_while_the_api_answers(
    serve_with: object,
) -> None:
    assert callable(serve_with)
    # The import's own deadline is 300 s by default; shortened so the test sees it end.
    served: Served = serve_with({"OPTIBRIDGE_IMPORT_TIMEOUT_S": "8"})
    auth = {"Authorization": f"Bearer {served.acme_key}"}
    file_head = next(multipart(iter(())))
    targets = (
        [("POST", "/optimove/acme/some-token/events", JSON, b"", b"{")] * 9
        + [("PATCH", "/api/v1/tenants/acme", JSON | auth, b"", b"{")] * 8
        + [("POST", "/api/v1/tenants/acme/contacts/import", MULTIPART | auth, file_head, b"a")] * 8
    )
    assert len(targets) == 25
    api_ms: list[float] = []
    with livez_watch(served) as watch, ThreadPoolExecutor(len(targets)) as pool:
        futures = [
            pool.submit(
                trickle,
                served.port,
                method,
                path,
                headers=headers,
                declared=1000,
                time_limit_s=25,
                prefix=prefix,
                byte=byte,
            )
            for method, path, headers, prefix, byte in targets
        ]
        time.sleep(2)  # every trickle has started and holds its request
        for _ in range(10):
            started = time.monotonic()
            reply = served.request("GET", "/api/v1/tenants", key=served.admin_key, timeout=5)
            api_ms.append((time.monotonic() - started) * 1000)
            assert reply.status == 200
            time.sleep(0.3)
        results = [f.result(timeout=40) for f in futures]
    print(
        f"\n25 trickles: admin GET max {max(api_ms):.0f} ms, /livez max {watch.max_ms:.0f} ms, answers at"
        f" {min(up.elapsed_s for up in results):.1f}-{max(up.elapsed_s for up in results):.1f} s:"
        f" {sorted({up.status for up in results}, key=str)}"
    )
    assert max(api_ms) < 1000, api_ms
    watch.assert_responsive(1000)
    for (_, path, *_), up in zip(targets, results, strict=True):
        assert up.status == 408, (path, up)
        deadline = 8 if path.endswith("/import") else 10
        assert deadline - 0.5 <= up.elapsed_s <= deadline + 4, (path, up.elapsed_s)
        assert up.sent <= len(file_head) + deadline + 5


def test_contacts_import_streams_a_large_csv_with_bounded_memory(served: Served) -> None:
    warm_up(served)
    auth = {"Authorization": f"Bearer {served.acme_key}"}
    # Without a valid key the 20 MB never leaves the client: 401 before the body is read.
    refused = upload(
        served.port,
        "POST",
        "/api/v1/tenants/acme/contacts/import",
        multipart(csv_rows(20 * MIB)),
        headers=MULTIPART | {"Authorization": "Bearer obk_" + "w" * 43},
    )
    assert refused.status == 401, refused
    assert refused.sent < UNREAD
    before = served.rss_mb()
    done = upload(
        served.port,
        "POST",
        "/api/v1/tenants/acme/contacts/import",
        multipart(csv_rows(20 * MIB)),
        headers=MULTIPART | auth,
        time_limit_s=180,
    )
    grown = served.rss_mb() - before
    print(
        f"\n20 MiB import: {done.status} {done.body[:80]!r} in {done.elapsed_s:.1f} s, RSS +{grown:.1f} MiB;"
        f" wrong key: {refused.status} after {refused.sent / MIB:.2f} MiB sent"
    )
    assert done.status == 200, done
    rows = done.json()["rows"]
    assert rows > 50_000
    assert done.json() == {"rows": rows, "upserted": rows, "skipped": 0}
    assert contacts_count(served.db_url) == rows
    assert grown <= 30, f"the server grew by {grown:.0f} MiB for a 20 MB import"
