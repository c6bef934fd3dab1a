"""Deterministic, lazy campaign audiences.

A campaign of N customers is never stored: customer i (0-based) is a pure function of (seed, i),
so page k is computed from its indices alone and memory does not grow with N. Pages are built
as JSON text directly (per-campaign fragments prepared once, columns built with list
comprehensions), because the emulator must outrun the client in the ingest benchmark.
"""

from __future__ import annotations

import json
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from math import gcd
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, field_validator

_GOLDEN: Final = 0x9E3779B97F4A7C15  # Fibonacci hashing: consecutive i spread over 64 bits
_MASK64: Final = (1 << 64) - 1
_WEIGHT_SCALE: Final = 10_000

FIRST_NAMES: Final = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah", "Sophia", "Lucas",
    "Mia", "Levi", "Isla", "Mateo", "Chloe", "Hugo", "Lea", "Yusuf", "Hana", "Kenji",
)  # fmt: skip
LAST_NAMES: Final = (
    "Smith", "Johnson", "Garcia", "Martin", "Rossi", "Muller", "Cohen", "Tanaka", "Silva",
    "Novak", "Dubois", "Kowalski", "Jensen", "Okafor", "Singh", "Lopez",
)  # fmt: skip
TIME_ZONES: Final = (
    "UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
    "Asia/Jerusalem", "Asia/Tokyo", "Australia/Sydney",
)  # fmt: skip
COUNTRIES: Final = ("US", "GB", "DE", "FR", "IL", "JP", "AU", "BR", "IN", "ES")
LANGUAGES: Final = ("en", "de", "fr", "he", "ja", "pt", "es")

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
TimeStyle = Literal["seconds", "minutes", "iso"]


def format_time(canonical: str, style: TimeStyle = "seconds") -> str:
    """A canonical "YYYY-MM-DD HH:MM:SS" (UTC) in one of the shapes Optimove is seen to use."""
    if style == "minutes":
        return canonical[:16]  # "2022-07-19 08:54" [GH-eng-js]
    if style == "iso":
        return canonical.replace(" ", "T", 1) + "Z"  # engagement metadata [GH-eng-js npm page]
    return canonical


