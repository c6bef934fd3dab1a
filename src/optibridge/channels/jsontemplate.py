"""JSON request bodies from a template with {{placeholders}}, rendered with JSON escaping.

The template is parsed as JSON once, when the provider is built, and re-serialised canonically;
placeholders can therefore only sit inside JSON strings (keys or values), and every value is
inserted JSON-escaped. No recipient or body, whatever its quotes, backslashes or control
characters, can change the document's structure. All values render as strings.

    {"to": "{{to}}", "text": "{{body}}", "ref": "{{message_id}}", "meta": {"c": "{{data.cohort}}"}}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from optibridge.channels.base import OutboundMessage

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)?)\s*\}\}")

Getter = Callable[[OutboundMessage, str], str]

FIELDS: Mapping[str, Getter] = {
    "to": lambda m, cb: m.to,
    "body": lambda m, cb: m.body,
    "subject": lambda m, cb: m.subject or "",
    "title": lambda m, cb: m.subject or "",
    "message_id": lambda m, cb: m.message_id,
    "tenant_id": lambda m, cb: m.tenant_id,
    "campaign_id": lambda m, cb: str(m.campaign_id),
    "customer_id": lambda m, cb: m.customer_id,
    "template_id": lambda m, cb: str(m.template_id),
    "app_id": lambda m, cb: m.app_id or "",
    "from": lambda m, cb: m.from_address or "",
    "callback_url": lambda m, cb: cb + m.message_id if cb else "",
}


def _data_getter(key: str) -> Getter:
    return lambda m, cb: m.data.get(key, "")


def _escape(value: str) -> str:
    # json.dumps of a str is the C encoder; stripping the quotes leaves the escaped content.
    return json.dumps(value)[1:-1]


class JsonTemplate:
    """A compiled body template: literal chunks alternating with field getters."""

    __slots__ = ("_getters", "_literals", "names")

    def __init__(self, source: str) -> None:
        try:
            document = json.loads(source)
        except ValueError as exc:
            raise ValueError(f"body_template is not valid JSON: {exc}") from None
        canonical = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        literals: list[str] = []
        getters: list[Getter] = []
        names: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(canonical):
            name = match.group(1)
            if name.startswith("data."):
                getter = _data_getter(name[5:])
            elif name in FIELDS:
                getter = FIELDS[name]
            else:
                known = ", ".join([*FIELDS, "data.KEY"])
                raise ValueError(f"unknown placeholder {{{{{name}}}}} in body_template (known: {known})")
            literals.append(canonical[position : match.start()])
            getters.append(getter)
            names.append(name)
            position = match.end()
        literals.append(canonical[position:])
        self._literals = tuple(literals)
        self._getters = tuple(getters)
        self.names = tuple(names)

    def render(self, message: OutboundMessage, callback_prefix: str = "") -> str:
        """The JSON text for one message; `callback_prefix` + message_id is {{callback_url}}."""
        literals = self._literals
        parts = [literals[0]]
        for index, getter in enumerate(self._getters):
            parts.append(_escape(getter(message, callback_prefix)))
            parts.append(literals[index + 1])
        return "".join(parts)


def extract_path(document: object, path: str) -> str | None:
    """The value at a dot path ("data.id", "messages.0.id") as a string, or None."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    if isinstance(node, str | int) and not isinstance(node, bool):
        return str(node)
    return None
