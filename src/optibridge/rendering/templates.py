"""Compile once, render many: sandboxed Liquid with clear errors and declared attributes.

A template is a set of parts (subject, body, text body, push title, ...) that share one set of
variables. Compiling finds the customer attributes a template needs (its free variables minus the
built-ins we supply), so ingest can ask Optimove for exactly those. Rendering never touches Python
objects beyond the dict it is given (python-liquid does not expose attributes or methods), and
resource limits stop runaway loops and outputs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from liquid import Environment, StrictDefaultUndefined
from liquid.exceptions import LiquidError

from optibridge.rendering.fastpath import Plan, plan_of, render_plan
from optibridge.rendering.optimove_tags import to_liquid

# Variables the service supplies itself; every other free variable is a customer attribute.
BUILTIN_VARIABLES = frozenset(
    {
        "customer_id",
        "campaign_id",
        "template_id",
        "channel_id",
        "message_id",
        "tenant_id",
        "unsubscribe_url",
        "scheduled_time",
        "now",
    }
)


class _SandboxEnv(Environment):
    """Liquid with bounds, so one template cannot stall a worker or exhaust its memory."""

    loop_iteration_limit = 10_000
    output_stream_limit = 1_000_000
    local_namespace_limit = 100_000
    context_depth_limit = 30


_HTML_ENV = _SandboxEnv(undefined=StrictDefaultUndefined, autoescape=True)
_TEXT_ENV = _SandboxEnv(undefined=StrictDefaultUndefined, autoescape=False)


class TemplateSyntaxError(ValueError):
    """A template part does not parse; `part`, `line` and `reason` say where and why."""

    def __init__(self, part: str, line: int | None, reason: str) -> None:
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {reason}")
        self.part = part
        self.line = line
        self.reason = reason


class RenderError(ValueError):
    """Rendering one message failed (missing attribute, limit hit); the reason is for the record."""


def _line_of(exc: LiquidError, source: str) -> int | None:
    token = getattr(exc, "token", None)
    index = getattr(token, "start_index", None)
    if isinstance(index, int):
        return source.count("\n", 0, index) + 1
    return None


def _reason(exc: LiquidError) -> str:
    # str(exc) carries a multi-line source excerpt; its first line is the message.
    return (exc.args[0] if exc.args else str(exc)).splitlines()[0]


@dataclass(frozen=True)
class CompiledTemplate:
    parts: Mapping[str, Any]  # part name -> liquid BoundTemplate
    attributes: tuple[str, ...]  # customer attributes used, in first-seen order
    defaults: Mapping[str, str] = field(default_factory=dict)
    plans: Mapping[str, Plan] = field(default_factory=dict)  # parts simple enough for fastpath

    def render(self, variables: Mapping[str, Any]) -> dict[str, str]:
        """Render every part; attributes missing from `variables` take the template's defaults."""
        data = {**self.defaults, **{k: v for k, v in variables.items() if v is not None}}
        out: dict[str, str] = {}
        for name, template in self.parts.items():
            plan = self.plans.get(name)
            if plan is not None and (text := render_plan(plan, data)) is not None:
                out[name] = text
                continue
            try:
                out[name] = template.render(**data)
            except LiquidError as exc:
                raise RenderError(f"{name}: {_reason(exc)}") from None
        return out


def compile_template(
    parts: Mapping[str, str | None],
    *,
    html_parts: frozenset[str] = frozenset({"html", "body_html"}),
    defaults: Mapping[str, str] | None = None,
) -> CompiledTemplate:
    """Parse every non-empty part; TemplateSyntaxError on the first that does not parse.

    Parts named in `html_parts` escape variable values as HTML (an attribute value can never inject
    markup into an email); the others render text as is.
    """
    compiled: dict[str, Any] = {}
    plans: dict[str, Plan] = {}
    attributes: dict[str, None] = {}
    for name, source in parts.items():
        if not source:
            continue
        try:
            liquid_source = to_liquid(source)
        except ValueError as exc:
            raise TemplateSyntaxError(name, None, str(exc)) from None
        env = _HTML_ENV if name in html_parts else _TEXT_ENV
        try:
            template = env.from_string(liquid_source)
            variables = template.global_variables()
        except LiquidError as exc:
            raise TemplateSyntaxError(name, _line_of(exc, liquid_source), _reason(exc)) from None
        compiled[name] = template
        if (plan := plan_of(template)) is not None:
            plans[name] = plan
        for var in variables:
            if var not in BUILTIN_VARIABLES:
                attributes.setdefault(var, None)
    return CompiledTemplate(
        parts=compiled, attributes=tuple(attributes), defaults=dict(defaults or {}), plans=plans
    )


class TemplateCache:
    """Compiled templates by (tenant, channel, template id, version), least recently used out."""

    def __init__(self, capacity: int = 2048) -> None:
        self._items: OrderedDict[tuple[Any, ...], CompiledTemplate] = OrderedDict()
        self._capacity = capacity
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> CompiledTemplate | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: tuple[Any, ...], template: CompiledTemplate) -> None:
        self._items[key] = template
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
