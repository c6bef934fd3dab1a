"""The hand-written MIME bytes, judged by Python's own email parser."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optibridge.channels.base import OutboundMessage
from optibridge.channels.mime import (
    EmailComposer,
    InvalidRecipientError,
    check_address,
    encode_body,
    encode_word,
    header_text,
)

DATE = "Thu, 26 Nov 2026 10:00:00 +0000"
MESSAGE_ID = "8d3e2b1c-5a4f-5e6d-9c8b-7a6f5e4d3c2b"


def message(**overrides: object) -> OutboundMessage:
    fields: dict[str, object] = {
        "message_id": MESSAGE_ID,
        "tenant_id": "t1",
        "campaign_id": 1,
        "customer_id": "c1",
        "template_id": 2,
        "to": "zoe@example.test",
        "body": "<p>Hi</p>",
        "subject": "Hello",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


def compose(msg: OutboundMessage, composer: EmailComposer | None = None) -> tuple[bytes, EmailMessage]:
    composer = composer or EmailComposer("news@shop.example", "Shop", "shop.example")
    _, _, data = composer.compose(msg, DATE)
    parsed = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return data, parsed


def test_headers_and_structure_of_a_multipart_message() -> None:
    data, parsed = compose(
        message(
            subject="Prix spéciaux pour Zoë ☃",
            body="<p>Chère Zoë</p>",
            text_body="Chère Zoë",
            headers={
                "List-Unsubscribe": "<https://u.example/x>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
    )
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert data.isascii()
    assert parsed["From"] == "Shop <news@shop.example>"
    assert parsed["To"] == "zoe@example.test"
    assert parsed["Subject"] == "Prix spéciaux pour Zoë ☃"
    assert parsed["Date"] == DATE
    assert parsed["Message-ID"] == f"<{MESSAGE_ID}@shop.example>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["List-Unsubscribe"] == "<https://u.example/x>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert text.get_content().rstrip("\r\n") == "Chère Zoë"
    assert html.get_content().rstrip("\r\n") == "<p>Chère Zoë</p>"
    assert parsed.defects == []


def test_html_only_message_is_a_single_part() -> None:
    _, parsed = compose(message(body="<p>plain ascii</p>"))
    assert parsed.get_content_type() == "text/html"
    assert parsed["Content-Transfer-Encoding"] == "7bit"
    assert parsed.get_content().rstrip("\r\n") == "<p>plain ascii</p>"


def test_body_encodings() -> None:
    assert encode_body("ascii\nonly")[0] == "7bit"
    assert encode_body("ascii\r\nonly") == ("7bit", b"ascii\r\nonly\r\n")
    assert encode_body("café")[0] == "quoted-printable"
    assert encode_body("x" * 2000)[0] == "quoted-printable"  # a line too long for 7bit
    assert encode_body("has =_ the boundary prefix")[0] == "quoted-printable"
    cte, data = encode_body("é" * 200 + "\n" + "tail ")
    assert cte == "quoted-printable"
    assert all(len(line) <= 76 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")


@settings(max_examples=150, deadline=None)
@given(subject=st.text(max_size=300), body=st.text(max_size=2000), text_body=st.text(max_size=500))
def test_any_text_round_trips(subject: str, body: str, text_body: str) -> None:
    """Whatever the template renders, the parser reads back the same subject and parts."""
    _, parsed = compose(message(subject=subject, body=body, text_body=text_body))
    # A subject is one line: line breaks become spaces, and runs of whitespace may fold.
    assert " ".join(str(parsed["Subject"]).split()) == " ".join(subject.split())
    assert parsed["Bcc"] is None
    text, html = parsed.iter_parts()
    normalise = lambda s: s.replace("\r\n", "\n").replace("\r", "\n")  # noqa: E731
    assert normalise(text.get_content()).rstrip("\n") == normalise(text_body).rstrip("\n")
    assert normalise(html.get_content()).rstrip("\n") == normalise(body).rstrip("\n")


def test_line_breaks_in_the_subject_cannot_inject_headers() -> None:
    data, parsed = compose(message(subject="Hi\r\nBcc: everyone@example.test\r\n\r\n<script>"))
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Hi Bcc: everyone@example.test <script>"
    assert b"\r\nBcc:" not in data


@pytest.mark.parametrize(
    "to",
    [
        "victim@example.test\r\nBcc: all@example.test",
        "victim@example.test\nSubject: x",
        "a@b.test, c@d.test",
        "<a@b.test>",
        "no-at-sign",
        "two@@example.test",
        "spaces in@example.test",
        "ünïcode@example.test",
        "",
    ],
)
def test_bad_recipients_are_refused(to: str) -> None:
    with pytest.raises(InvalidRecipientError):
        compose(message(to=to))


def test_internationalised_domain_is_idna_encoded() -> None:
    assert check_address("zoe@bücher.example") == "zoe@xn--bcher-kva.example"


def test_extra_headers_cannot_inject_or_override() -> None:
    _, parsed = compose(message(headers={"X-Campaign": "spring\r\nBcc: all@example.test"}))
    assert parsed["Bcc"] is None
    assert parsed["X-Campaign"] == "spring Bcc: all@example.test"
    with pytest.raises(ValueError, match="invalid header name"):
        compose(message(headers={"X-Bad\r\nBcc": "x"}))
    with pytest.raises(ValueError, match="cannot be overridden"):
        compose(message(headers={"Content-Type": "text/plain"}))
    with pytest.raises(ValueError, match="cannot be overridden"):
        compose(message(headers={"from": "ceo@shop.example"}))


def test_sender_override_and_display_names() -> None:
    _, parsed = compose(message(from_address='"Zoë, from Shop" <zoe@shop.example>'))
    assert parsed["From"].addresses[0].display_name == "Zoë, from Shop"
    assert parsed["From"].addresses[0].addr_spec == "zoe@shop.example"
    composer = EmailComposer("news@shop.example", 'Shop "Best" Deals', "shop.example")
    _, parsed = compose(message(), composer)
    assert parsed["From"].addresses[0].display_name == 'Shop "Best" Deals'
    with pytest.raises(ValueError, match="invalid email address"):
        compose(message(from_address="evil@shop.example\r\nBcc: x@y.test"))


def test_message_id_must_be_a_plain_token() -> None:
    with pytest.raises(ValueError, match="invalid message id"):
        compose(message(message_id="x>\r\nBcc: a@b.test"))


def test_encoded_words_respect_rfc_2047_limits() -> None:
    folded = encode_word("ü" * 100)
    words = folded.split("\r\n ")
    assert len(words) > 1
    assert all(len(word) <= 75 for word in words)
    assert header_text("plain") == "plain"
    assert header_text("x" * 1000).startswith("=?utf-8?b?")
