"""The tracking endpoints over real HTTP: what each records, and what it must never record."""

from __future__ import annotations

from typing import Any

from feedback_helpers import BROWSER, T0, Seeded

from optibridge.feedback.links import tracking_urls
from optibridge.feedback.recorder import BufferedRecorder
from optibridge.feedback.suppression import suppressed
from optibridge.web.tracking import PIXEL


async def _events(seeded: Seeded) -> list[dict[str, Any]]:
    async with seeded.stack.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT message_id, kind, suspect, url, customer_id, template_id "
                "FROM message_events ORDER BY id"
            )
        ).fetchall()
    return list(rows)


def _urls(seeded: Seeded, index: int = 0) -> Any:
    m = seeded.email[index]
    return tracking_urls(seeded.stack.base_url, m.id, seeded.stack.keys, issued_at=T0)


async def test_open_pixel_returns_an_uncacheable_gif_and_records_one_open_per_message(seeded: Seeded) -> None:
    urls = _urls(seeded)
    for _ in range(3):  # replays: mail clients reload images
        async with seeded.stack.session.get(urls.open_url, headers=BROWSER) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/gif"
            assert "no-store" in resp.headers["Cache-Control"]
            assert await resp.read() == PIXEL
    async with seeded.stack.session.get(urls.open_url + "/", headers=BROWSER, allow_redirects=False) as resp:
        assert resp.status == 200  # a slash a link rewriter appended is ignored, not redirected
    events = await _events(seeded)
    assert [(e["kind"], e["suspect"], e["customer_id"]) for e in events] == [("opened", False, "C1")]


async def test_click_redirects_to_the_signed_url_and_records_the_click(seeded: Seeded) -> None:
    target = "https://shop.example/p/1?a=1&b=2"
    url = _urls(seeded, 1).click_url(target)
    async with seeded.stack.session.get(url, headers=BROWSER, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == target
    events = await _events(seeded)
    assert [(e["kind"], e["url"], e["customer_id"]) for e in events] == [("clicked", target, "C2")]


async def test_tampered_or_cross_kind_tokens_are_404_and_record_nothing(seeded: Seeded) -> None:
    urls = _urls(seeded)
    open_token = urls.open_url.rsplit("/", 1)[1]
    flipped = open_token[:-2] + ("A" if open_token[-2] != "A" else "B") + open_token[-1]
    base = seeded.stack.base_url
    slashed = ("/t/o/0%2F", f"/t/o/{open_token}/x", f"/t/o/x/{open_token}", f"/t/o/{open_token}//")
    for path in (f"/t/o/{flipped}", f"/t/c/{open_token}", "/t/o/not-a-token", f"/t/u/{open_token}", *slashed):
        async with seeded.stack.session.get(base + path, headers=BROWSER, allow_redirects=False) as resp:
            assert resp.status == 404, path  # never a redirect to the path without the slash
    async with seeded.stack.session.post(
        base + f"/t/u/{open_token}", data="List-Unsubscribe=One-Click"
    ) as resp:
        assert resp.status == 404
    assert await _events(seeded) == []


async def test_head_requests_and_scanner_hits_are_not_counted(seeded: Seeded) -> None:
    urls = _urls(seeded)
    async with seeded.stack.session.head(urls.open_url, headers=BROWSER) as resp:
        assert resp.status == 200
    async with seeded.stack.session.get(
        urls.click_url("https://shop.example/"),
        headers={"User-Agent": "Mimecast Safe Links"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302  # the scanner still gets its answer
    events = await _events(seeded)
    assert [(e["kind"], e["suspect"]) for e in events] == [("clicked", True)]


async def test_get_on_unsubscribe_shows_a_form_and_never_unsubscribes(seeded: Seeded) -> None:
    urls = _urls(seeded)
    async with seeded.stack.session.get(urls.unsubscribe_url, headers=BROWSER) as resp:
        assert resp.status == 200
        page = await resp.text()
    assert "<form method='post'>" in page
    assert "One-Click" in page
    assert await _events(seeded) == []


async def test_one_click_unsubscribe_records_suppresses_and_queues_the_opt_out(seeded: Seeded) -> None:
    urls = _urls(seeded, 2)
    for body, ctype in (
        ("List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        (
            '--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            "One-Click\r\n--XyZ--\r\n",
            "multipart/form-data; boundary=XyZ",
        ),
    ):
        async with seeded.stack.session.post(
            urls.unsubscribe_url, data=body, headers={"Content-Type": ctype}
        ) as resp:
            assert resp.status == 200
            assert "unsubscribed" in (await resp.text()).lower()
    events = await _events(seeded)
    assert [(e["kind"], e["customer_id"]) for e in events] == [("unsubscribed", "C3")]
    async with seeded.stack.runtime.pool.connection() as conn:
        found = await suppressed(
            conn, "t1", "email", addresses=["C3@Example.TEST", "c4@example.test"], customer_ids=["C3", "C4"]
        )
        outbox = await (
            await conn.execute("SELECT customer_id, communication_mode FROM preference_outbox")
        ).fetchall()
    assert found == {"C3@Example.TEST", "C3"}
    assert [(r["customer_id"], r["communication_mode"]) for r in outbox] == [("C3", 2)]


async def test_unsubscribe_post_without_the_one_click_body_is_refused(seeded: Seeded) -> None:
    urls = _urls(seeded)
    async with seeded.stack.session.post(urls.unsubscribe_url, data="hello=world") as resp:
        assert resp.status == 400
    assert await _events(seeded) == []


async def test_the_buffer_writes_hits_before_shutdown_completes(seeded: Seeded) -> None:
    """Hits answered just before shutdown are flushed by aclose, not lost."""
    recorder = BufferedRecorder(seeded.stack.runtime.pool, interval_s=60)
    from optibridge.feedback.events import Event, EventKind, Source

    await recorder.record(
        Event(seeded.email[5].id, EventKind.OPENED, Source.TRACKING, f"open:{seeded.email[5].id}", T0)
    )
    assert await _events(seeded) == []
    await recorder.aclose()
    assert [e["customer_id"] for e in await _events(seeded)] == ["C6"]
