"""The Twilio form body: exactly what urlencode would give, however the callback URL looks."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from optibridge.channels import OutboundMessage, build_provider
from optibridge.channels.twilio import TwilioSmsProvider, quote_form

PROVIDER = build_provider(
    "sms",
    {"type": "twilio", "account_sid": "AC1", "auth_token": "t", "from_number": "+15005550006"},
    callback_base_url=None,
)
assert isinstance(PROVIDER, TwilioSmsProvider)

SEGMENT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
TOKEN = st.text(alphabet="ABCxyz019_-.~", min_size=1, max_size=40)


def message(body: str, callback: str) -> OutboundMessage:
    return OutboundMessage(
        message_id="m1", tenant_id="t", campaign_id=1, customer_id="c", template_id=1,
        to="+15550001", body=body, data={"status_callback": callback},
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    body=SEGMENT,
    base=st.sampled_from(["https://ob.example", "https://ob.example/x?y=1&z=", "http://h:8080/p q/é"]),
    path=st.lists(SEGMENT, max_size=3),
    tail=TOKEN | SEGMENT,
)
def test_form_matches_plain_quoting_for_any_callback(
    body: str, base: str, path: list[str], tail: str
) -> None:
    callback = "/".join([base, *path, tail])
    form = PROVIDER.form(message(body, callback)).decode("ascii")
    assert form.endswith("&StatusCallback=" + quote_plus(callback))
    assert dict(parse_qsl(form, keep_blank_values=True))["StatusCallback"] == callback
    # twice, so the cached prefix is used the second time
    assert PROVIDER.form(message(body, callback)) == form.encode("ascii")


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))) | st.text(max_size=200)
)
def test_quote_form_is_quote_plus(text: str) -> None:
    assert quote_form(text) == quote_plus(text)


def test_quote_form_on_every_ascii_character() -> None:
    every = "".join(chr(c) for c in range(128))
    assert quote_form(every) == quote_plus(every)
    assert quote_form("Hi Ann, 20% off! é") == quote_plus("Hi Ann, 20% off! é")
