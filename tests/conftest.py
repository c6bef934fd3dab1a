"""Shared by all tests: where the source tree is, and a fixed secret key for tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A valid Fernet key used only by tests; never use a key that appears in source anywhere else.
TEST_SECRET_KEY = "t8Rt2Yg3T8xw0N5aV1pLrJ6kQm4sC9dFh2ZbWcXeUyA="


@pytest.fixture
def test_secret_key() -> str:
    return TEST_SECRET_KEY


@pytest.fixture
def pg_tmp() -> Iterator[Path]:
    """A folder for PostgreSQL data outside pytest's temp root.

    pytest makes its root 0700 at every session start; a second pytest run on the machine would
    lock the (unprivileged) postgres user out of a data folder inside it, and the server would die.
    """
    path = Path(tempfile.mkdtemp(prefix="optibridge-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
