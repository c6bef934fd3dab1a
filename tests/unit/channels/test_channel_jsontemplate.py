"""JSON body templates: placeholders render JSON-escaped, so no value can change the structure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optibridge.channels.base import OutboundMessage
from optibridge.channels.jsontemplate import JsonTemplate, extract_path


def message(**overrides: object) -> OutboundMessage:
    fields: dict[str, object] = {
        "message_id": "m-1",
        "tenant_id": "t1",
        "campaign_id": 12,
        "customer_id": "c9",
        "template_id": 4,
        "to": "+15551230001",
        "body": "hello",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


def test_fields_render_into_their_strings() -> None:
    template = JsonTemplate(
        '{"to": "{{to}}", "msg": "Say: {{ body }}!", "ids": ["{{campaign_id}}", "{{template_id}}"],'
        ' "cb": "{{callback_url}}", "extra": {"k": "{{data.cohort}}", "missing": "{{data.nope}}"}, "n": 5}'
    )
    rendered = json.loads(
        template.render(message(data={"cohort": "gold"}), "https://h.example/r?message_id=")
    )
    assert rendered == {
        "to": "+15551230001",
        "msg": "Say: hello!",
        "ids": ["12", "4"],
        "cb": "https://h.example/r?message_id=m-1",
        "extra": {"k": "gold", "missing": ""},
        "n": 5,
    }


def test_placeholders_may_name_keys() -> None:
    rendered = json.loads(JsonTemplate('{"{{customer_id}}": "{{to}}"}').render(message()))
    assert rendered == {"c9": "+15551230001"}


@given(body=st.text(), to=st.text(max_size=40))
def test_no_value_can_break_out_of_its_string(body: str, to: str) -> None:
    template = JsonTemplate('{"to": "{{to}}", "text": "<{{body}}>", "fixed": true}')
    assert json.loads(template.render(message(body=body, to=to))) == {
        "to": to,
        "text": f"<{body}>",
        "fixed": True,
    }


def test_injection_attempt_stays_a_string() -> None:
    hostile = '", "admin": true, "x": "'
    rendered = json.loads(JsonTemplate('{"text": "{{body}}"}').render(message(body=hostile)))
    assert rendered == {"text": hostile}


def test_unknown_placeholder_and_invalid_json_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        JsonTemplate('{"a": "{{password}}"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        JsonTemplate('{"count": {{campaign_id}}}')  # placeholders only live inside strings


@pytest.mark.parametrize(
    ("document", "path", "value"),
    [
        ({"id": "x"}, "id", "x"),
        ({"data": {"id": 7}}, "data.id", "7"),
        ({"messages": [{"id": "a"}, {"id": "b"}]}, "messages.1.id", "b"),
        ({"messages": []}, "messages.0.id", None),
        ({"id": {"nested": 1}}, "id", None),
        ({"ok": True}, "ok", None),
        ([], "id", None),
    ],
)
def test_extract_path(document: object, path: str, value: str | None) -> None:
    assert extract_path(document, path) == value
