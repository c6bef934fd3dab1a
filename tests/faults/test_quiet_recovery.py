"""Fast checks of the pieces the fault table relies on: the quiet-recovery log filter, the
emulator's expiry of API-key access, the SMTP sink's lost-answer fault and the default retry of
periodic tasks."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
from datetime import UTC, datetime

import aiohttp
import psycopg
import pytest

from optibridge.bootstrap import create_job_app
from optibridge.core import logs
from optibridge.core.config import Settings
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.engine.jobs import PERIODIC_RETRY
from optibridge.sinks.control import SinkControl
from optibridge.sinks.smtp_sink import SmtpSink


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> logs.DatabaseOutage:
    fresh = logs.DatabaseOutage()
    monkeypatch.setattr(logs, "database_outage", fresh)
    return fresh


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def _db_error() -> psycopg.OperationalError:
    try:
        try:
            raise psycopg.OperationalError("connection refused")
        except psycopg.OperationalError as exc:
            raise RuntimeError("procrastinate wrapped it") from exc
    except RuntimeError as outer:
        return outer.__cause__  # type: ignore[return-value]


def test_an_outage_is_one_warning_and_one_info_without_tracebacks(
    outage: logs.DatabaseOutage, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("INFO", "json")
    pool = logging.getLogger("psycopg.pool")
    for _ in range(5):  # the pool's reconnect loop
        pool.warning("error connecting in %r: %s", "pool-1", psycopg.OperationalError("refused"))
    wrapped = RuntimeError("Side task failed")
    wrapped.__cause__ = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    logging.getLogger("procrastinate.worker").error("side task failed", exc_info=wrapped)
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        logs.get_logger("optibridge.delivery").exception("send failed")
    logs.get_logger("optibridge.delivery").error("a real error", exc_info=ValueError("bad row"))
    logs.database_outage.up()
    lines = _lines(capsys)
    events = [line["event"] for line in lines]
    assert events == ["database unreachable, retrying", "a real error", "database reachable again"]
    assert lines[0]["error"] == "OperationalError"
    assert lines[2]["folded_log_lines"] == 6
    assert "exception" in lines[1]  # only the unexpected error keeps its traceback


def test_a_stale_connection_failing_right_after_recovery_is_only_a_suspicion(
    outage: logs.DatabaseOutage, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("INFO", "json")
    outage.down("OperationalError")
    outage.up()
    outage.down("OperationalError")  # a connection the pool held from before the restart
    assert outage.needs_probe
    assert not outage.active
    outage.up()  # the watcher's probe answers: cleared, nothing logged
    outage.down("OperationalError")
    outage.confirm()  # the probe fails: a new outage
    events = [line["event"] for line in _lines(capsys)]
    assert events == [
        "database unreachable, retrying",
        "database reachable again",
        "database unreachable, retrying",
    ]


def test_other_pool_warnings_stay(outage: logs.DatabaseOutage, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    logging.getLogger("psycopg.pool").warning("rolling back returned connection: %s", "<conn>")
    assert [line["event"] for line in _lines(capsys)] == ["rolling back returned connection: <conn>"]
    assert not outage.needs_probe


def test_is_database_unreachable_follows_the_cause_chain() -> None:
    assert logs.is_database_unreachable(_db_error())
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = _db_error()
    assert logs.is_database_unreachable(wrapped)
    assert not logs.is_database_unreachable(psycopg.errors.UniqueViolation("dup"))
    assert not logs.is_database_unreachable(ValueError("x"))


def test_every_periodic_task_retries_transient_failures(tmp_path: object) -> None:
    app = create_job_app(Settings(database_url="postgresql://x@127.0.0.1/x"))
    periodic = {p.task.name for p in app.periodic_registry.periodic_tasks.values()}
    assert periodic
    for name in periodic:
        assert app.tasks[name].retry_strategy is not None, name
    assert PERIODIC_RETRY.is_transient(_db_error())


async def test_expire_tokens_refuses_api_keys_for_a_while() -> None:
    config = EmulatorConfig(rate_limit_enabled=False)
    async with running_emulator(config) as emu, aiohttp.ClientSession() as http:
        await emu.control.create_tenant("k1", api_key="key-1")
        url = f"{emu.base_url}/current/general/GetLastDataUpdate"

        async def status() -> int:
            async with http.get(url, headers={"X-API-KEY": "key-1"}) as resp:
                return resp.status

        assert await status() == 200
        assert await emu.control.expire_tokens("k1", api_key_seconds=0.5) == 0
        assert await status() == 401
        await asyncio.sleep(0.6)
        assert await status() == 200
        await emu.control.expire_tokens("k1", api_key_seconds=None)
        assert await status() == 401
        assert await emu.control.enable_keys("k1") is True
        assert await status() == 200


async def test_smtp_sink_can_keep_a_mail_and_lose_its_answer() -> None:
    async with SmtpSink() as sink, SinkControl(sink) as control, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{control.port}"
        async with http.post(f"{base}/_smtp/faults", json={"drop": {"at": "ACCEPTED", "count": 1}}) as r:
            assert r.status == 200

        def send(mid: str) -> None:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as client:
                client.sendmail("a@x.test", ["b@y.test"], f"Message-ID: <{mid}@x.test>\r\n\r\nhi".encode())

        with pytest.raises(smtplib.SMTPServerDisconnected):
            await asyncio.to_thread(send, "m1")
        await asyncio.to_thread(send, "m2")
        async with http.get(f"{base}/_smtp/stats") as r:
            stats = await r.json()
        assert (stats["count"], stats["unique"], stats["unanswered"]) == (2, 2, 1)
        async with http.post(f"{base}/delivered", json={"message_ids": ["m1", "m3"]}) as r:
            assert (await r.json())["delivered"] == ["m1"]


class _Refused(Exception):
    status = 401
    retryable = False


def test_refused_credentials_are_retried_slowly_three_times_then_fail() -> None:
    from procrastinate.jobs import Job

    from optibridge.engine.jobs import TransientRetry

    strategy = TransientRetry(max_attempts=8)

    def decision(attempts: int) -> object:
        job = Job(id=1, queue="intake", lock=None, queueing_lock=None, task_name="t", attempts=attempts)
        return strategy.get_retry_decision(exception=_Refused(), job=job)

    now = datetime.now(UTC)
    delays = []
    for n in range(4):
        made = decision(n)
        at = getattr(made, "retry_at", None)
        delays.append(None if at is None else round((at - now).total_seconds() / 10) * 10)
    assert delays == [30, 120, 300, None]
    job = Job(id=1, queue="intake", lock=None, queueing_lock=None, task_name="t", attempts=0)
    assert strategy.get_retry_decision(exception=ValueError("bad request"), job=job) is None
