"""The SMTP adapter against the SMTP sink: content, pooling, faults."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.smtp import SmtpProvider
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks import SmtpSink

MakeMessage = Callable[..., OutboundMessage]  # the `make_message` fixture (conftest.py)

# The sinks run on loopback: the operator setting opens it (the default policy refuses it).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


def smtp_provider(sink: SmtpSink, **settings: Any) -> SmtpProvider:
    config = {
        "type": "smtp",
        "host": "127.0.0.1",
        "port": sink.port,
        "tls": "none",
        "from_address": "news@shop.example",
        "from_name": "Shöp News",
        "pool_size": 4,
        **settings,
    }
    provider = build_provider("email", config, callback_base_url=None, policy=LOOPBACK)
    assert isinstance(provider, SmtpProvider)
    return provider


async def test_personalized_email_arrives_intact(smtp_sink: SmtpSink, make_message: MakeMessage) -> None:
    """Subject (non-ASCII), both parts, Message-ID and RFC 8058 headers survive the trip."""
    unsubscribe = "<https://t.example/u/abc>, <mailto:unsub@shop.example?subject=u>"
    messages = [
        make_message(
            subject=f"Ünïcode sale for Zoë #{n} — 50% off ☃",
            body=f"<html><body><p>Hi Zoë {n}, =_ not a boundary. é</p>\n<a href='x'>go</a></body></html>",
            text_body=f"Hi Zoë {n}\nLine two.\n. a line starting with a dot",
            headers={"List-Unsubscribe": unsubscribe, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        )
        for n in range(3)
    ]
    async with smtp_provider(smtp_sink) as provider:
        results = [await provider.send(m) for m in messages]
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.provider_message_id for r in results] == [m.queue_id for m in smtp_sink.messages]
    assert smtp_sink.count == 3
    for n, (message, received) in enumerate(zip(messages, smtp_sink.messages, strict=True)):
        parsed = received.parse()
        assert received.rcpt_tos == (message.to,)
        assert received.mail_from == "news@shop.example"
        assert parsed["Subject"] == message.subject
        assert parsed["From"].addresses[0].display_name == "Shöp News"
        assert parsed["To"] == message.to
        assert parsed["Message-ID"] == f"<{message.message_id}@shop.example>"
        assert parsed["List-Unsubscribe"] == unsubscribe
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed.get_content_type() == "multipart/alternative"
        text, html = parsed.iter_parts()
        assert text.get_content().replace("\r\n", "\n").rstrip("\n") == message.text_body
        assert html.get_content().replace("\r\n", "\n").rstrip("\n") == message.body
        assert f"Zoë {n}" in html.get_content()


async def test_the_pool_opens_a_few_connections_at_a_time(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    # 512 connections opened at once by each of two workers overflowed the sink's listen backlog
    # (100): connections the client took for open were never accepted, their greeting never came,
    # and each waited out the 30 s timeout (bench/send.py --latency-ms 50 --only email, 2 of 3 runs).
    smtp_sink.reply_latency_s = 0.05  # greeting and EHLO take a round trip each
    messages = [make_message(subject=f"s{n}", text_body=f"t{n}") for n in range(120)]
    async with smtp_provider(smtp_sink, pool_size=40, connects_at_once=4) as provider:
        results = await provider.send_many(messages)
        opened = provider.connections_opened
    assert Counter(r.outcome for r in results) == {Outcome.SENT: 120}
    assert smtp_sink.count == 120
    assert 4 < opened <= 40  # the pool did grow past the connects in progress
    assert smtp_sink.greeting_peak == 4, "at most connects_at_once connections opening at once"


async def test_many_messages_over_the_pool_are_each_delivered_once(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    messages = [make_message(subject=f"s{n}", text_body=f"t{n}") for n in range(300)]
    async with smtp_provider(smtp_sink, pool_size=4) as provider:
        results = await provider.send_many(messages)
        assert provider.connections_opened <= 4
    assert all(r.outcome is Outcome.SENT for r in results)
    by_queue_id = {m.queue_id: m for m in smtp_sink.messages}
    for message, result in zip(messages, results, strict=True):  # results are in input order
        assert result.provider_message_id is not None
        assert by_queue_id[result.provider_message_id].rcpt_tos == (message.to,)
    counts = Counter(smtp_sink.message_ids)
    assert len(counts) == 300
    assert set(counts.values()) == {1}


async def test_421_and_454_are_throttling_with_retry_after(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    async with smtp_provider(smtp_sink, throttle_retry_after_s=7) as provider:
        smtp_sink.throttle(421, count=1)  # its text says "try again in 1 seconds"
        first = await provider.send(make_message())
        smtp_sink.throttle(454, count=1, text="4.7.0 Throttling failure: Maximum sending rate exceeded")
        second = await provider.send(make_message())
        smtp_sink.throttle(451, seconds=0.2)
        third = await provider.send(make_message())
        await asyncio.sleep(0.25)
        after = await provider.send(make_message())
    assert (first.outcome, first.retry_after) == (Outcome.THROTTLED, 1.0)
    assert (second.outcome, second.retry_after) == (Outcome.THROTTLED, 7.0)
    assert second.reason is not None
    assert second.reason.startswith("454 4.7.0")
    assert third.outcome is Outcome.THROTTLED
    assert after.outcome is Outcome.SENT  # 421 closed a connection; the pool opened another
    assert smtp_sink.count == 1


async def test_unknown_recipient_is_a_permanent_bounce_and_the_connection_stays(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    smtp_sink.reject_recipients(["gone@example.test"])
    async with smtp_provider(smtp_sink, pool_size=1) as provider:
        bounced = await provider.send(make_message(to="gone@example.test"))
        fine = await provider.send(make_message())
        assert provider.connections_opened == 1
    assert bounced.outcome is Outcome.PERMANENT
    assert bounced.bounce
    assert bounced.reason is not None
    assert "550 5.1.1" in bounced.reason
    assert fine.outcome is Outcome.SENT
    assert smtp_sink.count == 1


async def test_invalid_address_bounces_without_reaching_the_server(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    async with smtp_provider(smtp_sink) as provider:
        result = await provider.send(make_message(to="victim@example.test\r\nBcc: all@example.test"))
    assert result.outcome is Outcome.PERMANENT
    assert result.bounce
    assert smtp_sink.count == 0
    assert smtp_sink.connections == 0


async def test_a_dropped_connection_is_replaced_and_the_pool_keeps_working(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    async with smtp_provider(smtp_sink, pool_size=2) as provider:
        assert all(
            r.outcome is Outcome.SENT for r in await provider.send_many([make_message() for _ in range(4)])
        )
        smtp_sink.drop_connections(count=1, at="DATA")  # dies after the data: fate unknown
        dropped = await provider.send(make_message())
        smtp_sink.drop_all_connections()  # server restart between sends: nobody should notice
        await asyncio.sleep(0.01)
        later = await provider.send_many([make_message() for _ in range(10)])
        opened = provider.connections_opened
    assert dropped.outcome is Outcome.TRANSIENT
    assert [r.outcome for r in later] == [Outcome.SENT] * 10
    assert opened >= 3
    assert smtp_sink.count == 14


async def test_a_pooled_connection_dropped_before_mail_is_retried_once_on_a_fresh_one(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    """Failing at MAIL means nothing was accepted, so a retry cannot duplicate; only one, though."""
    async with smtp_provider(smtp_sink, pool_size=1) as provider:
        assert (await provider.send(make_message())).outcome is Outcome.SENT
        smtp_sink.drop_connections(count=1)
        retried = await provider.send(make_message())
        smtp_sink.drop_connections(count=2)
        given_up = await provider.send(make_message())
        fine = await provider.send(make_message())
    assert retried.outcome is Outcome.SENT
    assert given_up.outcome is Outcome.TRANSIENT
    assert fine.outcome is Outcome.SENT
    assert len(set(smtp_sink.message_ids)) == smtp_sink.count == 3


async def test_slow_server_times_out_as_transient(smtp_sink: SmtpSink, make_message: MakeMessage) -> None:
    smtp_sink.slow(1.0, count=1)
    async with smtp_provider(smtp_sink, timeout_s=0.2) as provider:
        slow = await provider.send(make_message())
        fine = await provider.send(make_message())
    # The message was transmitted; only the reply to it was late: the outcome is unknown.
    assert (slow.outcome, slow.reason, slow.uncertain) == (
        Outcome.TRANSIENT, "no answer after sending (timeout)", True,
    )  # fmt: skip
    assert fine.outcome is Outcome.SENT


async def test_unreachable_server_is_transient(make_message: MakeMessage) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        provider = build_provider(
            "email",
            {"type": "smtp", "host": "127.0.0.1", "port": port, "tls": "none", "from_address": "a@b.example"},
            policy=LOOPBACK,
        )
        await provider.open()
        try:
            result = await provider.send(make_message())
        finally:
            await provider.close()
    assert result.outcome is Outcome.TRANSIENT
    assert result.reason is not None
    assert result.reason.startswith("connect:")


async def test_connections_are_recycled_after_the_message_cap(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    async with smtp_provider(smtp_sink, pool_size=1, max_messages_per_connection=2) as provider:
        results = [await provider.send(make_message()) for _ in range(6)]
        assert provider.connections_opened == 3
    assert [r.outcome for r in results] == [Outcome.SENT] * 6


async def test_close_quits_pooled_connections(smtp_sink: SmtpSink, make_message: MakeMessage) -> None:
    provider = smtp_provider(smtp_sink, pool_size=3)
    await provider.open()
    await provider.send_many([make_message() for _ in range(6)])
    assert smtp_sink.open_connections >= 1
    await provider.close()
    for _ in range(100):  # bounded: the server sees the QUITs within milliseconds
        if smtp_sink.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert smtp_sink.open_connections == 0


async def test_a_send_cancelled_mid_transaction_does_not_poison_the_pool(
    smtp_sink: SmtpSink, make_message: MakeMessage
) -> None:
    smtp_sink.slow(0.5, count=1)
    async with smtp_provider(smtp_sink, pool_size=1) as provider:
        task = asyncio.ensure_future(provider.send(make_message()))
        await asyncio.sleep(0.1)  # now waiting for the DATA reply
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = [await provider.send(make_message()) for _ in range(3)]
    assert [r.outcome for r in after] == [Outcome.SENT] * 3
    assert [m.queue_id for m in smtp_sink.messages[-3:]] == [r.provider_message_id for r in after]
