"""The SMTP sink itself: recording, the .eml folder, fault windows, and the demo entry point."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiosmtplib
import pytest
import uvloop

from optibridge.sinks import SmtpSink

MAIL = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: hi\r\nMessage-ID: <m1@b.test>\r\n\r\nbody\r\n"


async def _send(sink: SmtpSink, data: bytes = MAIL) -> tuple[dict[str, object], str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False) as client:
        return await client.sendmail("a@b.test", ["c@d.test"], data)  # type: ignore[return-value]


async def test_mail_is_recorded_and_written_as_eml(tmp_path: Path) -> None:
    async with SmtpSink(mail_dir=tmp_path / "mail") as sink:
        _, reply = await _send(sink)
    [mail] = sink.messages
    assert reply.endswith(f"queued as {mail.queue_id}")
    assert (mail.mail_from, mail.rcpt_tos, mail.message_id) == ("a@b.test", ("c@d.test",), "m1@b.test")
    assert mail.parse()["Subject"] == "hi"
    assert (tmp_path / "mail" / f"{mail.queue_id}.eml").read_bytes() == mail.data
    sink.reset()
    assert (sink.count, sink.messages) == (0, [])


async def test_throttle_window_in_seconds_ends_by_itself() -> None:
    async with SmtpSink() as sink:
        sink.throttle(454, seconds=0.15)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await _send(sink)
        assert refused.value.code == 454
        await asyncio.sleep(0.2)
        await _send(sink)
        assert sink.count == 1
        assert sink.rejections == 1


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_lost_answer_drops_the_connection_on_either_event_loop(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """The mail is kept and the client hears nothing: no 421 (`python -m optibridge.sinks` runs on
    uvloop, whose transports are not asyncio.Transport instances)."""

    async def scenario() -> None:
        async with SmtpSink() as sink:
            sink.drop_connections(at="ACCEPTED", count=1)
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await _send(sink)
            assert (sink.count, sink.unanswered) == (1, 1)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario())


async def test_keep_messages_off_still_counts() -> None:
    async with SmtpSink(keep_messages=False) as sink:
        await _send(sink)
        await _send(sink)
    assert (sink.count, sink.messages) == (2, [])


def test_demo_entry_point_prints_its_ports(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "optibridge.sinks", "--smtp-port", "0", "--http-port", "0"]
    process = subprocess.Popen([*command, "--mail-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert lines[0].startswith("smtp sink listening on 127.0.0.1:")
    assert lines[1].startswith("http sink listening on http://127.0.0.1:")
    ports = json.loads(lines[2])
    assert ports["smtp_port"] > 0
    assert ports["http_port"] > 0
    assert process.returncode == 0  # SIGTERM is a clean stop
