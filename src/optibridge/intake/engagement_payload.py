"""Event 14 (Optimove's Scheduled Campaign Integration flow), read without I/O.

Three things arrive: the webhook body (PascalCase in the nodejs SDK's README, camelCase in the .NET
one: keys are matched case-insensitively, extra keys ignored, `ServiceAccount` never kept), the
metadata JSON file, and Avro customer records. Each is turned into plain values here; the job
(optibridge.intake.engagement_tasks) does the reading and writing. docs/flows/event14.md says which
parts of the format are UNCONFIRMED and what we chose.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optibridge.intake.notifications import InvalidNotification, parse_optimove_time, whole_number
from optibridge.optimove import SendDetail

EVENT_TYPE = 14
MAX_ID = 2**63 - 1
MAX_FILES = 10_000  # Optimove's file size is 10K-100K rows: 10,000 files is a billion customers
MAX_TEMPLATE_ID = 2**64 - 1  # numeric(20, 0) holds it; Optimove's ids are 64-bit at most
# Our catalog's template ids are PostgreSQL integers: a larger TemplateID names none of our templates.
CATALOG_TEMPLATE_MAX = 2**31 - 1
DEFAULT_CUSTOMER_ID_FIELD = "CustomerID"
MAX_NOTES = 20


class InvalidEngagement(ValueError):
    """The webhook body or metadata cannot be used; the message says why (400 / ingest error)."""


@dataclass(frozen=True, slots=True)
class EngagementEvent:
    """What the webhook said. `decryption_key` is the raw AES key (decoded from base64)."""

    campaign_id: int
    engagement_id: int
    tenant_id: int | None
    channel_id: int | None
    bucket_name: str
    customers_folder: str
    metadata_path: str
    decryption_key: bytes | None
    timestamp: datetime | None
    problems: tuple[str, ...] = ()

    def stored_payload(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body as kept in the database: the fields we know, as sent, but never the key or the
        service account; extra fields are not kept. Text PostgreSQL cannot store (NUL, a lone
        surrogate) is replaced: a stray character must not turn an accepted engagement into a 500."""
        return {
            str(k): _storable(v)
            for k, v in body.items()
            if str(k).lower() in STORED_FIELDS
            and (isinstance(v, str | int | bool | None) or (isinstance(v, float) and math.isfinite(v)))
        }


# The webhook fields kept with the engagement (lower-cased); DecryptionKey and ServiceAccount never.
STORED_FIELDS = frozenset(
    {
        "eventtypeid", "timestamp", "campaignid", "engagementid", "tenantid", "bucketname",
        "customersfolderpath", "metadatafilepath", "channelid",
    }
)  # fmt: skip


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")[:1024]
    return value


def storable_json(value: Any, depth: int = 0) -> Any:
    """A JSON value PostgreSQL's jsonb takes: no NUL or lone surrogate in text, no NaN/Infinity;
    nesting past 32 levels is cut (the metadata file is flat)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if depth >= 32 and isinstance(value, dict | list):
        return None
    if isinstance(value, dict):
        return {storable_json(str(k)): storable_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(v, depth + 1) for v in value]
    return value


def _int(name: str, value: Any, *, maximum: int = MAX_ID) -> int:
    number = whole_number(value, maximum)
    if isinstance(number, str):
        raise InvalidEngagement(f"{name} {number}")
    return number


def _text(name: str, fields: Mapping[str, Any], *, required: bool = True, limit: int = 1024) -> str:
    value = fields.get(name.lower())
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidEngagement(f"{name} is missing")
        return ""
    if not isinstance(value, str):
        raise InvalidEngagement(f"{name} must be a string")
    if len(value) > limit or not value.isprintable():
        raise InvalidEngagement(f"{name} is longer than {limit} characters or holds control characters")
    return value


def decode_key(text: str) -> bytes:
    """A base64 AES-256 key (32 bytes), as GCS customer-supplied encryption keys are."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEngagement("DecryptionKey is not base64") from None
    if len(raw) != 32:
        raise InvalidEngagement(f"DecryptionKey must be a 256-bit key (got {len(raw) * 8} bits)")
    return raw


def key_required(bucket_name: str) -> bool:
    """Optimove's SDKs refuse an external bucket without a key [GH-eng-js, GH-eng-java]."""
    return "external" in bucket_name.lower()


