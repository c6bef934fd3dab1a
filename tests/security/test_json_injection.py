"""JSON injection into webhook payloads (issue 12): the webhook channel sent the Liquid-rendered
template text as its body, so the attribute `Bo", "role": "admin` in `{"name": "{{ first_name }}",
"role": "user"}` produced `{"name": "Bo", "role": "admin", "role": "user"}`, validly signed.

Through the production path: the catalog, the dispatcher (`run_send`), the channel registry's
provider (built by channels/factory.py under the operator's outbound policy, loopback allowed) and
a real HTTP receiver on loopback.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import renderkit

from optibridge.catalog.models import TemplateSpec, compile_spec
from optibridge.channels.base import OutboundMessage
from optibridge.channels.factory import build_provider
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.delivery.tasks import run_send
from optibridge.sinks.http_sink import HttpSink

ATTACK = 'Bo", "role": "admin'
TEMPLATE = '{"name": "{{ first_name }}", "role": "user"}'


def _pairs(body: bytes) -> list[tuple[str, Any]]:
    """The top-level (key, value) pairs in order, duplicates kept (json.loads would hide one)."""
    found: list[list[tuple[str, Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found.append(pairs)
        return dict(pairs)

    json.loads(body, object_pairs_hook=hook)
    return found[-1]


async def _send(
    db_url: str, secret_key: str, data_dir: Path, templates: dict[int, tuple[str, bool]]
) -> tuple[HttpSink, dict[int, list[tuple[str, str | None]]]]:
    """Store the templates (checked or not), send one message each with the attack attribute."""
    async with HttpSink() as sink, renderkit.runtime(db_url, secret_key, data_dir) as rt:
        await renderkit.add_tenant(rt, f"{sink.base_url}/webhook/in")
        for template_id, (body, checked) in templates.items():
            if checked:
                await renderkit.save_template(rt, template_id, body)
            else:
                await renderkit.store_unchecked(rt, template_id, body)
        await renderkit.add_messages(
            rt, 5, len(templates), sorted(templates), {"first_name": ATTACK, "age": 41}
        )
        me = await renderkit.register_worker(rt)
        await run_send(rt, renderkit.TENANT, renderkit.CHANNEL_ID, me, budget_s=20)
        return sink, await renderkit.outcomes(rt, 5)


async def test_an_attribute_cannot_add_a_key_to_a_webhook_body(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    sink, got = await _send(db_url, test_secret_key, tmp_path / "data", {1: (TEMPLATE, True)})
    assert got == {1: [("sent", None)]}
    (request,) = sink.of_kind("webhook", accepted_only=True)
    assert json.loads(request.body) == {"name": 'Bo", "role": "admin', "role": "user"}
    assert _pairs(request.body) == [("name", 'Bo", "role": "admin'), ("role", "user")]
    assert request.body == b'{"name": "Bo\\", \\"role\\": \\"admin", "role": "user"}'


async def test_a_template_stored_before_the_fix_is_escaped_at_send_and_an_unsafe_one_fails(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    # 1: the same template, stored without any check: escaping happens at render, so it is safe.
    # 2: a value outside quotes, stored before the save check: the attack makes it invalid JSON,
    #    so the message fails at send instead of going out reshaped.
    templates = {1: (TEMPLATE, False), 2: ('{"name": {{ first_name }}, "role": "user"}', False)}
    sink, got = await _send(db_url, test_secret_key, tmp_path / "data", templates)
    assert got[1] == [("sent", None)]
    ((state, reason),) = got[2]
    assert state == "failed"
    assert reason is not None
    assert "JSON body is not valid JSON" in reason
    bodies = [json.loads(r.body) for r in sink.of_kind("webhook", accepted_only=True)]
    assert bodies == [{"name": ATTACK, "role": "user"}]


async def test_numbers_with_the_json_filter_and_unsafe_templates_refused_at_save(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    async with renderkit.runtime(db_url, test_secret_key, tmp_path / "data") as rt:
        await renderkit.add_tenant(rt, "http://127.0.0.1:9/webhook")
        for unsafe in (
            '{"name": {{ first_name }}, "role": "user"}',  # a value outside quotes
            '{"name": "{{ first_name | json }}", "role": "user"}',  # a quoted JSON value: "\"..\""
            '{"name": "{{ first_name }}", "role": "user"',  # not JSON at all
        ):
            with pytest.raises(ConfigError, match="refused"):
                await renderkit.save_template(rt, 3, unsafe)
        await renderkit.save_template(rt, 4, '{"name": {{ first_name | json }}, "age": {{ age | json }}}')

    body = '{"n": {{ first_name | json }}, "age": {{ age | json }}}'
    compiled = compile_spec("webhook", TemplateSpec(template_id=4, name="n", body=body))
    rendered = compiled.render({"first_name": ATTACK, "age": 41})["text"]
    assert json.loads(rendered) == {"n": ATTACK, "age": 41}


def test_the_json_provider_encodes_the_rendered_message_text() -> None:
    # channels/jsontemplate.py: `{{body}}` in a JSON provider's body template is the rendered SMS;
    # it is JSON-escaped into its string, so the same attack stays one value.
    async def go() -> bytes:
        async with HttpSink() as sink:
            provider = build_provider(
                "sms",
                {
                    "type": "json",
                    "url": f"{sink.base_url}/json/sms",
                    "body_template": '{"to": "{{to}}", "text": "{{body}}", "ref": "{{message_id}}"}',
                },
                policy=OutboundPolicy.from_strings(["127.0.0.0/8"]),
            )
            compiled = compile_spec("sms", TemplateSpec(template_id=1, name="s", body="Hi {{ first_name }}"))
            text = compiled.render({"first_name": ATTACK})["text"]
            message = OutboundMessage(
                message_id="m-1", tenant_id="acme", campaign_id=1, customer_id="c1", template_id=1,
                to="+15550001", body=text,
            )  # fmt: skip
            await provider.open()
            try:
                (result,) = await provider.send_many([message])
            finally:
                await provider.close()
            assert result.outcome.value == "sent", result
            (request,) = sink.of_kind("json")
            return request.body

    body = asyncio.run(go())
    assert _pairs(body) == [("to", "+15550001"), ("text", f"Hi {ATTACK}"), ("ref", "m-1")]
