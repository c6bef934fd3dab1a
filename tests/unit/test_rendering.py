"""Templates: Optimove tags, attribute discovery, escaping, sandbox limits, clear errors."""

from __future__ import annotations

import pytest

from optibridge.rendering import (
    CompiledTemplate,
    RenderError,
    TemplateCache,
    TemplateSyntaxError,
    compile_template,
)
from optibridge.rendering.optimove_tags import tag_names, to_liquid


def test_optimove_tags_become_liquid_with_optional_fallback() -> None:
    assert to_liquid("Hi [%FIRST_NAME%]!") == "Hi {{ FIRST_NAME }}!"
    assert to_liquid('Hi [%FIRST_NAME:dear "you"%]') == "Hi {{ FIRST_NAME | default: 'dear \"you\"' }}"
    assert to_liquid("Hi [%FIRST_NAME:it's\\%]") == 'Hi {{ FIRST_NAME | default: "it\'s\\" }}'
    with pytest.raises(ValueError, match="both quote kinds"):
        to_liquid("""[%A:it's "x"%]""")
    assert compile_template({"text": 'Hi [%A:dear "you"%] [%B:a\\b%]'}).render({})["text"] == (
        'Hi dear "you" a\\b'
    )
    with pytest.raises(TemplateSyntaxError, match="both quote kinds"):
        compile_template({"text": """[%A:it's "x"%]"""})
    assert to_liquid("50[%] off [% not a tag %]") == "50[%] off [% not a tag %]"
    assert tag_names("[%A%] and [% B:x %]") == ["A", "B"]


def test_attributes_are_the_free_variables_minus_builtins_in_order() -> None:
    t = compile_template(
        {
            "subject": "Hello [%FirstName%]",
            "html": "{{ Balance }} {{ FirstName }} {{ unsubscribe_url }} {% assign x = 1 %}{{ x }}",
        }
    )
    assert t.attributes == ("FirstName", "Balance")


def test_render_uses_values_then_template_defaults_then_filter_defaults() -> None:
    t = compile_template(
        {"text": "{{ FirstName }} / {{ City | default: 'somewhere' }} / [%Tier:basic%]"},
        defaults={"FirstName": "friend"},
    )
    assert t.render({})["text"] == "friend / somewhere / basic"
    assert t.render({"FirstName": "Ann", "City": "Oslo", "Tier": "gold"})["text"] == "Ann / Oslo / gold"


def test_missing_attribute_without_default_is_a_render_error_naming_it() -> None:
    t = compile_template({"subject": "Hi {{ FirstName }}"})
    with pytest.raises(RenderError, match="subject: 'FirstName' is undefined"):
        t.render({"Other": "x"})


def test_none_values_count_as_missing() -> None:
    t = compile_template({"text": "{{ A | default: 'd' }}"})
    assert t.render({"A": None})["text"] == "d"


def test_html_parts_escape_values_text_parts_do_not() -> None:
    t = compile_template({"html": "<p>{{ Name }}</p>", "text": "{{ Name }}"})
    out = t.render({"Name": "<script>alert(1)</script>"})
    assert out["html"] == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert out["text"] == "<script>alert(1)</script>"


def test_syntax_error_names_part_line_and_reason() -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        compile_template({"subject": "fine", "html": "line 1\nline 2\n{% if x %}oops"})
    err = info.value
    assert (err.part, err.line) == ("html", 3)
    assert "if" in err.reason or "endif" in err.reason
    with pytest.raises(TemplateSyntaxError, match=r"text, line 1: .*"):
        compile_template({"text": "{{ a | }}"})


def test_templates_cannot_reach_python_internals() -> None:
    for expr in ("obj.__class__", "obj.__init__", "s.upper", "s.__len__"):
        t = compile_template({"text": "{{ " + expr + " }}"})
        with pytest.raises(RenderError, match="undefined"):
            t.render({"obj": object(), "s": "abc"})


def test_runaway_loops_hit_the_sandbox_limit() -> None:
    t = compile_template({"text": "{% for i in (1..100000000) %}x{% endfor %}"})
    with pytest.raises(RenderError, match="limit"):
        t.render({})


def test_cache_evicts_least_recently_used() -> None:
    cache = TemplateCache(capacity=2)
    a, b, c = (compile_template({"text": s}) for s in ("a", "b", "c"))
    cache.put(("t", 1, 1), a)
    cache.put(("t", 2, 1), b)
    assert cache.get(("t", 1, 1)) is a  # 1 is now the most recent
    cache.put(("t", 3, 1), c)
    assert cache.get(("t", 2, 1)) is None
    assert isinstance(cache.get(("t", 1, 1)), CompiledTemplate)
    assert (cache.hits, cache.misses, len(cache)) == (2, 1, 2)