def parse_event(body: Any) -> EngagementEvent:
    """Read an event-14 webhook body (either casing); raises InvalidEngagement with the reason."""
    if not isinstance(body, dict):
        raise InvalidEngagement("the body must be a JSON object")
    fields = {str(k).lower(): v for k, v in body.items()}
    if fields.get("eventtypeid") is not None and _int("EventTypeID", fields["eventtypeid"]) != EVENT_TYPE:
        raise InvalidEngagement(f"EventTypeID must be {EVENT_TYPE} on this endpoint")
    for name in ("CampaignID", "EngagementID"):
        if fields.get(name.lower()) is None:
            raise InvalidEngagement(f"{name} is missing")
    campaign_id = _int("CampaignID", fields["campaignid"])
    engagement_id = _int("EngagementID", fields["engagementid"])
    problems: list[str] = []
    optional: dict[str, int | None] = {}
    for name in ("TenantID", "ChannelID"):
        raw = fields.get(name.lower())
        optional[name] = None
        if raw is not None:
            try:
                optional[name] = _int(name, raw)
            except InvalidEngagement as exc:
                problems.append(f"{exc}; ignored")
    bucket = _text("BucketName", fields, limit=222)  # GCS bucket names are at most 222 characters
    folder = _text("CustomersFolderPath", fields).rstrip("/")
    metadata_path = _text("MetadataFilePath", fields)
    raw_key = _text("DecryptionKey", fields, required=False, limit=200)
    key = decode_key(raw_key) if raw_key else None
    if key is None and key_required(bucket):
        raise InvalidEngagement("DecryptionKey is missing (mandatory for an external bucket)")
    timestamp = None
    raw_time = fields.get("timestamp")
    if isinstance(raw_time, str) and raw_time.strip():
        try:
            timestamp = parse_optimove_time(raw_time)
        except InvalidNotification as exc:
            problems.append(f"TimeStamp: {exc}; stored as null")
    return EngagementEvent(
        campaign_id=campaign_id,
        engagement_id=engagement_id,
        tenant_id=optional["TenantID"],
        channel_id=optional["ChannelID"],
        bucket_name=bucket,
        customers_folder=folder,
        metadata_path=metadata_path,
        decryption_key=key,
        timestamp=timestamp,
        problems=tuple(problems),
    )


# --- the customer files ----------------------------------------------------------------------


def customers_file_name(folder: str, number: int) -> str:
    """`<folder>/customers_file<NNN>.deflate.avro`: 001..099 padded to 3 digits, none from 100 on."""
    if number < 1:
        raise ValueError("customer files are numbered from 1")
    return f"{folder.rstrip('/')}/customers_file{number:03d}.deflate.avro"


def customers_file_names(folder: str, count: int) -> list[str]:
    """Files 1..NumberOfFiles (the Java SDK's loop; the nodejs README's `< count` is off by one)."""
    return [customers_file_name(folder, n) for n in range(1, count + 1)]


# --- the metadata file -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngagementMetadata:
    template_id: int  # exact, whatever its size (parsed with Python ints, not floats)
    template_name: str | None
    scheduled_time: datetime
    duration_days: int | None
    promotions: tuple[str, ...]
    tags: tuple[str, ...]
    number_of_files: int
    number_of_customers: int | None
    campaign_id: int | None
    engagement_id: int | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _comma_list(name: str, value: Any) -> tuple[str, ...]:
    """ "promo1, promo2" -> ("promo1", "promo2"); a JSON list is taken as it is."""
    if value is None:
        return ()
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidEngagement(f"{name} must be a comma-separated string")
    out = [storable_json(str(v)).strip()[:200] for v in items if v is not None and str(v).strip()]
    return tuple(dict.fromkeys(out))  # repeated names once, in their order


