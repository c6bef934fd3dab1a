"""Which listener registrations we want, and which calls bring Optimove there."""

from __future__ import annotations

import pytest

from optibridge.core.errors import ConfigError
from optibridge.intake.registration import Registration, desired, plan, tenant_prefix
from optibridge.optimove import EventListener

PUBLIC = "https://hooks.example.com/"


def test_each_channel_gets_1_4_13_and_the_tenant_2_3_5_without_channel() -> None:
    regs = desired(PUBLIC, "acme", "tok", [505, 504])
    assert [(r.event_type_id, r.channel_id) for r in regs] == [
        (1, 504), (1, 505), (2, None), (3, None), (4, 504), (4, 505), (5, None), (13, 504), (13, 505)
    ]  # fmt: skip
    by_key = {(r.event_type_id, r.channel_id): r.listener_url for r in regs}
    assert by_key[(1, 504)] == "https://hooks.example.com/optimove/acme/tok/channels/504/events"
    assert by_key[(5, None)] == "https://hooks.example.com/optimove/acme/tok/events"


def test_public_url_is_required_and_must_be_http() -> None:
    with pytest.raises(ConfigError, match="public_url"):
        desired(None, "acme", "tok", [504])
    with pytest.raises(ConfigError, match="http"):
        desired("ftp://x", "acme", "tok", [504])


def test_plan_keeps_what_matches_replaces_what_differs_and_drops_our_stale_ones() -> None:
    wanted = desired(PUBLIC, "acme", "new", [504])
    prefix = tenant_prefix(PUBLIC, "acme")
    current = [
        EventListener(1, f"{PUBLIC}optimove/acme/new/channels/504/events", 504),  # right
        EventListener(4, f"{PUBLIC}optimove/acme/old/channels/504/events", 504),  # old token
        EventListener(13, "https://someone-else.example/hook", 504),  # taken by another URL
        EventListener(1, f"{PUBLIC}optimove/acme/new/channels/777/events", 777),  # channel removed
        EventListener(11, "https://someone-else.example/rt", None),  # not ours, not our slot
    ]
    p = plan(wanted, current, prefix)
    assert [(r.event_type_id, r.channel_id) for r in p.unchanged] == [(1, 504)]
    assert sorted((r.event_type_id, r.channel_id) for r in p.register) == [
        (2, None), (3, None), (4, 504), (5, None), (13, 504)
    ]  # fmt: skip
    assert p.unregister == [(1, 777)]
    assert isinstance(p.register[0], Registration)
