"""SMTP PIPELINING (RFC 2920, issue 15): MAIL, RCPT and DATA in one write where EHLO offers it.

Against the SMTP sink (aiosmtpd, offering PIPELINING unless told not to) and, for a server that
breaks RFC 2920 by accepting DATA without a valid recipient, a scripted server on loopback.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiosmtplib
import pytest

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.smtp import SmtpProvider
from optibridge.channels.smtp_pipelining import available, command, data_payload
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks import SmtpSink

MakeMessage = Callable[..., OutboundMessage]  # the `make_message` fixture (conftest.py)
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])
SENDER = b"news@shop.example"


def smtp_provider(port: int, **settings: Any) -> SmtpProvider:
    config = {
        "type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "from_address": SENDER.decode(),
        "pool_size": 1,
        **settings,
    }
    provider = build_provider("email", config, callback_base_url=None, policy=LOOPBACK)
    assert isinstance(provider, SmtpProvider)
    return provider


def group(recipient: str) -> bytes:
    return b"MAIL FROM:<" + SENDER + b">\r\nRCPT TO:<" + recipient.encode() + b">\r\nDATA\r\n"


def body_reads(sink: SmtpSink) -> list[bytes]:
    """The reads that carried message data (they end with the end-of-data line)."""
    return [r for r in sink.reads if r.endswith(b"\r\n.\r\n")]


def test_the_installed_aiosmtplib_still_has_what_pipelining_reads_need() -> None:
    """Otherwise the channel silently falls back to four round trips per message."""
    assert available()


def test_commands_refuse_injected_lines_and_the_payload_is_aiosmtplibs() -> None:
    with pytest.raises(ValueError, match="control character"):
        command(b"RCPT", b"TO:<a@b.example>\r\nRCPT TO:<c@d.example>")
    assert data_payload(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"


async def test_the_sink_offers_pipelining_unless_told_not_to() -> None:
    for pipelining in (True, False):
        async with SmtpSink(pipelining=pipelining) as sink:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False, timeout=5)
            async with client:
                await client.ehlo()
                assert client.supports_extension("pipelining") is pipelining


async def test_the_three_commands_arrive_in_one_read_and_each_message_once(
    make_message: MakeMessage,
) -> None:
    messages = [
        make_message(subject=f"s{n}", text_body=f"Hi {n}\n. a line starting with a dot\n.\nend")
        for n in range(3)
    ]
    async with SmtpSink() as sink:
        sink.record_reads = True
        async with smtp_provider(sink.port) as provider:
            results = [await provider.send(m) for m in messages]
            assert provider.connections_opened == 1
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.provider_message_id for r in results] == [m.queue_id for m in sink.messages]
    for message, received in zip(messages, sink.messages, strict=True):
        assert (received.mail_from, received.rcpt_tos) == (SENDER.decode(), (message.to,))
        assert received.message_id == f"{message.message_id}@shop.example"
        text, _ = received.parse().iter_parts()
        assert text.get_content().replace("\r\n", "\n").rstrip("\n") == message.text_body
    # Each envelope in one read, in that order, and never a lone MAIL (the lock-step path).
    assert [r for r in sink.reads if r.startswith(b"MAIL")] == [group(m.to) for m in messages]
    assert len(body_reads(sink)) == 3


async def test_pipelined_and_lock_step_paths_send_the_same_bytes(make_message: MakeMessage) -> None:
    """One encoder for the message data: the pipelined path reuses aiosmtplib's."""
    received = []
    for pipelining in (True, False):
        message = make_message(
            message_id="0d6c3f5e-7a5e-5d7b-9a57-3f5e7a5e5d7b",
            to="same@example.test",
            subject="Ünïcode ☃",
            text_body=".lead dot\r\nbare\rCR and bare\nLF\n..two dots",
            body="<p>.x</p>\n.<b>y</b>",
        )
        async with SmtpSink(pipelining=pipelining) as sink, smtp_provider(sink.port) as provider:
            assert (await provider.send(message)).outcome is Outcome.SENT
        [mail] = sink.messages
        received.append(re.sub(rb"(?m)^Date: .*\r\n", b"", mail.data))  # the second may differ
    assert received[0] == received[1]


async def test_a_refused_recipient_sends_no_data_and_keeps_the_connection(
    make_message: MakeMessage,
) -> None:
    async with SmtpSink() as sink:
        sink.record_reads = True
        sink.reject_recipients(["gone@example.test"])
        gone = make_message(to="gone@example.test")
        fine = make_message()
        async with smtp_provider(sink.port) as provider:
            bounced = await provider.send(gone)
            sent = await provider.send(fine)
            assert provider.connections_opened == 1
    assert (bounced.outcome, bounced.bounce) == (Outcome.PERMANENT, True)
    assert bounced.reason is not None
    assert bounced.reason.startswith("550 5.1.1")
    assert sent.outcome is Outcome.SENT
    assert sink.count == 1
    assert sink.messages[0].rcpt_tos == (fine.to,)
    assert group(gone.to) in sink.reads
    assert b"RSET\r\n" in sink.reads  # the envelope was cleared before the next message
    [data] = body_reads(sink)
    assert gone.message_id.encode() not in b"".join(sink.reads)
    assert fine.message_id.encode() in data


