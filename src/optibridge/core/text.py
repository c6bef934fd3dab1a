"""What characters customer data may hold: Optimove hands us whatever the client's CRM held, and
contacts files are whatever a spreadsheet wrote.

- In an attribute value, C0 controls other than TAB, LF and CR, DEL, C1 controls and lone UTF-16
  surrogates are stripped and the row is sent with the cleaned value: they render as nothing or as
  garbage, PostgreSQL stores no NUL, a surrogate cannot be encoded at all (it would fail the whole
  page), and a stray one in a first name must not cost the customer the message. TAB/LF/CR stay:
  multi-line values (postal addresses, SMS text) are legitimate.
- In the address (e-mail, phone number, push token, the one value a provider acts on), any control
  character, including TAB/LF/CR inside it (around it they are trimmed), a Unicode line or
  paragraph separator, a bidi override, or a lone surrogate refuses the row. Guessing what was
  meant there risks header injection or sending to someone else.
- In the customer id, NUL or a lone surrogate refuses the row: the id must round-trip to Optimove
  unchanged, so it is never edited.
"""

from __future__ import annotations

import re

ATTR_STRIP = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
ADDRESS_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
ID_BAD = re.compile("[\x00\ud800-\udfff]")


def clean_attribute_values(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """`values` with stripped control characters (see above), or None when none needed stripping."""
    if " ".join(values).isprintable() or not any(ATTR_STRIP.search(v) for v in values):
        return None
    return tuple(ATTR_STRIP.sub("", v) for v in values)


def address_refused(address: str) -> bool:
    """Whether an address (already trimmed) holds a character that refuses its row (see above)."""
    return not address.isprintable() and ADDRESS_BAD.search(address) is not None


def id_refused(customer_id: str) -> bool:
    return ID_BAD.search(customer_id) is not None
