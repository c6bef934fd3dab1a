"""Liquid for JSON documents: every `{{ output }}` is JSON-string-escaped, so values are data.

A webhook's body is a Liquid template whose output is a JSON document. Splicing values as text let
an attribute `Bo", "role": "admin` add a key to a signed payload. In a JSON template every output
(`{{ x }}`, `{% echo x %}`) is written as the content of a JSON string - quotes, backslashes and
control characters escaped - so the author writes `"name": "{{ first_name }}"` and no value can
leave its string. `{{ x | json }}` writes a whole JSON value instead (a number stays a number, a
string gets its quotes), for places outside quotes: `"age": {{ age | json }}`.

Values are written as Liquid writes them (numbers as digits, true/false, nil as empty) inside the
string. Captured text is escaped again when it is output: avoid `capture` in JSON templates.

`check_document` is the save-time check: the template is rendered with plain and with hostile
sample values, both must parse, and the hostile one must have exactly the keys of the plain one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from liquid import RenderContext
from liquid.builtin.output import Output, OutputNode
from liquid.builtin.tags.echo_tag import EchoNode, EchoTag
from liquid.exceptions import FilterError
from liquid.stringify import to_liquid_string


class JsonLiteral(str):
    """A complete JSON value made by the `json` filter: written as is, not escaped again."""

    __slots__ = ()


def escape_json_text(text: str) -> str:
    """`text` as the content of a JSON string (no quotes); non-ASCII as \\u escapes, so a lone
    surrogate cannot make the body unencodable."""
    return json.dumps(text)[1:-1]


def json_output(value: object) -> str:
    if isinstance(value, JsonLiteral):
        return value
    return escape_json_text(to_liquid_string(value, autoescape=False))


def json_filter(value: object) -> JsonLiteral:
    """`{{ x | json }}`: the value as one JSON value (str quoted, numbers, true/false, nil -> null)."""
    if isinstance(value, str | int | float | bool) or value is None:
        try:
            return JsonLiteral(json.dumps(value, allow_nan=False))
        except ValueError:
            raise FilterError("json: NaN and infinity are not JSON", token=None) from None
    return JsonLiteral(json.dumps(to_liquid_string(value, autoescape=False)))


class JsonOutputNode(OutputNode):
    __slots__ = ()

    def render_to_output(self, context: RenderContext, buffer: TextIO) -> int:
        return buffer.write(json_output(self.expression.evaluate(context)))


class JsonEchoNode(EchoNode):
    __slots__ = ()

    def render_to_output(self, context: RenderContext, buffer: TextIO) -> int:
        return buffer.write(json_output(self.expression.evaluate(context)))


class JsonOutput(Output):
    node_class = JsonOutputNode


class JsonEcho(EchoTag):
    node_class = JsonEchoNode


# --- the save-time check ------------------------------------------------------------------------

# Hostile sample values: quotes, a backslash, control characters, markup, non-ASCII, Liquid syntax.
HOSTILE_VALUE = 'Bo", "role": "admin\\ \n\t\r </script> \u00e9\u2028\U0001f600 {{ x }} \x00'
PLAIN_VALUE = "sample"
HINT = "put every {{ }} inside a JSON string, or use {{ x | json }} outside one"


def key_paths(document: object, prefix: str = "") -> Iterator[str]:
    """Every key of a JSON document as a path (`a.b`, list items as `a[]`)."""
    if isinstance(document, dict):
        for key, value in document.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from key_paths(value, path)
    elif isinstance(document, list):
        for item in document:
            yield from key_paths(item, prefix + "[]")


def parse_document(text: str) -> tuple[Any, str | None]:
    """(document, None), or (None, why it does not parse)."""
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    except RecursionError:
        return None, "is nested too deeply"


def compare_documents(plain: str, hostile: str) -> str | None:
    """Why a JSON template is unsafe, from its renders with plain and hostile values; None: safe."""
    plain_doc, why = parse_document(plain)
    if why is not None:
        return f"the rendered body {why}"
    hostile_doc, why = parse_document(hostile)
    if why is not None:
        return f"with quotes or backslashes in a value, the rendered body {why}; {HINT}"
    extra = sorted(set(key_paths(hostile_doc)) - set(key_paths(plain_doc)))
    missing = sorted(set(key_paths(plain_doc)) - set(key_paths(hostile_doc)))
    if extra or missing:
        return (
            "a value changes the body's keys (extra: "
            f"{', '.join(extra[:5]) or '-'}; missing: {', '.join(missing[:5]) or '-'})"
        )
    return None
