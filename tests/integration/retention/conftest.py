"""Fixtures: an open connection pool on the test's database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from retentionkit import Pool

from optibridge.store.database import Database


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    p = Database(url=db_url).pool(min_size=1, max_size=4)
    await p.open(wait=True)
    try:
        yield p  # type: ignore[misc]
    finally:
        await p.close()
