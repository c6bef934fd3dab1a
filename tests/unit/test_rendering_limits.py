"""Render limits and JSON bodies: each attack is stopped quickly with the reason, and an ordinary
template renders as before.

Before the limits, `{{ (1..20000000) | join: "x" | size }}` rendered (26 s); a JSON template
spliced values as text. Every case here rendered or misbehaved on that code.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from optibridge.rendering import (
    LIMITS_EXCEEDED,
    RenderError,
    RenderLimitError,
    TemplateRefusedError,
    check_limits,
    compile_template,
    in_render_thread,
    limits,
)

JSON = frozenset({"text"})


def _render(source: str, data: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return compile_template({"text": source}, **kwargs).render(data or {})["text"]


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ('{{ (1..20000000) | join: "x" | size }}', "a range of 20000000 items"),
        ('{% assign n = 20000000 %}{{ (1..n) | join: "x" }}', "a range of 20000000 items"),
        ("{{ (1..100000000) }}", "a range of 100000000 items"),
        ("{% for i in (1..n) %}x{% endfor %}", "a range of 50000 items"),
        ("{% for a in (1..200) %}{% for b in (1..200) %}x{% endfor %}{% endfor %}", "loop iteration limit"),
        ("{% for i in (1..9999) %}{% endfor %}" * 12, "more than 100000 loop iterations"),
        (
            '{% assign s = "xxxxxxxx" %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}',
            "limit",
        ),
        ('{% assign s = "x" %}{% for i in (1..40) %}{% assign s = s | prepend: s %}{% endfor %}', "limit"),
        (
            "{% capture s %}" + "x" * 5000 + '{% endcapture %}{{ s | replace: "x", "' + "y" * 500 + '" }}',
            "replace would make 2500000 characters",
        ),
        (
            "{% capture s %}" + "ab" * 10000 + '{% endcapture %}{{ s | split: "" | size }}',
            "split would make 20000 items",
        ),
        (
            "{% assign n = 99999999 %}{% for i in (1..20) %}{% assign n = n | times: n %}{% endfor %}",
            "integer wider than 128 bits",
        ),
        (
            "{% for a in (1..100) %}{% for b in (1..100) %}{{ s }}{% endfor %}{% endfor %}",
            "output stream limit",
        ),
    ],
)
def test_a_bomb_fails_fast_with_the_reason(source: str, detail: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderLimitError) as caught:
        _render(source, {"n": 50000, "s": "x" * 200})
    assert time.monotonic() - started < 2.0
    assert str(caught.value).startswith(LIMITS_EXCEEDED)
    assert detail in str(caught.value)
    assert caught.value.part == "text"


def test_a_range_literal_over_the_limit_is_refused_at_save_but_compiles() -> None:
    # It must compile (a stored one must still fail only its own messages at send)...
    template = compile_template({"text": "{% for i in (1..10001) %}{% endfor %} ok"})
    assert template.problems == (("text", "the range (1..10001) has 10001 items (limit 10000)"),)
    # ...and the save refuses it before any render.
    with pytest.raises(TemplateRefusedError, match=r"the range \(1..10001\)") as caught:
        check_limits(template)
    assert caught.value.part == "text"
    assert LIMITS_EXCEEDED in caught.value.reason
    assert _render("{% for i in (1..10000) %}{% endfor %}ok") == "ok"  # at the limit: fine


def test_the_deadline_stops_a_slow_render_between_iterations() -> None:
    slow = (
        "{% capture s %}" + "x" * 60000 + "{% endcapture %}"
        '{% for i in (1..9999) %}{% assign t = s | replace: "x", "y" | upcase %}{% endfor %}'
    )
    template = compile_template({"text": slow})
    started = time.monotonic()
    with pytest.raises(RenderLimitError, match=r"render took longer than 0\.05 s") as caught:
        template.render({}, timeout_s=0.05)
    assert time.monotonic() - started < 2.0  # the whole render takes far longer
    assert caught.value.timed_out
    with pytest.raises(TemplateRefusedError, match=r"render took longer than 0\.05 s"):
        check_limits(template, timeout_s=0.05)


def test_ordinary_templates_render_as_before() -> None:
    source = (
        "Hi {{ FirstName | capitalize }}! {% for i in (1..3) %}{{ i | times: 2 }},{% endfor %} "
        '{{ "a,b,c" | split: "," | join: "+" | append: "!" | replace: "+", "-" }} '
        '{{ City | default: "Lyon" }}'
    )
    assert _render(source, {"FirstName": "ada"}) == "Hi Ada! 2,4,6, a-b-c! Lyon"
    check_limits(compile_template({"text": source}))  # accepted at save


def test_a_missing_attribute_is_still_a_plain_render_error() -> None:
    with pytest.raises(RenderError) as caught:
        _render("{{ Missing | upcase }}")
    assert not isinstance(caught.value, RenderLimitError)


def test_renders_in_a_thread_leave_the_event_loop_free() -> None:
    slow = compile_template(
        {"text": "{% capture s %}" + "x" * 60000 + "{% endcapture %}"
         '{% for i in (1..400) %}{% assign t = s | replace: "x", "y" | upcase %}{% endfor %}{{ t | size }}'}
    )  # fmt: skip

    async def go() -> tuple[str, float]:
        worst = 0.0

        async def ticker() -> None:
            nonlocal worst
            while True:
                started = time.monotonic()
                await asyncio.sleep(0.005)
                worst = max(worst, time.monotonic() - started - 0.005)

        task = asyncio.create_task(ticker())
        out = await in_render_thread(lambda: slow.render({}, timeout_s=5)["text"])
        task.cancel()
        return out, worst

    out, worst = asyncio.run(go())
    assert out == "60000"
    assert worst < 0.2, worst


def test_the_backstop_answers_even_if_a_render_thread_does_not() -> None:
    async def go() -> None:
        await in_render_thread(lambda: time.sleep(0.5), backstop_s=0.05)

    with pytest.raises(RenderLimitError, match=r"did not finish in 0\.05 s"):
        asyncio.run(go())


# --- JSON bodies --------------------------------------------------------------------------------

ATTACK = 'Bo", "role": "admin'


def test_json_parts_escape_every_value() -> None:
    source = '{"name": "{{ first_name }}", "role": "user"}'
    rendered = _render(source, {"first_name": ATTACK}, json_parts=JSON)
    assert rendered == '{"name": "Bo\\", \\"role\\": \\"admin", "role": "user"}'
    assert json.loads(rendered) == {"name": ATTACK, "role": "user"}
    # The fast path (a plain substitution) and Liquid (a filter) escape alike.
    assert compile_template({"text": source}, json_parts=JSON).plans
    upper = _render('{"name": "{{ first_name | upcase }}"}', {"first_name": ATTACK}, json_parts=JSON)
    assert json.loads(upper) == {"name": ATTACK.upper()}
    echo = _render('{"name": "{% echo first_name %}"}', {"first_name": ATTACK}, json_parts=JSON)
    assert json.loads(echo) == {"name": ATTACK}


@pytest.mark.parametrize(
    "value",
    ["a\\b", "line\nbreak\ttab\r", "</script><script>x()</script>", "é \u2028 \U0001f600", "\x00\x1f", '"'],
)
def test_json_parts_keep_awkward_values_as_one_string(value: str) -> None:
    rendered = _render('{"v": "{{ v }}", "w": "{{ v | append: "!" }}"}', {"v": value}, json_parts=JSON)
    assert json.loads(rendered) == {"v": value, "w": value + "!"}
    rendered.encode("utf-8")  # always encodable: non-ASCII is \u-escaped


def test_the_json_filter_writes_whole_values_and_other_types_stay_sensible() -> None:
    source = (
        '{"n": {{ n | json }}, "f": {{ f | json }}, "b": {{ b | json }}, "s": {{ s | json }}, "t": "{{ n }}"}'
    )
    rendered = _render(source, {"n": 41, "f": 1.5, "b": True, "s": ATTACK}, json_parts=JSON)
    assert json.loads(rendered) == {"n": 41, "f": 1.5, "b": True, "s": ATTACK, "t": "41"}
    missing = _render('{"x": {{ x | default: nil | json }}}', {}, json_parts=JSON)
    assert json.loads(missing) == {"x": None}


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ('{"name": {{ first_name }}}', "put every {{ }} inside a JSON string"),
        ('{"name": "{{ first_name | json }}"}', "not valid JSON"),
        ('{"name": "{{ first_name }}"', "not valid JSON"),
    ],
)
def test_unsafe_json_templates_are_refused_at_save(source: str, reason: str) -> None:
    template = compile_template({"text": source}, json_parts=JSON)
    with pytest.raises(TemplateRefusedError) as caught:
        check_limits(template)
    assert reason in caught.value.reason


def test_a_json_body_that_does_not_parse_at_send_fails_the_message() -> None:
    template = compile_template({"text": '{"name": {{ first_name }}}'}, json_parts=JSON)
    assert json.loads(template.render({"first_name": "1"})["text"]) == {"name": 1}
    with pytest.raises(RenderError, match="the rendered JSON body is not valid JSON"):
        template.render({"first_name": ATTACK})


def test_conditional_keys_pass_the_save_check() -> None:
    source = '{"a": "{{ a }}"{% if vip == "yes" %}, "tier": "gold"{% endif %}}'
    check_limits(compile_template({"text": source}, json_parts=JSON))
    assert json.loads(_render(source, {"a": ATTACK, "vip": "yes"}, json_parts=JSON)) == {
        "a": ATTACK,
        "tier": "gold",
    }


def test_limits_are_what_the_docs_say() -> None:
    # docs/channels.md "Templates: limits and JSON bodies" quotes these numbers.
    assert (limits.MAX_RANGE_ITEMS, limits.MAX_ITEMS, limits.MAX_FILTER_OUTPUT) == (10_000, 10_000, 1_000_000)
    assert (limits.LOOP_ITERATION_LIMIT, limits.TOTAL_LOOP_ITERATIONS) == (10_000, 100_000)
    assert (limits.OUTPUT_STREAM_LIMIT, limits.LOCAL_NAMESPACE_LIMIT) == (1_000_000, 200_000)


def test_a_template_with_too_many_tags_is_refused_before_parsing() -> None:
    # 140,000 output tags took 3.5 s of parser CPU, which no render deadline can stop.
    import time

    from optibridge.rendering import limits
    from optibridge.rendering.templates import TemplateSyntaxError, compile_template

    started = time.monotonic()
    with pytest.raises(TemplateSyntaxError, match="template exceeded render limits"):
        compile_template({"body": "{{ a }}" * (limits.MAX_TAGS * 10)})
    assert time.monotonic() - started < 1.0  # parsing 200,000 tags takes about 5 s
    assert compile_template({"body": "{{ a }}" * 1000}).attributes == ("a",)
