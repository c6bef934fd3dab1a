"""Each new provider's event webhook over real HTTP against a real database: a receipt signed as
the provider signs it is recorded once however often it is replayed; a forged one is refused and
stores nothing; a receipt naming another tenant's message records nothing."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from provider_webhook_helpers import (
    MAILGUN_KEY,
    PLIVO_TOKEN,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    TOPIC,
    VONAGE_SECRET,
    ReceiptStack,
)

from optibridge.sinks.providers import ReceiptSigner
from optibridge.store import tenants as tenant_store


def _recorded(body: bytes) -> int:
    return int(json.loads(body)["recorded"])


# --- SES through SNS ----------------------------------------------------------------------------


def _ses(stack: ReceiptStack, event: str, index: int = 0, *, sns_id: str = "sns-1", **kw: object) -> bytes:
    message = stack.messages["ses"][index]
    notification = ReceiptSigner.ses_event(event, str(message.id), f"ses-{index}", **kw)  # type: ignore[arg-type]
    return stack.signer.sns(
        notification, topic_arn=TOPIC, cert_url=f"{stack.sink.base_url}/sns/cert.pem", message_id=sns_id
    )


async def test_ses_sns_delivery_counted_once_however_often_replayed(stack: ReceiptStack) -> None:
    body = _ses(stack, "Delivery")
    assert await stack.post(stack.url("ses"), body) == (200, b'{"received":1,"recorded":1}')
    for _ in range(3):
        status, answer = await stack.post(stack.url("ses"), body)
        assert (status, _recorded(answer)) == (200, 0)
    assert await stack.events() == [("t1", "C1", "delivered")]
    assert len(stack.sink.of("sns")) == 1  # the certificate was fetched once, then cached


async def test_ses_permanent_bounce_suppresses_and_signature_version_1_verifies(stack: ReceiptStack) -> None:
    message = stack.messages["ses"][1]
    notification = ReceiptSigner.ses_event(
        "Bounce", str(message.id), "ses-1", bounce={"bounceType": "Permanent"}
    )
    body = stack.signer.sns(
        notification, topic_arn=TOPIC, cert_url=f"{stack.sink.base_url}/sns/cert.pem", version="1"
    )
    status, answer = await stack.post(stack.url("ses"), body)
    assert (status, _recorded(answer)) == (200, 1)
    assert await stack.events() == [("t1", "C2", "bounced")]
    assert await stack.suppressed_count() == 1


async def test_ses_forged_tampered_or_foreign_notifications_store_nothing(stack: ReceiptStack) -> None:
    genuine = json.loads(_ses(stack, "Delivery"))
    # Tampered after signing: the bounce type changed.
    tampered = dict(genuine, Message=genuine["Message"].replace("Delivery", "Complaint"))
    assert (await stack.post(stack.url("ses"), json.dumps(tampered).encode()))[0] == 403
    # Signed by a key of our own making, certificate served from a host we do not allow.
    forger = ReceiptSigner()
    forged = json.loads(
        forger.sns(
            json.loads(genuine["Message"]), topic_arn=TOPIC, cert_url="http://127.0.0.2:9/sns/cert.pem"
        )
    )
    assert (await stack.post(stack.url("ses"), json.dumps(forged).encode()))[0] == 403
    # A look-alike host name that starts with the allowed base's text.
    lookalike = dict(genuine, SigningCertURL=stack.sink.base_url + ".evil.test/sns/cert.pem")
    assert (await stack.post(stack.url("ses"), json.dumps(lookalike).encode()))[0] == 403
    # Genuinely signed by "SNS", but from a topic this channel does not name.
    other_topic = stack.signer.sns(
        json.loads(genuine["Message"]),
        topic_arn="arn:aws:sns:eu-west-1:210987654321:someone-else",
        cert_url=f"{stack.sink.base_url}/sns/cert.pem",
    )
    assert (await stack.post(stack.url("ses"), other_topic))[0] == 403
    # Unsigned.
    unsigned = {k: v for k, v in genuine.items() if k != "Signature"}
    assert (await stack.post(stack.url("ses"), json.dumps(unsigned).encode()))[0] == 403
    assert await stack.events() == []
    assert not [r for r in stack.sink.of("sns") if "evil" in r.path]


async def test_ses_unsigned_requests_cannot_make_us_fetch_at_will(stack: ReceiptStack) -> None:
    """Certificate URLs under the allowed base, named by an unsigned request: a URL that failed
    is not fetched again, and only .pem paths are fetched at all."""
    genuine = json.loads(_ses(stack, "Delivery"))
    missing = dict(genuine, SigningCertURL=f"{stack.sink.base_url}/sns/missing.pem")
    for _ in range(5):
        assert (await stack.post(stack.url("ses"), json.dumps(missing).encode()))[0] == 403
    not_pem = dict(genuine, SigningCertURL=f"{stack.sink.base_url}/sns/subscribe?x=1")
    assert (await stack.post(stack.url("ses"), json.dumps(not_pem).encode()))[0] == 403
    assert [r.path for r in stack.sink.of("sns")] == ["/sns/missing.pem"]
    assert await stack.events() == []


async def test_ses_subscription_confirmation_is_confirmed_once_verified(stack: ReceiptStack) -> None:
    body = stack.signer.sns(
        {},
        topic_arn=TOPIC,
        cert_url=f"{stack.sink.base_url}/sns/cert.pem",
        kind="SubscriptionConfirmation",
        subscribe_url=f"{stack.sink.base_url}/sns/subscribe?Action=ConfirmSubscription&Token=x",
    )
    assert (await stack.post(stack.url("ses"), body))[0] == 200
    assert [r.path for r in stack.sink.of("sns")][-1].startswith("/sns/subscribe?Action=ConfirmSubscription")


# --- SendGrid -----------------------------------------------------------------------------------


def _sendgrid_event(
    stack: ReceiptStack, event: str, index: int = 0, event_id: str = "sg-1"
) -> dict[str, object]:
    return {
        "email": stack.messages["sendgrid"][index].address,
        "timestamp": 1772366400,
        "event": event,
        "sg_event_id": event_id,
        "sg_message_id": "abc.filter0001",
        "optibridge_message_id": str(stack.messages["sendgrid"][index].id),
    }


async def test_sendgrid_signed_events_counted_once_and_forgeries_refused(stack: ReceiptStack) -> None:
    events = [
        _sendgrid_event(stack, "processed", 0, "sg-0"),
        _sendgrid_event(stack, "delivered", 0, "sg-1"),
        _sendgrid_event(stack, "open", 1, "sg-2"),
    ]
    body, headers = stack.signer.sendgrid(events)
    status, answer = await stack.post(stack.url("sendgrid"), body, headers)
    assert (status, _recorded(answer)) == (200, 2)
    status, answer = await stack.post(stack.url("sendgrid"), body, headers)  # replay
    assert (status, _recorded(answer)) == (200, 0)

    forged = [_sendgrid_event(stack, "spamreport", 2, "sg-9")]
    forged_body, forged_headers = ReceiptSigner().sendgrid(forged)  # another key pair
    assert (await stack.post(stack.url("sendgrid"), forged_body, forged_headers))[0] == 403
    genuine_body, genuine_headers = stack.signer.sendgrid(forged)
    tampered = genuine_body.replace(b"spamreport", b"unsubscribe")
    assert (await stack.post(stack.url("sendgrid"), tampered, genuine_headers))[0] == 403
    retimed = dict(genuine_headers, **{"X-Twilio-Email-Event-Webhook-Timestamp": "1"})
    assert (await stack.post(stack.url("sendgrid"), genuine_body, retimed))[0] == 403
    assert (await stack.post(stack.url("sendgrid"), genuine_body, {}))[0] == 403
    assert await stack.events() == [("t1", "C1", "delivered"), ("t1", "C2", "opened")]
    assert await stack.suppressed_count() == 0


# --- Mailgun ------------------------------------------------------------------------------------


def _mailgun_data(
    stack: ReceiptStack, event: str, index: int, event_id: str, **extra: object
) -> dict[str, object]:
    return {
        "id": event_id,
        "event": event,
        "timestamp": 1772366400.1,
        "recipient": stack.messages["mailgun"][index].address,
        "user-variables": {"optibridge_message_id": str(stack.messages["mailgun"][index].id)},
        **extra,
    }


async def test_mailgun_hmac_signed_events_counted_once_and_forgeries_refused(stack: ReceiptStack) -> None:
    body = ReceiptSigner.mailgun(MAILGUN_KEY, _mailgun_data(stack, "failed", 0, "mg-1", severity="permanent"))
    status, answer = await stack.post(stack.url("mailgun"), body, {"Content-Type": "application/json"})
    assert (status, _recorded(answer)) == (200, 1)
    status, answer = await stack.post(stack.url("mailgun"), body, {"Content-Type": "application/json"})
    assert (status, _recorded(answer)) == (200, 0)

    forged = ReceiptSigner.mailgun("not-the-signing-key", _mailgun_data(stack, "complained", 1, "mg-2"))
    assert (await stack.post(stack.url("mailgun"), forged))[0] == 403
    # A genuine signature (it covers only timestamp + token) moved onto other event data.
    genuine = json.loads(body)
    moved = {"signature": genuine["signature"], "event-data": _mailgun_data(stack, "complained", 1, "mg-3")}
    assert (await stack.post(stack.url("mailgun"), json.dumps(moved).encode()))[0] == 403
    # A genuine signature from more than an hour ago.
    stale = json.loads(ReceiptSigner.mailgun(MAILGUN_KEY, _mailgun_data(stack, "complained", 1, "mg-4")))
    stack.clock.advance(hours=1, minutes=1)
    assert (await stack.post(stack.url("mailgun"), json.dumps(stale).encode()))[0] == 403
    assert await stack.events() == [("t1", "C1", "bounced")]
    assert await stack.suppressed_count() == 1


# --- Postmark -----------------------------------------------------------------------------------


def _postmark(stack: ReceiptStack, record: str, index: int, **extra: object) -> bytes:
    return json.dumps(
        {
            "RecordType": record,
            "MessageID": f"pm-{index}",
            "Recipient": stack.messages["postmark"][index].address,
            "DeliveredAt": "2026-03-01T12:05:00Z",
            "Metadata": {"optibridge_message_id": str(stack.messages["postmark"][index].id)},
            "MessageStream": "outbound",
            **extra,
        }
    ).encode()


async def test_postmark_basic_auth_webhooks_counted_once_and_wrong_credentials_refused(
    stack: ReceiptStack,
) -> None:
    auth = ReceiptSigner.postmark_auth(POSTMARK_USER, POSTMARK_PASSWORD)
    body = _postmark(stack, "Delivery", 0)
    status, answer = await stack.post(stack.url("postmark"), body, auth)
    assert (status, _recorded(answer)) == (200, 1)
    status, answer = await stack.post(stack.url("postmark"), body, auth)
    assert (status, _recorded(answer)) == (200, 0)
    complaint = _postmark(stack, "SpamComplaint", 1)
    assert (await stack.post(stack.url("postmark"), complaint))[0] == 401
    wrong = ReceiptSigner.postmark_auth(POSTMARK_USER, "guessed-password-000")
    assert (await stack.post(stack.url("postmark"), complaint, wrong))[0] == 401
    raw = {"Authorization": "Basic " + base64.b64encode(f"{POSTMARK_USER}:".encode()).decode()}
    assert (await stack.post(stack.url("postmark"), complaint, raw))[0] == 401
    assert await stack.events() == [("t1", "C1", "delivered")]


# --- Vonage -------------------------------------------------------------------------------------


def _dlr(stack: ReceiptStack, index: int, status: str = "delivered", **extra: str) -> dict[str, str]:
    return {
        "msisdn": "15550000001",
        "to": "15550001111",
        "messageId": f"0A000000{index:08d}",
        "status": status,
        "err-code": "0",
        "client-ref": str(stack.messages["vonage"][index].id),
        "message-timestamp": "2026-03-01 12:05:00",
        **extra,
    }


async def test_vonage_signed_receipts_counted_once_and_forgeries_refused(stack: ReceiptStack) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = ReceiptSigner.vonage(_dlr(stack, 0), VONAGE_SECRET)
    status, answer = await stack.post(stack.url("vonage"), body, form)
    assert (status, _recorded(answer)) == (200, 1)
    status, answer = await stack.post(stack.url("vonage"), body, form)
    assert (status, _recorded(answer)) == (200, 0)
    async with stack.session.get(stack.url("vonage") + "?" + body.decode()) as resp:  # DLRs may come as GET
        assert (resp.status, _recorded(await resp.read())) == (200, 0)

    failed = _dlr(stack, 1, "failed", **{"err-code": "9"})
    assert (await stack.post(stack.url("vonage"), ReceiptSigner.vonage(failed, "wrong-secret"), form))[
        0
    ] == 403
    assert (await stack.post(stack.url("vonage"), urlencode(failed).encode(), form))[0] == 403
    signed = ReceiptSigner.vonage(failed, VONAGE_SECRET)
    assert (await stack.post(stack.url("vonage"), signed.replace(b"err-code=9", b"err-code=3"), form))[
        0
    ] == 403
    assert await stack.events() == [("t1", "C1", "delivered")]


# --- Plivo --------------------------------------------------------------------------------------


async def test_plivo_v3_signed_callbacks_counted_once_and_forgeries_refused(stack: ReceiptStack) -> None:
    message = stack.messages["plivo"][0]
    url = f"{stack.url('plivo')}?message_id={message.id}"
    params = {
        "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
        "Status": "delivered",
        "To": "15550000001",
    }
    body, headers = ReceiptSigner.plivo(url, params, PLIVO_TOKEN)
    status, answer = await stack.post(url, body, headers)
    assert (status, _recorded(answer)) == (200, 1)
    status, answer = await stack.post(url, body, headers)
    assert (status, _recorded(answer)) == (200, 0)

    other = stack.messages["plivo"][1]
    undelivered = dict(params, Status="undelivered", ErrorCode="50", MessageUUID="aa")
    forged_body, forged_headers = ReceiptSigner.plivo(url, undelivered, "not-the-auth-token")
    assert (await stack.post(url, forged_body, forged_headers))[0] == 403
    # A genuine signature for message 0 replayed against another message's URL.
    genuine_body, genuine_headers = ReceiptSigner.plivo(url, undelivered, PLIVO_TOKEN)
    moved = f"{stack.url('plivo')}?message_id={other.id}"
    assert (await stack.post(moved, genuine_body, genuine_headers))[0] == 403
    assert (await stack.post(url, genuine_body, {}))[0] == 403
    assert await stack.events() == [("t1", "C1", "delivered")]


# --- Tenancy ------------------------------------------------------------------------------------


async def test_a_validly_signed_receipt_about_another_tenants_message_records_nothing(
    stack: ReceiptStack,
) -> None:
    stranger = stack.other_tenant[0]
    event = dict(
        _sendgrid_event(stack, "spamreport", 0, "sg-x"),
        optibridge_message_id=str(stranger.id),
        email=stranger.address,
    )
    body, headers = stack.signer.sendgrid([event])
    status, answer = await stack.post(stack.url("sendgrid"), body, headers)
    assert (status, _recorded(answer)) == (200, 0)
    assert await stack.events() == []
    assert await stack.suppressed_count() == 0


async def test_unknown_tenant_channel_or_provider_is_404(stack: ReceiptStack) -> None:
    body, headers = stack.signer.sendgrid([_sendgrid_event(stack, "delivered")])
    assert (await stack.post(stack.url("sendgrid", tenant="nobody"), body, headers))[0] == 404
    assert (await stack.post(f"{stack.base_url}/r/sendgrid/t1/999", body, headers))[0] == 404
    assert (await stack.post(f"{stack.base_url}/r/mailgun/t1/602", body, headers))[
        0
    ] == 404  # a SendGrid channel
    assert await stack.events() == []


async def test_the_served_app_mounts_the_routes_behind_its_body_limit(stack: ReceiptStack) -> None:
    """`create_app` (what `optibridge serve` runs) serves these endpoints: a forged SendGrid
    batch is refused there too, and a body over the receipts' 1 MiB is refused before it is read."""
    from optibridge.emulator.testing import serving
    from optibridge.web.app import create_app

    app = create_app(stack.runtime, expect_workers=False)
    async with serving(app) as base_url:
        url = f"{base_url}/r/sendgrid/t1/602"
        body, headers = ReceiptSigner().sendgrid([_sendgrid_event(stack, "spamreport", 0, "sg-f")])
        assert (await stack.post(url, body, headers))[0] == 403
        genuine, genuine_headers = stack.signer.sendgrid([_sendgrid_event(stack, "delivered", 0, "sg-g")])
        assert (await stack.post(url, genuine, genuine_headers))[0] == 200
        assert (await stack.post(url, b"[" + b" " * (1024 * 1024 + 10) + b"]", genuine_headers))[0] == 413
    assert await stack.events() == [("t1", "C1", "delivered")]