def _escape(text: str) -> str:
    """The text as it appears inside a JSON string literal."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


class WeightedTemplate(BaseModel):
    template_id: int
    weight: float = Field(1.0, gt=0)


class WeightedTime(BaseModel):
    scheduled_time: str = Field(description='UTC, "YYYY-MM-DD HH:MM:SS"')
    weight: float = Field(1.0, gt=0)

    @field_validator("scheduled_time")
    @classmethod
    def _well_formed(cls, value: str) -> str:
        return datetime.strptime(value, TIME_FORMAT).strftime(TIME_FORMAT)


class CampaignSpec(BaseModel):
    """What the control API accepts to create a campaign."""

    campaign_id: int | None = Field(None, description="default: the tenant's next free ID")
    channel_ids: list[int] = Field(default_factory=lambda: [504], min_length=1)
    customer_count: int = Field(100, ge=0, le=1_000_000_000)
    seed: int | None = Field(None, description="default: derived from emulator seed + ID")
    templates: list[WeightedTemplate] | None = Field(
        None,
        min_length=1,
        description="default: the templates registered for the campaign's channels "
        "(AddChannelTemplates), or template 1 if none are and strict_templates is off",
    )
    scheduled_times: list[WeightedTime] | None = Field(
        None, description="default: the next full hour after creation"
    )
    customer_id_prefix: str = Field("C", max_length=32)
    attribute_values: dict[str, list[str]] = Field(
        default_factory=dict,
        description="value pools for attribute names; each customer gets one value per name",
    )
    attribute_format: Literal["array", "string"] = Field(
        "array",
        description='"array": CustomerAttributes list; "string": legacy CustomerAttribute '
        "joined with CustomerAttributesDelimiter",
    )
    duration_days: int = 7
    promo_code: str | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="extra or overriding GetCampaignDetails fields"
    )


def _cumulative(weights: Sequence[float]) -> list[int]:
    total = sum(weights)
    return list(accumulate(max(1, round(w / total * _WEIGHT_SCALE)) for w in weights))


class GeneratedCampaign:
    """The audience of one campaign: N customers computed on demand from a seed."""

    def __init__(self, spec: CampaignSpec, campaign_id: int, seed: int, now: datetime) -> None:
        self.spec = spec
        self.campaign_id = campaign_id
        self.count = spec.customer_count
        self.seed = seed
        self.prefix = spec.customer_id_prefix
        self._prefix_json = _escape(spec.customer_id_prefix)
        self._salt = (seed * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _MASK64
        times = spec.scheduled_times or [WeightedTime(scheduled_time=_next_hour(now).strftime(TIME_FORMAT))]
        templates = spec.templates or [WeightedTemplate(template_id=1)]
        self.template_ids = [t.template_id for t in templates]
        self.scheduled_times = [t.scheduled_time for t in times]
        self._tcum = _cumulative([t.weight for t in templates])
        self._scum = _cumulative([t.weight for t in times])
        self._fragments_by_style: dict[str, list[str]] = {}
        self._fragments = self._fragments_for("seconds")
        self._pools = {k.lower(): [_escape(v) for v in vs] for k, vs in spec.attribute_values.items()}
        self.canceled_count = 0
        self._perm_a = 1
        self._perm_b = 0

    def _fragments_for(self, style: TimeStyle) -> list[str]:
        fragments = self._fragments_by_style.get(style)
        if fragments is None:
            fragments = self._fragments_by_style[style] = [
                f',"TemplateID":{tid},"ScheduledTime":"{format_time(when, style)}"'
                for tid in self.template_ids
                for when in self.scheduled_times
            ]
        return fragments

    # -- one customer (the reference definition; pages must agree with it) ------------------

    def _hash(self, index: int) -> int:
        return (((index + self._salt) * _GOLDEN) & _MASK64) >> 24

    def customer_id(self, index: int) -> str:
        return f"{self.prefix}{index + 1}"

    def _combo(self, h: int) -> int:
        tpl = bisect_right(self._tcum, h % self._tcum[-1])
        when = bisect_right(self._scum, (h >> 17) % self._scum[-1])
        return tpl * len(self.scheduled_times) + when

    def template_id(self, index: int) -> int:
        return self.template_ids[self._combo(self._hash(index)) // len(self.scheduled_times)]

    def scheduled_time(self, index: int) -> str:
        return self.scheduled_times[self._combo(self._hash(index)) % len(self.scheduled_times)]

    def row(self, index: int, attribute_names: Sequence[str] = ()) -> dict[str, Any]:
        """Customer `index` as a GetCustomerSendDetailsByChannel row (array form)."""
        page = json.loads(self.page_json(index, 1, attribute_names))
        row: dict[str, Any] = page[0]
        return row

    # -- pages ----------------------------------------------------------------------------

    def _column(self, name: str, idx: range, hashes: list[int]) -> list[str]:
        """The JSON-escaped values of attribute `name` for customers `idx`.

        A value depends only on (campaign seed, customer, attribute name): never on which other
        attributes are asked for, nor in what order. Each name remixes the customer's hash with
        its own key, so two attributes drawn from pools still look independent.
        """
        key = name.lower().replace("_", "")
        name_key = zlib.crc32(name.lower().encode()) * 0x2545F4914F6CDD1D & _MASK64

        def picks(n: int) -> list[int]:
            return [((((h ^ name_key) * _GOLDEN) & _MASK64) >> 32) % n for h in hashes]

        pool = self._pools.get(name.lower())
        if pool is not None:
            n = len(pool)
            return [pool[k] for k in picks(n)] if n else ["" for _ in idx]
        p = self._prefix_json.lower()
        if key in ("email", "emailaddress"):
            return [f"{p}{i + 1}@example.com" for i in idx]
        if key in ("mobilephone", "phone", "mobile", "mobilenumber", "phonenumber", "sms"):
            return [f"+1{2_000_000_000 + i % 8_000_000_000}" for i in idx]
        choices: tuple[str, ...] | None = {
            "firstname": FIRST_NAMES,
            "lastname": LAST_NAMES,
            "timezone": TIME_ZONES,
            "country": COUNTRIES,
            "language": LANGUAGES,
        }.get(key)
        if choices is not None:
            return [choices[k] for k in picks(len(choices))]
        if key == "alias":
            return [f"{p}{i + 1}" for i in idx]
        label = _escape(name.lower())
        return [f"{label}-{i + 1}" for i in idx]

    def page_json(
        self,
        skip: int,
        top: int,
        attribute_names: Sequence[str] = (),
        delimiter: str = ",",
        time_style: TimeStyle = "seconds",
    ) -> str:
        """Customers [skip, skip+top) as the JSON text of a GetCustomerSendDetailsByChannel page."""
        start = max(0, skip)
        stop = min(self.count, start + max(0, top))
        if start >= stop:
            return "[]"
        idx = range(start, stop)
        salt = self._salt
        hashes = [(((i + salt) * _GOLDEN) & _MASK64) >> 24 for i in idx]
        fragments = self._fragments if time_style == "seconds" else self._fragments_for(time_style)
        if len(fragments) == 1:
            frags: list[str] = [fragments[0]] * len(idx)
        else:
            tcum, scum = self._tcum, self._scum
            tt, st, ns = tcum[-1], scum[-1], len(self.scheduled_times)
            frags = [
                fragments[bisect_right(tcum, h % tt) * ns + bisect_right(scum, (h >> 17) % st)]
                for h in hashes
            ]
        if attribute_names:
            cols = [self._column(n, idx, hashes) for n in attribute_names]
            if self.spec.attribute_format == "array":
                tails = [',"CustomerAttributes":["' + '","'.join(v) + '"]}' for v in zip(*cols, strict=True)]
            else:
                sep = _escape(delimiter)
                tails = [',"CustomerAttribute":"' + sep.join(v) + '"}' for v in zip(*cols, strict=True)]
        else:
            tails = ["}"] * len(idx)
        p = self._prefix_json
        rows = [f'{{"CustomerID":"{p}{i + 1}"{f}{t}' for i, f, t in zip(idx, frags, tails, strict=True)]
        return "[" + ",".join(rows) + "]"

    # -- cancellation -----------------------------------------------------------------------

    def cancel(self, fraction: float) -> int:
        """Cancel round(fraction * N) customers, picked by a seeded permutation; return count.

        The permutation i = (a*j + b) mod N is a bijection when gcd(a, N) = 1, so the j-th
        canceled customer is computed directly and canceled lists page without a scan.
        """
        n = self.count
        self.canceled_count = min(n, max(0, round(fraction * n)))
        if n > 1:
            a = (self._salt % n) | 1
            for _ in range(n):  # bounded: a coprime is never far (density 6/pi^2)
                if gcd(a, n) == 1:
                    break
                a = a + 2 if a + 2 < n else 1
            self._perm_a = a
            self._perm_b = (self._salt >> 32) % n
        return self.canceled_count

    def canceled_index(self, j: int) -> int:
        return (self._perm_a * j + self._perm_b) % self.count if self.count else 0

    def is_canceled(self, index: int) -> bool:
        if self.canceled_count == 0 or not 0 <= index < self.count:
            return False
        if self.count == 1:
            return True
        j = ((index - self._perm_b) * pow(self._perm_a, -1, self.count)) % self.count
        return j < self.canceled_count

    def canceled_customers(self, skip: int, top: int) -> list[dict[str, Any]]:
        stop = min(self.canceled_count, max(0, skip) + max(0, top))
        promo = self.spec.promo_code
        out: list[dict[str, Any]] = []
        for j in range(max(0, skip), stop):
            row: dict[str, Any] = {
                "CustomerID": self.customer_id(self.canceled_index(j)),
                "ActionID": "4",
            }
            if promo is not None:
                row["PromoCode"] = promo
            out.append(row)
        return out


def _next_hour(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
