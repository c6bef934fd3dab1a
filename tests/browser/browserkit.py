"""What a browser test gets: the page, its context, and where screenshots go."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@dataclass
class Browser:
    page: Any
    context: Any
    shots: Path

    async def shot(self, name: str, *, doc: str | None = None) -> bytes:
        """A full-page screenshot into the test's tmp dir; with `doc` and OPTIBRIDGE_SCREENSHOTS=1
        also docs/img/dashboard-<doc>.png, the pictures of docs/dashboard.md."""
        data: bytes = await self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        if doc is not None and os.environ.get("OPTIBRIDGE_SCREENSHOTS") == "1":
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            (DOCS_IMG / f"dashboard-{doc}.png").write_bytes(data)
        return data
