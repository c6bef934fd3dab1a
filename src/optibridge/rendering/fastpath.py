"""Render the commonest templates without the Liquid interpreter, to the same bytes.

Most message templates are text with plain substitutions: `{{ FirstName }}` and Optimove's
`[%FirstName:fallback%]` (which becomes `{{ FirstName | default: "fallback" }}`). For those,
Liquid's per-render set-up (a render context, a chain of namespaces, an output buffer, a node walk)
costs more than the substitution itself: it was the largest share of CPU in rendering an SMS.
`plan_of` recognizes such a template from its parsed nodes, once, at compile time; `render_plan`
then joins strings. Anything it is not sure of - a value that is not a string, a missing variable,
an output over the size limit - returns None and the caller renders with Liquid, so errors and
every edge case stay exactly Liquid's. tests/unit/rendering/test_rendering_fastpath.py checks the
two agree on generated templates and values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liquid.builtin.content import ContentNode
from liquid.builtin.expressions.arguments import PositionalArgument
from liquid.builtin.expressions.filtered import FilteredExpression
from liquid.builtin.expressions.path import Path
from liquid.builtin.expressions.primitive import StringLiteral
from liquid.builtin.output import OutputNode
from liquid.token import TOKEN_OUTPUT
from markupsafe import escape

from optibridge.rendering.jsonbody import JsonOutput, JsonOutputNode, escape_json_text


@dataclass(frozen=True, slots=True)
class Slot:
    """One `{{ name }}` or `{{ name | default: "literal" }}`."""

    name: str
    fallback: str | None  # the default filter's literal; None: no default filter


Piece = str | Slot


@dataclass(frozen=True, slots=True)
class Plan:
    pieces: tuple[Piece, ...]
    autoescape: bool
    json: bool  # a JSON part: values (and fallbacks, as Liquid does there) JSON-string-escaped
    limit: int  # the environment's output limit: above it, Liquid must raise its own error


def _slot(node: OutputNode) -> Slot | None:
    expression = node.expression
    if type(expression) is not FilteredExpression:  # not a subclass (e.g. inline if/else)
        return None
    left = expression.left
    if type(left) is not Path or len(left.path) != 1 or not isinstance(left.path[0], str):
        return None
    filters = expression.filters or []
    if not filters:
        return Slot(left.path[0], None)
    if len(filters) != 1 or filters[0].name != "default" or len(filters[0].args) != 1:
        return None
    argument = filters[0].args[0]
    if type(argument) is not PositionalArgument or type(argument.value) is not StringLiteral:
        return None
    return Slot(left.path[0], argument.value.value)


def plan_of(template: Any) -> Plan | None:
    """A plan for a parsed Liquid template made only of text and simple substitutions, else None."""
    pieces: list[Piece] = []
    for node in template.nodes:
        if type(node) is ContentNode:
            pieces.append(node.text)
        elif type(node) is OutputNode or type(node) is JsonOutputNode:
            slot = _slot(node)
            if slot is None:
                return None
            pieces.append(slot)
        else:
            return None
    env = template.env
    json_part = isinstance(env.tags.get(TOKEN_OUTPUT), JsonOutput)  # the JSON environment
    return Plan(tuple(pieces), bool(env.autoescape), json_part, int(env.output_stream_limit or 0))


def render_plan(plan: Plan, data: Mapping[str, Any]) -> str | None:
    """The rendered text, or None where only Liquid can say (non-string value, missing, too long)."""
    out: list[str] = []
    for piece in plan.pieces:
        if type(piece) is str:
            out.append(piece)
            continue
        assert isinstance(piece, Slot)
        value = data.get(piece.name)
        if type(value) is str and (value or piece.fallback is None):
            if plan.json:
                out.append(escape_json_text(value))
            else:
                out.append(str(escape(value)) if plan.autoescape else value)
        elif piece.fallback is not None and (value is None or value == "" or value is False):
            # A template literal: Liquid treats it as safe markup, but a JSON part escapes it too.
            out.append(escape_json_text(piece.fallback) if plan.json else piece.fallback)
        else:
            return None
    text = "".join(out)
    if plan.limit and len(text) >= plan.limit // 2:  # near the limit, Liquid's own accounting decides
        return None
    return text