async def test_the_body_is_bounded_before_the_database_is_asked(
    stack: ReceiptStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unauthenticated caller cannot make us look a tenant up without a body inside the limit:
    over it, 413 and no lookup, for every provider's endpoint (a known tenant or not)."""
    real = tenant_store.channel_provider_settings
    lookups: list[tuple[str, int]] = []

    async def counted(conn: object, box: object, tenant: str, channel: int) -> object:
        lookups.append((tenant, channel))
        return await real(conn, box, tenant, channel)  # type: ignore[arg-type]

    monkeypatch.setattr(tenant_store, "channel_provider_settings", counted)
    for provider, limit in [("ses", 1 << 20), ("sendgrid", 1 << 20), ("mailgun", 1 << 20),
                            ("postmark", 1 << 20), ("vonage", 16 << 10), ("plivo", 16 << 10)]:  # fmt: skip
        for tenant in ("t1", "nobody"):
            status, _ = await stack.post(stack.url(provider, tenant=tenant), b"x" * (limit + 1))
            assert status == 413, (provider, tenant)
    assert lookups == []
    # Inside the limit, the lookup happens and an unknown tenant is 404.
    assert (await stack.post(stack.url("plivo", tenant="nobody"), b"x" * 100))[0] == 404
    assert lookups == [("nobody", 606)]


async def test_a_receipt_with_too_many_fields_is_400_by_post_and_by_get(stack: ReceiptStack) -> None:
    fields = "&".join(f"f{n}=x" for n in range(101))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await stack.post(stack.url("vonage"), fields.encode(), form))[0] == 400
    async with stack.session.get(f"{stack.url('vonage')}?{fields}") as resp:  # was a 500
        assert resp.status == 400
    assert await stack.events() == []
