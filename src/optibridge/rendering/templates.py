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

from optibridge.rendering import jsonbody, limits
from optibridge.rendering.errors import (
    LIMITS_EXCEEDED,
    RenderError,
    RenderLimitError,
    TemplateRefusedError,
    TemplateSyntaxError,
)
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
    """Liquid with bounds, so one template cannot stall a worker or exhaust its memory (limits.py)."""

    loop_iteration_limit = limits.LOOP_ITERATION_LIMIT
    output_stream_limit = limits.OUTPUT_STREAM_LIMIT
    local_namespace_limit = limits.LOCAL_NAMESPACE_LIMIT
    context_depth_limit = limits.CONTEXT_DEPTH_LIMIT
    template_class = limits.BoundedTemplate

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(undefined=StrictDefaultUndefined, autoescape=autoescape)
        limits.guard_filters(self.filters)


class _JsonEnv(_SandboxEnv):
    """Every output JSON-string-escaped; `| json` for a whole JSON value (jsonbody.py)."""

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        self.add_tag(jsonbody.JsonOutput)
        self.add_tag(jsonbody.JsonEcho)
        self.add_filter("json", jsonbody.json_filter)


_HTML_ENV = _SandboxEnv(autoescape=True)
_TEXT_ENV = _SandboxEnv(autoescape=False)
_JSON_ENV = _JsonEnv(autoescape=False)


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
    json_parts: frozenset[str] = frozenset()  # parts that render a JSON document
    problems: tuple[tuple[str, str], ...] = ()  # (part, why) found when parsing: refused at save

    def render(
        self, variables: Mapping[str, Any], *, timeout_s: float = limits.DEFAULT_RENDER_TIMEOUT_S
    ) -> dict[str, str]:
        """Render every part; attributes missing from `variables` take the template's defaults.

        RenderError on a missing attribute or a JSON part that does not parse; RenderLimitError
        (a RenderError) when the render needs more than the limits or `timeout_s` allow.
        """
        data = {**self.defaults, **{k: v for k, v in variables.items() if v is not None}}
        out: dict[str, str] = {}
        allowance: limits.Budget | None = None  # one for all parts, made when one needs Liquid
        for name, template in self.parts.items():
            plan = self.plans.get(name)
            if plan is not None and (text := render_plan(plan, data)) is not None:
                out[name] = text
            else:
                allowance = allowance or limits.start(timeout_s)
                with limits.using(allowance):
                    try:
                        out[name] = template.render(**data)
                    except LiquidError as exc:
                        detail = limits.limit_detail(exc)
                        if detail is not None:
                            raise RenderLimitError(detail, part=name, timed_out=allowance.timed_out) from None
                        raise RenderError(f"{name}: {_reason(exc)}") from None
            if name in self.json_parts:
                _, why = jsonbody.parse_document(out[name])
                if why is not None:
                    raise RenderError(f"{name}: the rendered JSON body {why}")
        return out


def compile_template(
    parts: Mapping[str, str | None],
    *,
    html_parts: frozenset[str] = frozenset({"html", "body_html"}),
    json_parts: frozenset[str] = frozenset(),
    defaults: Mapping[str, str] | None = None,
) -> CompiledTemplate:
    """Parse every non-empty part; TemplateSyntaxError on the first that does not parse.

    Parts named in `html_parts` escape variable values as HTML (an attribute value can never inject
    markup into an email); parts in `json_parts` render a JSON document, every value JSON-escaped
    (jsonbody.py); the others render text as is. Range literals over the limit do not stop the
    compile (a stored template must still compile at send, to fail only its own messages); they
    are listed in `problems`, which `check_limits` refuses at save.
    """
    compiled: dict[str, Any] = {}
    plans: dict[str, Plan] = {}
    attributes: dict[str, None] = {}
    problems: list[tuple[str, str]] = []
    for name, source in parts.items():
        if not source:
            continue
        try:
            liquid_source = to_liquid(source)
        except ValueError as exc:
            raise TemplateSyntaxError(name, None, str(exc)) from None
        env = _JSON_ENV if name in json_parts else _HTML_ENV if name in html_parts else _TEXT_ENV
        if (tags := limits.count_tags(liquid_source)) > limits.MAX_TAGS:
            # Refused before parsing: the parse itself is what would burn the CPU.
            raise TemplateSyntaxError(
                name, None, f"{LIMITS_EXCEEDED} ({tags} tags; at most {limits.MAX_TAGS})"
            )
        try:
            template = env.from_string(liquid_source)
            variables = template.global_variables()
            problems += [(name, why) for why in limits.bound_ranges(template)]
        except LiquidError as exc:
            raise TemplateSyntaxError(name, _line_of(exc, liquid_source), _reason(exc)) from None
        compiled[name] = template
        if (plan := plan_of(template)) is not None:
            plans[name] = plan
        for var in variables:
            if var not in BUILTIN_VARIABLES:
                attributes.setdefault(var, None)
    return CompiledTemplate(
        parts=compiled,
        attributes=tuple(attributes),
        defaults=dict(defaults or {}),
        plans=plans,
        json_parts=frozenset(json_parts) & frozenset(compiled),
        problems=tuple(problems),
    )


def sample_variables(template: CompiledTemplate, value: str) -> dict[str, Any]:
    """Every attribute and built-in set to `value` (ids to plausible ones): a trial render's data."""
    data: dict[str, Any] = dict.fromkeys((*BUILTIN_VARIABLES, *template.attributes), value)
    data |= {"campaign_id": 1, "template_id": 1, "channel_id": 1}
    return data


def check_limits(template: CompiledTemplate, *, timeout_s: float = limits.DEFAULT_RENDER_TIMEOUT_S) -> None:
    """The save-time check: TemplateRefusedError if the template exceeds the limits or, for a JSON
    part, a value could change its structure.

    Static problems first (a range literal over the limit), then a trial render with sample values
    under the deadline. A trial that fails for another reason (a filter that needs a number) is not
    a refusal: real data may well render.
    """
    if template.problems:
        part, why = template.problems[0]
        raise TemplateRefusedError(part, f"{LIMITS_EXCEEDED} ({why})")
    renders: dict[str, dict[str, str]] = {}
    for label, value in (("plain", jsonbody.PLAIN_VALUE), ("hostile", jsonbody.HOSTILE_VALUE)):
        if label == "hostile" and not template.json_parts:
            break
        try:
            renders[label] = template.render(sample_variables(template, value), timeout_s=timeout_s)
        except RenderLimitError as exc:
            raise TemplateRefusedError(exc.part or "template", f"{LIMITS_EXCEEDED} ({exc.detail})") from None
        except RenderError as exc:
            part = str(exc).partition(":")[0]
            if part in template.json_parts and "JSON body" in str(exc):
                reason = str(exc).partition(": ")[2]
                raise TemplateRefusedError(part, f"{reason}; {jsonbody.HINT}") from None
            return
    for part in sorted(template.json_parts):
        unsafe = jsonbody.compare_documents(renders["plain"][part], renders["hostile"][part])
        if unsafe is not None:
            raise TemplateRefusedError(part, unsafe)


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
