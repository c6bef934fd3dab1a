"""The sinks' reply latency (bench/send.py --latency-ms): every reply leaves L after its command,
like a network round trip - pipelined commands pay one L together, lock-step ones one L each."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import aiosmtplib

from optibridge.sinks import HttpSink, SmtpSink

L = 0.1


async def test_smtp_replies_come_one_round_trip_after_their_commands() -> None:
    async with SmtpSink(keep_messages=False) as sink:
        sink.reply_latency_s = L
        reader, writer = await asyncio.open_connection("127.0.0.1", sink.port)
        try:
            async with asyncio.timeout(5):
                started = time.monotonic()
                assert (await reader.readline()).startswith(b"220")
                greeting = time.monotonic() - started
                writer.write(b"HELO client.example\r\nNOOP\r\nNOOP\r\n")  # three commands at once
                started = time.monotonic()
                replies = [await reader.readline() for _ in range(3)]
                together = time.monotonic() - started
                writer.write(b"QUIT\r\n")
                assert (await reader.readline()).startswith(b"221")
        finally:
            writer.close()
    assert [r[:3] for r in replies] == [b"250"] * 3
    assert L * 0.9 <= greeting < L * 3
    assert L * 0.9 <= together < L * 2, "pipelined commands pay one round trip, not three"


async def test_a_lock_step_smtp_message_costs_four_round_trips() -> None:
    async with SmtpSink(keep_messages=False) as sink:
        sink.reply_latency_s = L
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=sink.port, use_tls=False, start_tls=False, timeout=5
        )
        await client.connect()
        await client.ehlo()
        started = time.monotonic()
        await client.sendmail("a@shop.example", ["b@example.test"], b"Subject: x\r\n\r\nhi\r\n")
        elapsed = time.monotonic() - started
        await client.quit()
        assert sink.count == 1
    assert 4 * L * 0.9 <= elapsed < 4 * L + 2.0  # MAIL, RCPT, DATA, end of data (upper bound loose: CI load)


async def test_http_responses_are_delayed() -> None:
    async with HttpSink(record=False) as sink:
        sink.latency(L)
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(f"{sink.base_url}/json/push", json={"to": "t"}) as response:
                assert response.status == 200
            assert L * 0.9 <= time.monotonic() - started < L + 2.0
