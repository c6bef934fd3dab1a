"""A send whose answer is lost after the request went out is `uncertain`; one that never went out
is not. The dispatcher asks the delivery lookup about the uncertain ones (docs/delivery.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from optibridge.channels import OutboundMessage, Outcome, SendResult, build_provider
from optibridge.core.outbound import OutboundPolicy
from optibridge.delivery.lookup import LookupTarget, settle_uncertain
from optibridge.sinks.lookup import DeliveryLookup

from servicekit import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# The sinks run on loopback: the operator setting opens it (the default policy refuses it).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(handler(reader, writer), timeout=5)
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def message(**over: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": str(uuid.uuid4()), "tenant_id": "t", "campaign_id": 1, "customer_id": "c1",
        "template_id": 1, "to": "+15550001", "body": "hi",
    }  # fmt: skip
    return OutboundMessage(**(fields | over))


async def read_http_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


def twilio(port: int) -> Any:
    return build_provider(
        "sms",
        {
            "type": "twilio", "account_sid": "AC1", "auth_token": "t", "from_number": "+15005550006",
            "base_url": f"http://127.0.0.1:{port}", "timeout_s": 0.5,
        },
        callback_base_url=None,
        policy=LOOPBACK,
    )  # fmt: skip


async def test_http_request_read_then_connection_dropped_is_uncertain() -> None:
    async def read_and_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_request(reader)

    async with raw_server(read_and_drop) as port, twilio(port) as provider:
        result = await provider.send(message())
    assert (result.outcome, result.uncertain) == (Outcome.TRANSIENT, True)
    assert result.reason is not None
    assert result.reason.startswith("no answer after sending")


async def test_http_request_read_then_no_answer_until_timeout_is_uncertain() -> None:
    async def read_and_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_request(reader)
        await reader.read()  # until the client gives up and closes

    async with raw_server(read_and_wait) as port, twilio(port) as provider:
        result = await provider.send(message())
    assert (result.outcome, result.uncertain) == (Outcome.TRANSIENT, True)
    assert result.reason == "no answer after sending (timeout)"


async def test_http_connection_refused_is_not_uncertain() -> None:
    async with twilio(free_port()) as provider:
        result = await provider.send(message())
    assert (result.outcome, result.uncertain) == (Outcome.TRANSIENT, False)


def smtp(port: int) -> Any:
    return build_provider(
        "email",
        {
            "type": "smtp", "host": "127.0.0.1", "port": port, "tls": "none",
            "from_address": "news@shop.test", "pool_size": 1, "timeout_s": 2,
        },
        callback_base_url=None,
        policy=LOOPBACK,
    )  # fmt: skip


def smtp_dialogue(drop_at: bytes) -> Handler:
    """A minimal SMTP server that closes the connection when it reaches `drop_at`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
            if verb == drop_at:
                return
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 test\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                if drop_at == b"END-OF-DATA":
                    return  # the message was read; the 250 never comes
                writer.write(b"250 2.0.0 Ok: queued as X1\r\n")
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    return serve


async def test_smtp_dropped_after_the_data_was_sent_is_uncertain() -> None:
    async with raw_server(smtp_dialogue(b"END-OF-DATA")) as port, smtp(port) as provider:
        result = await provider.send(message(to="a@b.test", subject="s"))
    assert (result.outcome, result.uncertain) == (Outcome.TRANSIENT, True)


async def test_smtp_dropped_before_data_is_not_uncertain() -> None:
    async with raw_server(smtp_dialogue(b"RCPT")) as port, smtp(port) as provider:
        result = await provider.send(message(to="a@b.test", subject="s"))
    assert (result.outcome, result.uncertain) == (Outcome.TRANSIENT, False)


async def test_the_delivery_lookup_settles_uncertain_sends_and_a_failing_one_changes_nothing() -> None:
    rows = [{"id": uuid.uuid4()} for _ in range(4)]
    lost = SendResult(Outcome.TRANSIENT, reason="no answer after sending (timeout)", uncertain=True)
    refused = SendResult(Outcome.TRANSIENT, reason="connection error")
    results = [lost, lost, refused, SendResult(Outcome.SENT)]
    accepted = {str(rows[0]["id"]), str(rows[2]["id"])}  # row 2 was refused: the lookup is not asked
    async with DeliveryLookup(lambda: accepted) as lookup:
        settled = await settle_uncertain(LookupTarget(lookup.url, LOOPBACK), rows, results)
        # The same lookup under the default policy: refused before any request, nothing settled.
        assert await settle_uncertain(lookup.url, rows, results) == results
    assert [r.outcome for r in settled] == [Outcome.SENT, Outcome.TRANSIENT, Outcome.TRANSIENT, Outcome.SENT]
    assert not any(r.uncertain for r in settled)  # the lookup's answer is certain either way
    assert settled[1].reason == "no answer after sending (timeout); not taken, says the delivery lookup"
    assert settled[2] is refused
    unreachable = f"http://127.0.0.1:{free_port()}/delivered"
    assert await settle_uncertain(LookupTarget(unreachable, LOOPBACK), rows, results) == results
