"""The fast path renders exactly what Liquid renders, or steps aside for Liquid."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from liquid.exceptions import LiquidError

from optibridge.rendering import RenderError, TemplateSyntaxError, compile_template
from optibridge.rendering.fastpath import Slot, plan_of, render_plan

NAMES = ("FirstName", "City", "Code", "customer_id")
TEXT = st.text(alphabet="ab <>&\"'\n\t é%[]}", max_size=12)
FALLBACK = st.text(alphabet="xy <&>\"'é", max_size=6)


def _piece() -> st.SearchStrategy[str]:
    name = st.sampled_from(NAMES)
    return st.one_of(
        TEXT,
        name.map(lambda n: "{{ " + n + " }}"),
        name.map(lambda n: "{{- " + n + " -}}"),
        name.map(lambda n: f"[%{n}%]"),
        st.tuples(name, FALLBACK).map(lambda p: f"[%{p[0]}:{p[1]}%]"),
    )


VALUE = st.one_of(
    st.text(alphabet="ab <>&\"'é", max_size=8), st.just(""), st.integers(-5, 5), st.booleans(), st.none(),
    st.lists(st.text(alphabet="ab<", max_size=2), max_size=2),
)  # fmt: skip


def _liquid(template: Any, data: dict[str, Any]) -> str | type[LiquidError]:
    try:
        return str(template.render(**data))
    except LiquidError:
        return LiquidError


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(_piece(), max_size=8),
    values=st.dictionaries(st.sampled_from(NAMES), VALUE, max_size=4),
)
def test_fast_path_and_liquid_agree(pieces: list[str], values: dict[str, Any]) -> None:
    source = "".join(pieces)
    try:
        compiled = compile_template({"html": source, "text": source})
    except TemplateSyntaxError:  # a fallback with both quote kinds: refused, tested elsewhere
        assume(False)
        return
    data = {k: v for k, v in values.items() if v is not None}
    for part in ("html", "text"):
        template = compiled.parts.get(part)
        if template is None:  # an empty source has no part
            assert source == ""
            continue
        expected = _liquid(template, data)
        try:
            got: str | type[LiquidError] = compiled.render(values)[part]
        except RenderError:
            got = LiquidError
        assert got == expected, (part, source, values)
        plan = compiled.plans[part]  # every generated template is simple enough for the fast path
        fast = render_plan(plan, data)
        assert fast is None or fast == expected


def test_simple_templates_get_a_plan_and_others_do_not() -> None:
    compiled = compile_template(
        {
            "subject": 'Hi [%FirstName:there%], {{ City | default: "Lyon" }}',
            "text": "{{ FirstName | upcase }}",
            "html": "{% if City %}{{ City }}{% endif %}",
            "body": "{{ customer.name }} {{ 'literal' }}",
            "title": '{{ City | default: "x", allow_false: true }}',
        }
    )
    assert compiled.plans["subject"].pieces == (
        "Hi ", Slot("FirstName", "there"), ", ", Slot("City", "Lyon"),
    )  # fmt: skip
    assert set(compiled.plans) == {"subject"}


def test_values_it_cannot_vouch_for_go_to_liquid() -> None:
    plan = plan_of(compile_template({"html": "<p>{{ A }}</p>"}).parts["html"])
    assert plan is not None
    assert render_plan(plan, {"A": "<b>&"}) == "<p>&lt;b&gt;&amp;</p>"
    assert render_plan(plan, {"A": 3}) is None  # Liquid formats numbers
    assert render_plan(plan, {}) is None  # Liquid raises for a missing attribute
    assert render_plan(plan, {"A": "x" * 600_000}) is None  # near the output limit


def test_missing_attribute_and_output_limit_keep_liquid_errors() -> None:
    compiled = compile_template({"text": "Hi {{ A }}"})
    with pytest.raises(RenderError, match="A"):
        compiled.render({})
    assert compiled.render({"A": "x" * 600_000})["text"] == "Hi " + "x" * 600_000
    with pytest.raises(RenderError):
        compiled.render({"A": "x" * 1_100_000})


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(_piece(), max_size=8),
    values=st.dictionaries(st.sampled_from(NAMES), VALUE, max_size=4),
)
def test_fast_path_and_liquid_agree_on_json_parts(pieces: list[str], values: dict[str, Any]) -> None:
    # A JSON part escapes values and fallbacks as JSON string content on both paths.
    source = "".join(pieces)
    try:
        compiled = compile_template({"text": source}, json_parts=frozenset({"text"}))
    except TemplateSyntaxError:
        assume(False)
        return
    template = compiled.parts.get("text")
    if template is None:
        return
    data = {k: v for k, v in values.items() if v is not None}
    expected = _liquid(template, data)
    plan = compiled.plans["text"]
    assert plan.json
    fast = render_plan(plan, data)
    assert fast is None or fast == expected