async def test_a_refused_sender_is_classified_and_sends_no_data(make_message: MakeMessage) -> None:
    async with SmtpSink() as sink:
        sink.record_reads = True
        async with smtp_provider(sink.port, throttle_retry_after_s=7) as provider:
            sink.throttle(550, count=1, text="5.7.1 Sender blocked")
            blocked = await provider.send(make_message())
            sink.throttle(451, count=1, text="4.3.0 Try later")
            later = await provider.send(make_message())
            sent = await provider.send(make_message())
            assert provider.connections_opened == 1  # each refusal answered in step, then RSET
            sink.throttle(421, count=1)  # "try again in 1 seconds"; the server is closing
            closing = await provider.send(make_message())
            after = await provider.send(make_message())
            assert provider.connections_opened == 2
    assert (blocked.outcome, blocked.bounce) == (Outcome.PERMANENT, False)
    assert blocked.reason is not None
    assert blocked.reason.startswith("550 5.7.1")
    assert later.outcome is Outcome.THROTTLED
    assert (closing.outcome, closing.retry_after) == (Outcome.THROTTLED, 1.0)
    assert [sent.outcome, after.outcome] == [Outcome.SENT, Outcome.SENT]
    assert sink.count == 2
    assert len(body_reads(sink)) == 2


async def test_without_pipelining_offered_the_commands_go_one_by_one(make_message: MakeMessage) -> None:
    message = make_message()
    async with SmtpSink(pipelining=False) as sink:
        sink.record_reads = True
        async with smtp_provider(sink.port) as provider:
            assert (await provider.send(message)).outcome is Outcome.SENT
    assert sink.count == 1
    mail, rcpt, data = (
        b"MAIL FROM:<" + SENDER + b">\r\n",
        f"RCPT TO:<{message.to}>\r\n".encode(),
        b"DATA\r\n",
    )
    start = sink.reads.index(mail)
    assert sink.reads[start : start + 3] == [mail, rcpt, data]


@asynccontextmanager
async def scripted_server(lines: list[bytes]) -> AsyncIterator[int]:
    """A server that offers PIPELINING but accepts DATA after refusing every RCPT to gone@...
    (RFC 2920 §3.1 says it should refuse it; the client must cope). Records the lines it reads."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        valid = 0
        try:
            while line := await reader.readline():
                lines.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT":
                    ok = b"gone@" not in line
                    valid += ok
                    writer.write(b"250 2.1.5 Ok\r\n" if ok else b"550 5.1.1 User unknown\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")  # even without a valid recipient
                    while (data := await reader.readline()) not in (b".\r\n", b""):
                        lines.append(data)
                    lines.append(data)
                    writer.write(
                        b"250 2.0.0 Ok: queued as QQ1234\r\n"
                        if valid
                        else b"554 5.5.1 No valid recipients\r\n"
                    )
                    valid = 0
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:  # MAIL, RSET
                    valid = 0 if verb == b"RSET" else valid
                    writer.write(b"250 Ok\r\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_data_accepted_despite_no_valid_recipient_gets_only_the_end_of_data(
    make_message: MakeMessage,
) -> None:
    lines: list[bytes] = []
    gone, fine = make_message(to="gone@example.test"), make_message()
    async with scripted_server(lines) as port, smtp_provider(port) as provider:
        async with asyncio.timeout(10):
            bounced = await provider.send(gone)
            sent = await provider.send(fine)
        assert provider.connections_opened == 1
    assert (bounced.outcome, bounced.bounce) == (Outcome.PERMANENT, True)
    assert (sent.outcome, sent.provider_message_id) == (Outcome.SENT, "QQ1234")  # replies in step
    first = lines.index(b"DATA\r\n")
    assert lines[first + 1 : first + 3] == [b".\r\n", b"RSET\r\n"]  # no message data for gone@
    assert gone.message_id.encode() not in b"".join(lines)
    assert fine.message_id.encode() in b"".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_message_costs_two_round_trips_with_pipelining_four_without(
    pipelining: bool, make_message: MakeMessage
) -> None:
    latency = 0.3
    async with SmtpSink(pipelining=pipelining) as sink:
        sink.reply_latency_s = latency
        async with smtp_provider(sink.port, timeout_s=10) as provider:
            assert (await provider.send(make_message())).outcome is Outcome.SENT  # connects
            started = time.monotonic()
            result = await provider.send(make_message())
            elapsed = time.monotonic() - started
    assert result.outcome is Outcome.SENT
    if pipelining:
        assert 2 * latency * 0.9 <= elapsed < 3.2 * latency
    else:
        assert 4 * latency * 0.9 <= elapsed < 4 * latency + 2.0