def parse_metadata(data: bytes) -> EngagementMetadata:
    """The metadata JSON file (PascalCase in the SDKs; matched case-insensitively).

    Python's json keeps integers exact (a TemplateID above 2^53 survives); the SDK moved to
    json-bigint for exactly that reason."""
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidEngagement(f"metadata is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise InvalidEngagement("metadata must be a JSON object")
    fields = {str(k).lower(): v for k, v in raw.items()}
    if fields.get("templateid") is None:
        raise InvalidEngagement("metadata: TemplateID is missing")
    template_id = _int("TemplateID", fields["templateid"], maximum=MAX_TEMPLATE_ID)
    when = fields.get("scheduledtime")
    if not isinstance(when, str) or not when.strip():
        raise InvalidEngagement("metadata: ScheduledTime is missing")
    try:
        scheduled = parse_optimove_time(when)
    except InvalidNotification as exc:
        raise InvalidEngagement(f"metadata: ScheduledTime: {exc}") from None
    if fields.get("numberoffiles") is None:
        raise InvalidEngagement("metadata: NumberOfFiles is missing")
    files = _int("NumberOfFiles", fields["numberoffiles"], maximum=MAX_FILES)
    customers = None
    if fields.get("numberofcustomers") is not None:
        customers = int(fields["numberofcustomers"]) if str(fields["numberofcustomers"]).isdigit() else None
    duration = None
    if fields.get("duration") is not None:
        duration = _int("Duration", fields["duration"], maximum=366)
    name = fields.get("templatename")

    def optional_id(key: str) -> int | None:
        value = fields.get(key)
        try:
            return _int(key, value) if value is not None else None
        except InvalidEngagement:
            return None

    return EngagementMetadata(
        template_id=template_id,
        template_name=storable_json(str(name))[:500] if name is not None else None,
        scheduled_time=scheduled,
        duration_days=duration,
        promotions=_comma_list("Promotions", fields.get("promotions")),
        tags=_comma_list("Tags", fields.get("tags")),
        number_of_files=files,
        number_of_customers=customers,
        campaign_id=optional_id("campaignid"),
        engagement_id=optional_id("engagementid"),
        raw=storable_json(raw),
    )


# --- customer records ------------------------------------------------------------------------


def record_value(value: Any) -> str:
    """An Avro field as an attribute string, as the classic flow's attributes are strings."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass
class RecordReader:
    """Turns Avro records (dicts) into SendDetails for `ingest.build_rows`, with notes on bad ones.

    `attributes` are the names the ingest plan asks for, matched case-insensitively against the
    record's fields; a missing one is an empty string (as Optimove answers for an unset attribute).
    A record without a customer id cannot become a message (the id is half its key): it is skipped
    and counted. Counts of skipped records and an example are kept for the campaign's notes."""

    attributes: tuple[str, ...]
    template_id: int
    scheduled_time: datetime
    id_field: str = DEFAULT_CUSTOMER_ID_FIELD
    skipped: int = 0
    first_skip: str | None = None
    read: int = 0
    _lowered: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._lowered = tuple(a.lower() for a in self.attributes)

    def _skip(self, where: str, why: str) -> None:
        self.skipped += 1
        if self.first_skip is None:
            self.first_skip = f"{where}: {why}"

    def details(self, records: Iterable[Any], where: str) -> Iterator[SendDetail]:
        id_key = self.id_field.lower()
        lowered, tid, when, rv = self._lowered, self.template_id, self.scheduled_time, record_value
        # Field names' case is UNCONFIRMED, so they are matched case-insensitively; the records of
        # one Avro file share their writer's schema, so the match is made once per key layout,
        # not once per record (this loop runs a million times a campaign).
        shape: tuple[Any, ...] = ()
        id_name: Any = None
        names: tuple[Any, ...] = ()
        for n, record in enumerate(records, start=1):
            self.read += 1
            if type(record) is not dict:
                self._skip(f"{where} record {n}", "not a record")
                continue
            keys = tuple(record)
            if keys != shape:
                shape = keys
                by_lower = {str(k).lower(): k for k in keys}
                id_name = by_lower.get(id_key)
                names = tuple(by_lower.get(a) for a in lowered)
            raw_id = record.get(id_name)
            customer = (raw_id if type(raw_id) is str else rv(raw_id)).strip()
            if not customer or len(customer) > 200:
                self._skip(f"{where} record {n}", f"no usable {self.id_field}")
                continue
            try:
                raw = [record.get(k) for k in names]
                values = tuple([v if type(v) is str else rv(v) for v in raw])
            except (TypeError, ValueError) as exc:  # a value we cannot make a string of
                yield SendDetail(customer, tid, when, (), problem=f"unreadable attribute: {exc}"[:200])
                continue
            yield SendDetail(customer, tid, when, values)

    def notes(self, expected: int | None) -> list[str]:
        """What the campaign shows about this read (never silent, never a failure)."""
        out: list[str] = []
        if self.skipped:
            out.append(f"{self.skipped} customer record(s) skipped (first: {self.first_skip})")
        if expected is not None and expected != self.read:
            out.append(f"metadata NumberOfCustomers is {expected}, the files held {self.read} record(s)")
        return out[:MAX_NOTES]
