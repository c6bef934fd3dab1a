"""Browser tests: the dashboard in Debian's chromium, driven by Playwright, against the service
on a loopback socket. Skipped (with the reason) where /usr/bin/chromium or Playwright is missing;
CI installs both. The database fixtures (db_url, ...) are tests/conftest.py's (one embedded PostgreSQL)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import Browser

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sys.path.insert(0, str(INTEGRATION))  # for `inprocess`
sys.path.insert(0, str(INTEGRATION / "reporting"))  # for `reporting_helpers`


SKIP_REASON = None
if not Path(CHROMIUM).exists():
    SKIP_REASON = f"{CHROMIUM} is missing (apt-get install chromium); browser tests need Debian's chromium"
elif importlib.util.find_spec("playwright") is None:
    SKIP_REASON = "Playwright for Python is not installed (pip install playwright)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if SKIP_REASON is None:
        return
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(10_000)

            async def accept(dialog: Any) -> None:  # the cancel button asks "are you sure?"
                await dialog.accept()

            page.on("dialog", accept)
            yield Browser(page, context, shots)
            await context.close()
        finally:
            await chromium.close()
