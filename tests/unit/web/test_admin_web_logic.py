"""The pure parts of the admin API and dashboard: keys, sessions, cursors, progress, redaction,
readiness judgement, metric hooks and label bounds, listener URL masking, sample parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from optibridge.campaigns import compute_progress
from optibridge.core import telemetry as metrics
from optibridge.web import auth
from optibridge.web.api.common import decode_cursor, encode_cursor, page_of
from optibridge.web.api.listeners import mask
from optibridge.web.api.tenants import redact
from optibridge.web.auth import ApiError, Principal
from optibridge.web.dashboard import duration, number, parse_sample
from optibridge.web.dashboard.session import MAX_AGE_S, SessionSigner
from optibridge.web.metrics import metrics_allowed
from optibridge.web.optimove_probe import scrub
from optibridge.web.probes import expected_versions, judge


def test_keys_are_256_bit_prefixed_and_hashed_with_sha256() -> None:
    key = auth.new_key()
    assert key.startswith("obk_")
    assert len(key) == 4 + 43
    assert auth.new_key() != key
    assert len(auth.hash_key(key)) == 32
    assert auth.looks_like_key(key)
    assert not auth.looks_like_key("obk_" + "x" * 300)
    assert not auth.looks_like_key("Bearer " + key)
    assert not auth.looks_like_key("obk_ünïcode-key")


def test_a_tenant_key_is_confined_and_an_admin_key_is_not() -> None:
    tenant = Principal(1, "t", "acme", b"")
    admin = Principal(2, "a", None, b"")
    tenant.require_tenant("acme")
    admin.require_tenant("globex")
    with pytest.raises(ApiError) as err:
        tenant.require_tenant("globex")
    assert err.value.status == 403
    assert err.value.body()["detail"].startswith("this API key belongs to tenant 'acme'")
    with pytest.raises(ApiError):
        tenant.require_admin("adding a tenant")


def test_sessions_are_signed_expire_and_carry_a_csrf_token() -> None:
    signer = SessionSigner(b"k" * 32)
    value = signer.issue(b"\x01" * 32, now=1000)
    session = signer.verify(value, now=1000 + 60)
    assert session is not None
    assert session.key_hash == b"\x01" * 32
    assert signer.verify(value, now=1000 + MAX_AGE_S + 1) is None
    assert signer.verify(value, now=999 - 60) is None
    assert SessionSigner(b"x" * 32).verify(value, now=1000) is None
    body, mac = value.split(".")
    assert signer.verify(body + "A." + mac, now=1000) is None
    for junk in ("", "a", "a.b.c", "!!!.???", "x" * 2000):
        assert signer.verify(junk, now=1000) is None
    token = signer.csrf_token(session)
    assert signer.check_csrf(session, token)
    assert not signer.check_csrf(session, token[:-1] + "x")
    assert not signer.check_csrf(session, None)
    other = signer.verify(signer.issue(b"\x01" * 32, now=1000), now=1000)
    assert other is not None
    assert signer.csrf_token(other) != token  # a token belongs to one session


def test_cursors_round_trip_and_anything_else_is_a_422() -> None:
    cursor = encode_cursor(["2026-01-01T00:00:00+00:00", "acme", 504, 42])
    assert decode_cursor(cursor, (str, str, int, int)) == ["2026-01-01T00:00:00+00:00", "acme", 504, 42]
    assert decode_cursor(None, (str,)) is None
    for bad in ("%%%", encode_cursor(["1"]), encode_cursor(["a", "b"]), encode_cursor([True]), "e30"):
        with pytest.raises(ApiError) as err:
            decode_cursor(bad, (int,))
        assert (err.value.status, err.value.extra) == (422, {"field": "cursor"})


def test_a_page_has_a_next_cursor_only_when_more_items_exist() -> None:
    full = page_of([1, 2, 3], 2, lambda n: [n])
    assert full.items == [1, 2]
    assert decode_cursor(full.next_cursor, (int,)) == [2]
    assert page_of([1, 2], 2, lambda n: [n]).next_cursor is None


def test_progress_counts_sent_done_rate_and_eta() -> None:
    p = compute_progress({"pending": 30, "claimed": 10, "sent": 50, "failed": 10}, sent_in_window=120)
    assert (p.total, p.sent, p.done, p.remaining, p.failed) == (100, 50, 60, 40, 10)
    assert (p.percent_sent, p.percent_done) == (50.0, 60.0)
    assert p.rate_per_s == 2.0
    assert p.eta_s == 20.0
    assert p.counts["expired"] == 0
    stalled = compute_progress({"pending": 5}, sent_in_window=0)
    assert (stalled.rate_per_s, stalled.eta_s) == (0.0, None)
    done = compute_progress({"sent": 5}, sent_in_window=0)
    assert done.eta_s == 0.0
    empty = compute_progress({}, 0)
    assert (empty.total, empty.percent_sent) == (0, 0.0)


def test_provider_settings_are_shown_with_secret_fields_masked_at_any_depth() -> None:
    shown = redact(
        {"host": "h", "password": "p", "auth": {"api_key": "k", "user": "u"}, "list": [{"token": "t"}]}
    )
    assert shown == {
        "host": "h",
        "password": "***",
        "auth": {"api_key": "***", "user": "u"},
        "list": [{"token": "***"}],
    }


def test_readiness_names_pending_migrations_and_a_stale_engine_schema() -> None:
    import procrastinate

    assert judge(set(expected_versions()), procrastinate.__version__) == []
    problems = judge(set(expected_versions()) - {4}, None)
    assert problems[0].startswith("migrations pending: 0004")
    assert "job engine schema missing" in problems[1]


def _value(name: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


def test_metric_hooks_count_and_bound_their_labels() -> None:
    throttled = {"tenant": "unknown", "provider": "twilio", "reason": "throttled"}  # no tenant given
    before = _value("optibridge_provider_errors_total", throttled)
    metrics.count_provider_error("twilio", "THROTTLED")
    assert _value("optibridge_provider_errors_total", throttled) == before + 1
    long_reason = "x" * 500
    metrics.count_provider_error("twilio", long_reason)
    long_labels = {"tenant": "unknown", "provider": "twilio", "reason": "x" * 64}
    assert _value("optibridge_provider_errors_total", long_labels) >= 1
    now = datetime.now(UTC)
    count = _value("optibridge_send_lateness_seconds_count", {"channel": "sms"})
    metrics.observe_send_delay("sms", now + timedelta(seconds=5), now)  # early: counts as 0
    assert _value("optibridge_send_lateness_seconds_count", {"channel": "sms"}) == count + 1
    assert _value("optibridge_send_lateness_seconds_bucket", {"channel": "sms", "le": "0.1"}) >= 1
    metrics.record_optimove_request("Login", 401, 0.2)
    assert _value("optibridge_optimove_requests_total", {"call": "Login", "status": "401"}) >= 1
    totals = metrics.provider_error_totals()
    assert totals[("twilio", "throttled")] >= 1


def test_listener_urls_are_masked_and_errors_scrubbed_of_credentials() -> None:
    prefix = "https://ob.example.com/optimove/acme/"
    assert mask(prefix + "s3cr3t-token/events", prefix) == prefix + "***/events"
    assert mask("https://other.example.com/hook", prefix) == "https://other.example.com/hook"
    assert mask("https://x/y?t=s3cr3t-token", "", "s3cr3t-token") == "https://x/y?t=***"
    assert scrub("denied for key abcd1234", ["abcd1234", ""]) == "denied for key ***"


def test_dashboard_formatting_and_sample_parsing() -> None:
    assert [duration(None), duration(5), duration(125), duration(7300)] == ["—", "5s", "2m 05s", "2h 01m"]
    assert [number(1234567), number(2.5), number(None)] == ["1,234,567", "2.5", "—"]
    assert parse_sample("A=1\n\nB = two = 2\n") == {"A": "1", "B": "two = 2"}
    assert parse_sample('{"A": 1, "B": [1]}') == {"A": 1, "B": "[1]"}
    assert parse_sample("  ") == {}
    with pytest.raises(ValueError, match="line 1"):
        parse_sample("no equals sign")


def test_metrics_answer_loopback_without_a_token_and_only_the_token_with_one() -> None:
    assert metrics_allowed("127.0.0.1", None, None)
    assert metrics_allowed("::1", None, None)
    assert not metrics_allowed("203.0.113.9", None, None)
    assert not metrics_allowed("10.1.2.3", None, None)
    assert not metrics_allowed(None, None, None)
    assert not metrics_allowed("not-an-ip", None, None)
    assert metrics_allowed("203.0.113.9", "Bearer s3cret", "s3cret")
    assert metrics_allowed("203.0.113.9", "bearer s3cret", "s3cret")
    assert not metrics_allowed("127.0.0.1", None, "s3cret")  # with a token, loopback needs it too
    assert not metrics_allowed("127.0.0.1", "Bearer wrong", "s3cret")
    assert not metrics_allowed("127.0.0.1", "Basic s3cret", "s3cret")


def test_a_sample_nested_too_deep_is_a_clear_error_not_a_crash() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_sample('{"a": ' + "[" * 20_000 + "]" * 20_000 + "}")
