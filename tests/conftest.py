"""Shared by all tests: where the source tree is, and a fixed secret key for tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A valid Fernet key used only by tests; never use a key that appears in source anywhere else.
TEST_SECRET_KEY = "t8Rt2Yg3T8xw0N5aV1pLrJ6kQm4sC9dFh2ZbWcXeUyA="


@pytest.fixture
def test_secret_key() -> str:
    return TEST_SECRET_KEY
