"""Structured logs: JSON lines carrying the ids bound to the current context."""

from __future__ import annotations

import json

import pytest

from optibridge.core.logs import bind, configure, get_logger, unbind


def test_json_lines_carry_bound_tenant_and_campaign(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "json")
    bind(tenant="acme", campaign=42)
    try:
        get_logger("t").info("ingest started", pages=3)
    finally:
        unbind("tenant", "campaign")
    get_logger("t").info("after")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    first, second = lines[-2], lines[-1]
    assert first["event"] == "ingest started"
    assert (first["tenant"], first["campaign"], first["pages"]) == ("acme", 42, 3)
    assert first["level"] == "info"
    assert "tenant" not in second


def test_level_filters_lower_messages(capsys: pytest.CaptureFixture[str]) -> None:
    configure("WARNING", "json")
    get_logger("t").info("hidden")
    get_logger("t").warning("shown")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["shown"]
