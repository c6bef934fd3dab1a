"""What a browser test gets: the page, its context, and where screenshots go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Browser:
    page: Any
    context: Any
    shots: Path

    async def shot(self, name: str) -> bytes:
        data: bytes = await self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        return data
