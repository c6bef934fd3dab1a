"""Shared by the reporting integration tests: constants and the simulated audience."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from optibridge.feedback.keys import sign_body
from optibridge.feedback.links import generic_receipt_url, tracking_urls
from optibridge.testing.feedback import FeedbackStack, SeededMessage
from optibridge.web.receipts import SIGNATURE_HEADER

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
TENANT = "t1"
API_KEY = "k1"
EMAIL = 504
BROWSER = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126 Safari/537.36"
}
SCANNER = {"User-Agent": "Barracuda Sentinel (EE)"}


@dataclass
class Audience:
    """Acts as recipients and providers would, through HTTP only; remembers whom it touched."""

    stack: FeedbackStack
    messages: dict[int, SeededMessage]  # by customer number
    opened: set[int] = field(default_factory=set)
    clicked: set[int] = field(default_factory=set)
    unsubscribed: set[int] = field(default_factory=set)
    bounced: set[int] = field(default_factory=set)
    complained: set[int] = field(default_factory=set)
    hits: int = 0  # tracking hits expected to be stored (buffered), for `settle`

    def _urls(self, n: int) -> object:
        return tracking_urls(self.stack.base_url, self.messages[n].id, self.stack.keys, issued_at=T0)

    async def _get(self, url: str, headers: dict[str, str]) -> None:
        async with self.stack.session.get(url, headers=headers, allow_redirects=False) as resp:
            assert resp.status in (200, 302), (url, resp.status)

    async def open(self, numbers: Iterable[int], *, times: int = 1) -> None:
        for n in numbers:
            for _ in range(times):
                await self._get(self._urls(n).open_url, BROWSER)  # type: ignore[attr-defined]
            self.hits += 1 if n not in self.opened else 0
            self.opened.add(n)

    async def click(self, numbers: Iterable[int], *, headers: dict[str, str] = BROWSER) -> None:
        for n in numbers:
            await self._get(self._urls(n).click_url("https://shop.example/sale?x=1"), headers)  # type: ignore[attr-defined]
            if headers is BROWSER:
                self.hits += 1 if n not in self.clicked else 0
                self.clicked.add(n)
            else:
                self.hits += 1

    async def unsubscribe(self, numbers: Iterable[int]) -> None:
        for n in numbers:
            url = self._urls(n).unsubscribe_url  # type: ignore[attr-defined]
            async with self.stack.session.post(url, data="List-Unsubscribe=One-Click") as resp:
                assert resp.status == 200
            self.unsubscribed.add(n)

    async def report(self, status: str, numbers: Iterable[int], *, event_prefix: str = "ev") -> None:
        """A provider's generic delivery report (sent twice: providers deliver at least once)."""
        events = [
            {
                "message_id": str(self.messages[n].id),
                "status": status,
                "event_id": f"{event_prefix}-{status}-{n}",
            }
            for n in numbers
        ]
        body = json.dumps(events).encode()
        headers = {SIGNATURE_HEADER: sign_body(self.stack.keys.receipt_secret(TENANT), body)}
        for _ in range(2):
            url = generic_receipt_url(self.stack.base_url, TENANT)
            async with self.stack.session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200
        target = {"bounced": self.bounced, "complained": self.complained}[status]
        target.update(numbers)

    async def settle(self) -> None:
        """Wait (bounded) until the tracking buffer has written every hit made so far."""
        async with self.stack.runtime.pool.connection() as conn:
            for _ in range(200):
                row = await (
                    await conn.execute(
                        "SELECT count(*) AS n FROM message_events WHERE kind IN ('opened', 'clicked')"
                    )
                ).fetchone()
                if row is not None and row["n"] >= self.hits:
                    return
                await asyncio.sleep(0.01)
        raise AssertionError("tracking hits were not written within 2 s")
