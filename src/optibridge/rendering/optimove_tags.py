"""Optimove personalization tags, rewritten into Liquid before parsing.

Marketers coming from Optimove write `[%FIRST_NAME%]`; we also accept a fallback after a colon,
`[%FIRST_NAME:Customer%]`, which becomes `{{ FIRST_NAME | default: "Customer" }}`. Anything else
between `[%` and `%]` is left alone, so the Liquid parser reports it where it stands.

Liquid string literals have no escapes: the fallback is quoted with whichever quote it does not
contain, and one that contains both kinds is refused (ValueError) rather than rendered wrongly.
"""

from __future__ import annotations

import re

# A tag name is what Optimove allows for attribute names: letters, digits, underscore.
_TAG = re.compile(r"\[%\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::([^%\]\r\n]*))?%\]")


def to_liquid(source: str) -> str:
    def replace(m: re.Match[str]) -> str:
        name, fallback = m.group(1), m.group(2)
        if fallback is None:
            return "{{ " + name + " }}"
        if '"' not in fallback:
            literal = f'"{fallback}"'
        elif "'" not in fallback:
            literal = f"'{fallback}'"
        else:
            raise ValueError(f"the fallback of [%{name}%] contains both quote kinds (\" and ')")
        return "{{ " + name + " | default: " + literal + " }}"

    return _TAG.sub(replace, source)


def tag_names(source: str) -> list[str]:
    return [m.group(1) for m in _TAG.finditer(source)]
