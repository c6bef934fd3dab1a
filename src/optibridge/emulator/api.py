"""The emulated Optimove API: `/current/{category}/{Function}` and the same without `/current`.

One catch-all route dispatches on the lower-cased path (real clients send `Actions/...`,
`campaignId`), so routing and query keys are case-insensitive, and no FastAPI validation or
response model stands between the send-details page generator and the socket.

Each request passes, in order: routing (404), method (405), authentication (401, 403 expired),
injected faults (latency, error status), the per-key rate limit (429), Content-Type and body
checks (400), then the function itself. Write functions answer 200 with an empty body.

Response shapes on record but not documented (`null` or an empty body for an empty list, an
HTTP-date `Retry-After`, ScheduledTime without seconds or in ISO form, 200 with an error string)
are produced when the config's realism switches say so (docs/optimove-api-notes.md).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote_plus

from fastapi import Request
from fastapi.responses import Response

from optibridge.emulator.faults import FaultDecision
from optibridge.emulator.generator import (
    COUNTRIES,
    FIRST_NAMES,
    GeneratedCampaign,
    format_time,
)
from optibridge.emulator.state import (
    Campaign,
    EmulatorState,
    InteractionBucket,
    RequestRecord,
    Tenant,
)

RATE_LIMIT_BODY: Final = (
    b'{"status":429,"error":"Too Many Requests",'
    b'"message":"You have exceeded the rate limit for this API group. Please retry later."}'
)
EXPIRED_BODY: Final = b"Authorization-Token Expired"
JSON: Final = "application/json"
VALID_EVENT_TYPES: Final = frozenset({1, 2, 3, 4, 5, 11, 13, 14})


class ApiError(Exception):
    """An error answer: JSON `{"status","error","message"}` unless `body` is given."""

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        body: bytes | None = None,
        media_type: str = JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        if body is None:
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            body = json.dumps({"status": status, "error": phrase, "message": message}).encode()
        self.body = body
        self.media_type = media_type
        self.headers = headers

    def response(self) -> Response:
        return Response(self.body, self.status, headers=self.headers, media_type=self.media_type)


@dataclass(slots=True)
class Call:
    state: EmulatorState
    tenant: Tenant
    query: dict[str, str]
    body: Any


Handler = Callable[[Call], Response]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    method: str
    handler: Handler | None  # None: Login, handled before authentication


# -- argument helpers ------------------------------------------------------------------------


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ApiError(400, f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ApiError(400, f"{name} must be an integer, got {value!r:.50}")


def _query_int(call: Call, name: str, default: int | None = None) -> int:
    raw = call.query.get(name.lower())
    if raw is None or raw == "":
        if default is None:
            raise ApiError(400, f"missing query parameter {name}")
        return default
    return _as_int(raw, name)


def _lower(obj: Any, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ApiError(400, f"{what}: expected a JSON object")
    return {str(k).lower(): v for k, v in obj.items()}


def _body_object(call: Call, what: str) -> dict[str, Any]:
    return _lower(call.body, what)


def _body_items(call: Call, what: str) -> list[dict[str, Any]]:
    if not isinstance(call.body, list):
        raise ApiError(400, f"{what}: the body must be a JSON array")
    limit = call.state.config.max_batch_items
    if len(call.body) > limit:
        raise ApiError(400, f"{what}: at most {limit} items per call, got {len(call.body)}")
    return [_lower(item, what) for item in call.body]


def _need(obj: dict[str, Any], key: str, what: str) -> Any:
    value = obj.get(key.lower())
    if value is None:
        raise ApiError(400, f"{what}: missing {key}")
    return value


def _need_text(obj: dict[str, Any], key: str, what: str) -> str:
    value = _need(obj, key, what)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(400, f"{what}: {key} must be a string")
    text = str(value)
    if not text.strip():
        raise ApiError(400, f"{what}: {key} must not be empty")
    return text


def _customer_ids(obj: dict[str, Any], limit: int, what: str) -> list[str]:
    ids = _need(obj, "CustomerIDs", what)
    if not isinstance(ids, list):
        raise ApiError(400, f"{what}: CustomerIDs must be an array")
    if len(ids) > limit:
        raise ApiError(400, f"{what}: at most {limit} CustomerIDs per call, got {len(ids)}")
    if not all(isinstance(c, str | int) and not isinstance(c, bool) for c in ids):
        raise ApiError(400, f"{what}: CustomerIDs must be strings")
    return [str(c) for c in ids]


def _json(data: Any) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), media_type=JSON)


def _list_text(call: Call, text: str) -> Response:
    """A JSON array answer; an empty one shaped as the `empty_list_body` switch says."""
    if text == "[]":
        shape = call.state.config.empty_list_body
        if shape == "null":
            return Response(b"null", media_type=JSON)
        if shape == "empty":
            return Response(b"", 200)
    return Response(text.encode(), media_type=JSON)


def _list(call: Call, items: list[Any]) -> Response:
    return _list_text(call, json.dumps(items, separators=(",", ":")))


def _time(call: Call, canonical: str) -> str:
    return format_time(canonical, call.state.config.scheduled_time_format)


_OK: Final = b""


def _ok() -> Response:
    # Write functions "do not return a payload": 200 and Content-Length: 0.
    return Response(_OK, 200)


# -- general ----------------------------------------------------------------------------------


def register_event_listener(call: Call) -> Response:
    what = "RegisterEventListener"
    body = _body_object(call, what)
    event = _as_int(_need(body, "EventTypeID", what), "EventTypeID")
    if event not in VALID_EVENT_TYPES:
        raise ApiError(400, f"{what}: unknown EventTypeID {event}")
    url = _need_text(body, "ListenerURL", what).strip()
    if "://" not in url:
        url = unquote_plus(url)  # old doc samples URL-encode the listener URL
    if not url.lower().startswith(("http://", "https://")):
        raise ApiError(400, f"{what}: ListenerURL must be an http(s) URL")
    channel = body.get("channelid")
    channel_id = None if channel is None else _as_int(channel, "ChannelID")
    if event == 5 and channel_id is not None:
        raise ApiError(400, f"{what}: EventTypeID 5 must be registered without a ChannelID")
    call.tenant.listeners[(event, channel_id)] = url
    return _ok()


def unregister_event_listener(call: Call) -> Response:
    what = "UnregisterEventListener"
    body = _body_object(call, what)
    event = _as_int(_need(body, "EventTypeID", what), "EventTypeID")
    channel = body.get("channelid")
    listeners = call.tenant.listeners
    if channel is None:  # without ChannelID: every listener of this event type
        for key in [k for k in listeners if k[0] == event]:
            del listeners[key]
    else:
        listeners.pop((event, _as_int(channel, "ChannelID")), None)
    return _ok()


def get_registered_event_listeners(call: Call) -> Response:
    items = [
        {"EventTypeID": event, "ListenerURL": url, "ChannelID": channel}
        for (event, channel), url in sorted(
            call.tenant.listeners.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
        )
    ]
    return _list(call, items)


def get_last_data_update(call: Call) -> Response:
    day = call.tenant.last_data_update or call.state.clock.now().date()
    return _json({"Date": day.isoformat()})


# -- templates and apps ------------------------------------------------------------------------


def get_channel_templates(call: Call) -> Response:
    channel_id = _query_int(call, "ChannelID")
    templates = call.tenant.templates.get(channel_id, {})
    return _list(call, [templates[k] for k in sorted(templates)])


def add_channel_templates(call: Call) -> Response:
    what = "AddChannelTemplates"
    channel_id = _query_int(call, "ChannelID")
    items = _body_items(call, what)
    parsed = []
    for item in items:
        template_id = _need(item, "TemplateID", what)
        if isinstance(template_id, bool) or not isinstance(template_id, int):
            raise ApiError(400, f"{what}: TemplateID must be an integer")
        name = item.get("templatename")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, f"{what}: TemplateName must be a non-empty string")
        record: dict[str, Any] = {"TemplateID": template_id, "TemplateName": name}
        if item.get("appid") is not None:
            record["AppID"] = str(item["appid"])
        parsed.append(record)
    store = call.tenant.templates.setdefault(channel_id, {})
    for record in parsed:  # upsert: an existing TemplateID is renamed
        store[record["TemplateID"]] = record
    return _ok()


def delete_channel_templates(call: Call) -> Response:
    what = "DeleteChannelTemplates"
    keys = [
        (_as_int(_need(i, "ChannelID", what), "ChannelID"),
         _as_int(_need(i, "TemplateID", what), "TemplateID"))
        for i in _body_items(call, what)
    ]  # fmt: skip
    for channel_id, template_id in keys:
        call.tenant.templates.get(channel_id, {}).pop(template_id, None)
    return _ok()


def add_channel_apps(call: Call) -> Response:
    what = "AddChannelApps"
    channel_id = _query_int(call, "ChannelID")
    apps = [(_need_text(i, "AppID", what), _need_text(i, "AppName", what)) for i in _body_items(call, what)]
    store = call.tenant.apps.setdefault(channel_id, {})
    store.update(apps)
    return _ok()


def delete_channel_apps(call: Call) -> Response:
    what = "DeleteChannelApps"
    keys = [
        (_as_int(_need(i, "ChannelID", what), "ChannelID"), _need_text(i, "AppID", what))
        for i in _body_items(call, what)
    ]
    for channel_id, app_id in keys:
        call.tenant.apps.get(channel_id, {}).pop(app_id, None)
    return _ok()


# -- customers ------------------------------------------------------------------------------


def _paging(call: Call) -> tuple[int, int]:
    cap = call.state.config.max_page_size
    top = _query_int(call, "$top", cap)
    skip = _query_int(call, "$skip", 0)
    if top < 0 or skip < 0:
        raise ApiError(400, "$top and $skip must not be negative")
    return min(top, cap), skip


def get_customer_send_details_by_channel(call: Call) -> Response:
    campaign_id = _query_int(call, "CampaignID")
    channel_id = _query_int(call, "ChannelID")
    top, skip = _paging(call)
    raw_names = call.query.get("customerattributes", "")
    names = [n.strip() for n in raw_names.split(";") if n.strip()]
    delimiter = call.query.get("customerattributesdelimiter") or ","
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None or channel_id not in campaign.channel_ids:
        return _list_text(call, "[]")
    style = call.state.config.scheduled_time_format
    text = campaign.audience(channel_id).page_json(skip, top, names, delimiter, style)
    return _list_text(call, text)


def _send_id(campaign_id: int, channel_id: int, template_id: int, when: str) -> str:
    """A stable SendID per (campaign, channel, template, time): the doc samples look like "HG65D"."""
    digest = zlib.crc32(f"{campaign_id}:{channel_id}:{template_id}:{when}".encode())
    return f"{digest:08X}"[:6]


def get_customer_send_details_by_campaign(call: Call) -> Response:
    """Every (customer, channel) of the campaign, channel by channel (§7.2)."""
    campaign_id = _query_int(call, "CampaignID")
    include_templates = call.query.get("includetemplateids", "").strip().lower() == "true"
    top, skip = _paging(call)
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None:
        return _list(call, [])
    n = campaign.data.count
    rows: list[dict[str, Any]] = []
    position = skip
    stop = min(skip + top, n * len(campaign.channel_ids))
    while position < stop:  # bounded: each pass takes one channel's slice
        channel_id = campaign.channel_ids[position // n]
        first = position % n
        last = min(n, first + (stop - position))
        audience = campaign.audience(channel_id)
        for row in json.loads(audience.page_json(first, last - first)):
            when = row["ScheduledTime"]
            item: dict[str, Any] = {
                "CustomerID": row["CustomerID"],
                "ChannelID": channel_id,
                "ScheduledTime": _time(call, when),
                "SendID": _send_id(campaign_id, channel_id, row["TemplateID"], when),
            }
            if include_templates:
                item["TemplateID"] = row["TemplateID"]
            rows.append(item)
        position += last - first
    return _list(call, rows)


def _attribute_names(call: Call) -> list[str]:
    raw = call.query.get("customerattributes", "")
    return [n.strip() for n in raw.split(";") if n.strip()]


def get_customer_execution_details_by_campaign(call: Call) -> Response:
    """Customers of a campaign on a channel, for promo systems (§7.3; field list from real code)."""
    campaign_id = _query_int(call, "CampaignID")
    channel_id = _query_int(call, "ChannelID")
    top, skip = _paging(call)
    names = _attribute_names(call)
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None or channel_id not in campaign.channel_ids:
        return _list(call, [])
    templates = call.tenant.templates.get(channel_id, {})
    promo = campaign.data.spec.promo_code
    rows = []
    for row in json.loads(campaign.audience(channel_id).page_json(skip, top, names)):
        template_id = row["TemplateID"]
        item: dict[str, Any] = {
            "CustomerID": row["CustomerID"],
            "ActionID": 1,
            "ChannelID": channel_id,
            "TemplateID": template_id,
            "TemplateName": templates.get(template_id, {}).get("TemplateName", ""),
            "ScheduleTime": _time(call, row["ScheduledTime"]),  # sic: "ScheduleTime" [CODE-promo]
        }
        if promo is not None:
            item["PromoCode"] = promo
        if names:
            item["CustomerAttributes"] = row["CustomerAttributes"]
        rows.append(item)
    return _list(call, rows)


def get_processed_campaign_customers(call: Call) -> Response:
    """Customers an event-5 campaign targets, for promotion activation (§7.5, §10; params and
    fields UNCONFIRMED): `[{"CustomerID","ActionID","PromoCode"?}]`, paged with $top/$skip."""
    campaign_id = _query_int(call, "CampaignID")
    top, skip = _paging(call)
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None:
        return _list(call, [])
    data = campaign.data
    promo = data.spec.promo_code
    rows = []
    for index in range(skip, min(data.count, skip + top)):
        row: dict[str, Any] = {"CustomerID": data.customer_id(index), "ActionID": 1}
        if promo is not None:
            row["PromoCode"] = promo
        rows.append(row)
    return _list(call, rows)


# Attribute names the generator gives typed values to (generator.GeneratedCampaign._column).
_KNOWN_ATTRIBUTES: Final = (
    ("Alias", "Customer alias"),
    ("Country", f"Country of residence ({', '.join(COUNTRIES)})"),
    ("Email", "Email address"),
    ("FirstName", f"First name (one of {len(FIRST_NAMES)})"),
    ("Language", "Preferred language"),
    ("LastName", "Last name"),
    ("MobilePhone", "Mobile phone number"),
    ("TimeZone", "IANA time zone"),
)


def get_customer_attribute_list(call: Call) -> Response:
    """`[{"RealFieldName","Description"}]` ([GH-nr] fixture; not in the reference: UNCONFIRMED)."""
    known = {name.lower(): (name, text) for name, text in _KNOWN_ATTRIBUTES}
    for campaign in call.tenant.campaigns.values():
        for name in campaign.data.spec.attribute_values:
            known.setdefault(name.lower(), (name, "Campaign attribute"))
    items = [{"RealFieldName": n, "Description": d} for n, d in sorted(known.values())]
    return _list(call, items)


def get_canceled_campaign_customers(call: Call) -> Response:
    campaign_id = _query_int(call, "CampaignID")
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None or campaign.canceled_at is None:
        return _list(call, [])
    if call.state.clock.monotonic() - campaign.canceled_at > call.state.config.canceled_data_ttl_s:
        return _list(call, [])  # "available for 2 hours after the notification"
    data = campaign.data
    top = _query_int(call, "$top", data.canceled_count)
    skip = _query_int(call, "$skip", 0)
    return _list(call, data.canceled_customers(skip, top))


# -- actions --------------------------------------------------------------------------------


def get_campaign_details(call: Call) -> Response:
    campaign_id = _query_int(call, "CampaignID")
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None:
        raise ApiError(400, f"GetCampaignDetails: unknown CampaignID {campaign_id}")
    spec = campaign.data.spec
    details: dict[str, Any] = {
        "CampaignID": campaign_id,
        "TargetGroupID": 1,
        "CampaignType": "Test/Control",
        "Duration": spec.duration_days,
        "LeadTime": 0,
        "Notes": "",
        "IsMultiChannel": len(campaign.channel_ids) > 1,
        "IsRecurrence": False,
        "Status": "Canceled" if campaign.canceled_at is not None else "Successful",
        "Error": "",
        "Channels": [{"Id": ch} for ch in campaign.channel_ids],
        "Tags": [],
        "TestGroupSize": spec.customer_count,
        "ControlGroupSize": 0,
    }
    details.update(spec.details)
    return _json(details)


def _combos(audience: GeneratedCampaign) -> list[tuple[int, str]]:
    return [(t, w) for t in audience.template_ids for w in audience.scheduled_times]


def _executed_on(campaign: Campaign, channel_id: int, day: str) -> bool:
    return any(w.startswith(day) for _, w in _combos(campaign.audience(channel_id)))


def get_executed_campaigns_by_channel(call: Call) -> Response:
    """Campaigns on the channel with a ScheduledTime on `Date` (UTC): `[{"CampaignID":12}]` (§8)."""
    channel_id = _query_int(call, "ChannelID")
    raw = call.query.get("date", "").strip()
    try:
        day = date.fromisoformat(raw[:10]).isoformat()
    except ValueError:
        raise ApiError(400, "GetExecutedCampaignsByChannel: Date must be YYYY-MM-DD") from None
    ids = sorted(
        c.campaign_id
        for c in call.tenant.campaigns.values()
        if channel_id in c.channel_ids and _executed_on(c, channel_id, day)
    )
    return _list(call, [{"CampaignID": i} for i in ids])


def get_executed_campaign_channel_details(call: Call) -> Response:
    """One row per (template, scheduled time) the campaign sent on the channel (§8)."""
    campaign_id = _query_int(call, "CampaignID")
    channel_id = _query_int(call, "ChannelID")
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None or channel_id not in campaign.channel_ids:
        return _list(call, [])
    rows = [
        {
            "SendID": _send_id(campaign_id, channel_id, tid, when),
            "TemplateID": tid,
            "ScheduledTime": _time(call, when),
        }
        for tid, when in _combos(campaign.audience(channel_id))
    ]
    return _list(call, rows)


def get_execution_channels(call: Call) -> Response:
    channels = call.tenant.channels
    return _json([{"ChannelID": k, "ChannelName": channels[k]} for k in sorted(channels)])


# -- reporting ------------------------------------------------------------------------------


def update_campaign_metrics(call: Call) -> Response:
    what = "UpdateCampaignMetrics"
    updates = []
    for item in _body_items(call, what):
        key = tuple(
            _as_int(_need(item, name, what), name)
            for name in ("CampaignID", "ChannelID", "TemplateID", "MetricID")
        )
        value = _need(item, "MetricValue", what)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError(400, f"{what}: MetricValue must be a number")
        updates.append((key, float(value)))
    for key, value in updates:
        call.tenant.metrics[key] = value  # type: ignore[index]
    call.tenant.metric_updates += len(updates)
    return _ok()


def update_campaign_interactions(call: Call) -> Response:
    what = "UpdateCampaignInteractions"
    body = _body_object(call, what)
    key_ints = [
        _as_int(_need(body, name, what), name)
        for name in ("CampaignID", "ChannelID", "TemplateID", "EventID")
    ]
    raw_date = _need_text(body, "InteractionDate", what)
    try:
        day = date.fromisoformat(raw_date.strip()[:10]).isoformat()
    except ValueError:
        raise ApiError(400, f"{what}: InteractionDate must be YYYY-MM-DD") from None
    group = _as_int(body.get("recipientgroupid", 1), "RecipientGroupID")
    customers = _customer_ids(body, call.state.config.max_interaction_customers, what)
    app_id = body.get("appid")
    key = (key_ints[0], key_ints[1], key_ints[2], key_ints[3], day)
    bucket = call.tenant.interactions.setdefault(key, InteractionBucket())
    bucket.customers.update(customers)
    bucket.recipient_groups.add(group)
    if app_id is not None:
        bucket.app_ids.add(str(app_id))
    bucket.calls += 1
    return _ok()


def update_customer_promotion_status(call: Call) -> Response:
    """`{"TimeStamp","CampaignID","PromosUpdated":[{"CustomerId","Status"}]}` (§10, [CODE-go])."""
    what = "UpdateCustomerPromotionStatus"
    body = _body_object(call, what)
    campaign_id = _as_int(_need(body, "CampaignID", what), "CampaignID")
    campaign = call.tenant.campaigns.get(campaign_id)
    if campaign is None:
        raise ApiError(400, f"{what}: unknown CampaignID {campaign_id}")
    updates = _need(body, "PromosUpdated", what)
    if not isinstance(updates, list):
        raise ApiError(400, f"{what}: PromosUpdated must be an array")
    limit = call.state.config.max_promotion_statuses
    if len(updates) > limit:
        raise ApiError(400, f"{what}: at most {limit} PromosUpdated items per call, got {len(updates)}")
    parsed = []
    for raw in updates:
        item = _lower(raw, what)
        customer = _need_text(item, "CustomerId", what)
        status = _need(item, "Status", what)
        if not isinstance(status, bool):
            raise ApiError(400, f"{what}: Status must be true or false")
        parsed.append((customer, status))
    campaign.promotion_statuses.update(parsed)
    return _ok()


def set_customer_channel_preference(call: Call) -> Response:
    what = "SetCustomerChannelPreference"
    body = _body_object(call, what)
    channel_id = _as_int(_need(body, "ChannelID", what), "ChannelID")
    mode = _as_int(_need(body, "CommunicationMode", what), "CommunicationMode")
    customers = _customer_ids(body, call.state.config.max_preference_customers, what)
    app_id = body.get("appid")
    store = call.tenant.preferences.setdefault((channel_id, None if app_id is None else str(app_id)), {})
    for customer in customers:
        store[customer] = mode
    return _ok()


ENDPOINTS: Final[dict[tuple[str, str], Endpoint]] = {
    (category, name.lower()): Endpoint(name, method, handler)
    for category, name, method, handler in [
        ("general", "Login", "POST", None),
        ("general", "RegisterEventListener", "POST", register_event_listener),
        ("general", "UnregisterEventListener", "POST", unregister_event_listener),
        ("general", "GetRegisteredEventListeners", "GET", get_registered_event_listeners),
        ("general", "GetRegisteredEventListener", "GET", get_registered_event_listeners),
        ("general", "GetLastDataUpdate", "GET", get_last_data_update),
        ("integrations", "GetChannelTemplates", "GET", get_channel_templates),
        ("integrations", "AddChannelTemplates", "POST", add_channel_templates),
        ("integrations", "DeleteChannelTemplates", "POST", delete_channel_templates),
        ("integrations", "AddChannelApps", "POST", add_channel_apps),
        ("integrations", "DeleteChannelApps", "POST", delete_channel_apps),
        ("integrations", "UpdateCampaignMetrics", "POST", update_campaign_metrics),
        ("integrations", "UpdateCampaignInteractions", "POST", update_campaign_interactions),
        ("integrations", "SetCustomerChannelPreference", "POST", set_customer_channel_preference),
        ("integrations", "UpdateCustomerPromotionStatus", "POST", update_customer_promotion_status),
        ("customers", "GetCustomerSendDetailsByChannel", "GET", get_customer_send_details_by_channel),
        ("customers", "GetCanceledCampaignCustomers", "GET", get_canceled_campaign_customers),
        ("customers", "GetProcessedCampaignCustomers", "GET", get_processed_campaign_customers),
        ("customers", "GetCustomerSendDetailsByCampaign", "GET", get_customer_send_details_by_campaign),
        ("customers", "GetCustomerExecutionDetailsByCampaign", "GET",
         get_customer_execution_details_by_campaign),
        ("model", "GetCustomerAttributeList", "GET", get_customer_attribute_list),
        ("actions", "GetCampaignDetails", "GET", get_campaign_details),
        ("actions", "GetExecutionChannels", "GET", get_execution_channels),
        ("actions", "GetExecutedCampaignsByChannel", "GET", get_executed_campaigns_by_channel),
        ("actions", "GetExecutedCampaignChannelDetails", "GET", get_executed_campaign_channel_details),
    ]
}  # fmt: skip


def resolve(path: str) -> Endpoint | None:
    """The endpoint for a request path, case-insensitively, with or without `/current`."""
    parts = [p for p in path.lower().split("/") if p]
    if parts and parts[0] == "current":
        parts = parts[1:]
    if len(parts) != 2:
        return None
    return ENDPOINTS.get((parts[0], parts[1]))


# -- the pipeline ---------------------------------------------------------------------------


def retry_after_value(retry_after: float, now: datetime, style: str = "seconds") -> str:
    """A Retry-After header: whole delta-seconds (rounded up, at least 1) or an HTTP date.

    The date is rounded up to the next whole second, so a client that honours it never comes
    back before the window reopens.
    """
    if style == "http-date":
        when = now + timedelta(seconds=max(0.0, retry_after))
        when = when.replace(microsecond=0) + timedelta(seconds=1 if when.microsecond else 0)
        return format_datetime(when, usegmt=True)
    return str(max(1, int(retry_after + 0.999)))


def _rate_limited(state: EmulatorState, retry_after: float) -> ApiError:
    headers = None
    if state.config.send_retry_after:
        value = retry_after_value(retry_after, state.clock.now(), state.config.retry_after_format)
        headers = {"Retry-After": value}
    return ApiError(429, body=RATE_LIMIT_BODY, headers=headers)


def _parse_json_body(request_body: bytes, content_type: str) -> Any:
    if content_type.split(";")[0].strip().lower() != JSON:
        raise ApiError(400, "Content-Type must be application/json")
    if not request_body.strip():
        raise ApiError(400, "the request body is empty")
    try:
        return json.loads(request_body)
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None


def _login(state: EmulatorState, body: Any) -> tuple[Tenant | None, Response]:
    fields = _lower(body, "Login")
    username, password = fields.get("username"), fields.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "Login: Username and Password are required")
    now = state.clock.monotonic()
    wait = state.rate_limited(f"user:{username.lower()}", now, login=True)
    if wait is not None:
        raise _rate_limited(state, wait)
    tenant = state.by_username.get(username.lower())
    if tenant is None or tenant.password != password:
        raise ApiError(401, body=b'"Unauthorized"')
    token = state.issue_token(tenant)
    return tenant, Response(json.dumps(token), media_type=JSON)


def _authenticate(state: EmulatorState, request: Request) -> tuple[Tenant, str]:
    """The calling tenant and its rate-limit key, from X-API-KEY or Authorization-Token."""
    key = request.headers.get("x-api-key")
    if key is not None:
        tenant = state.by_api_key.get(key.strip())
        if tenant is None or tenant.keys_disabled(state.clock.monotonic()):
            raise ApiError(401, body=b'"Unauthorized"')
        return tenant, f"key:{key.strip()}"
    token = request.headers.get("authorization-token")
    if token is None:
        raise ApiError(401, body=b'"Unauthorized"')
    record = state.tokens.get(token.strip())
    if record is None:
        raise ApiError(401, body=b'"Unauthorized"')
    now = state.clock.monotonic()
    if record.revoked or now - record.last_used > state.config.token_ttl_s:
        record.revoked = True
        raise ApiError(403, body=EXPIRED_BODY, media_type="text/plain")
    record.last_used = now  # the expiry slides with every call
    tenant = state.tenants[record.tenant_id]
    return tenant, f"user:{(tenant.username or tenant.tenant_id).lower()}"


async def _delay(request: Request, seconds: float) -> None:
    """Sleep `seconds`, giving up early once the client has hung up (a timed-out call)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for _ in range(int(seconds / 0.05) + 2):  # bounded polling
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(0.05, remaining))
        if await request.is_disconnected():
            return


async def handle(request: Request) -> Response:
    """Serve one Optimove API request (the catch-all route)."""
    state: EmulatorState = request.app.state.emulator
    endpoint = resolve(request.url.path)
    function = endpoint.name if endpoint else request.url.path
    tenant: Tenant | None = None
    fault_ids: list[int] = []
    status = 500
    try:
        try:
            if endpoint is None:
                raise ApiError(404, f"no such function: {request.url.path}")
            if request.method != endpoint.method:
                raise ApiError(405, body=b'"Method Not Allowed"')
            raw = await request.body()
            content_type = request.headers.get("content-type", "")
            if endpoint.handler is None:  # Login
                faults = state.faults.decide("login", None, state.clock.monotonic())
                fault_ids = faults.rule_ids
                await _apply_faults(request, state, faults)
                tenant, response = _login(state, _parse_json_body(raw, content_type))
                status = response.status_code
                return response
            tenant, limit_key = _authenticate(state, request)
            now = state.clock.monotonic()
            faults = state.faults.decide(endpoint.name, tenant.tenant_id, now)
            fault_ids = faults.rule_ids
            await _apply_faults(request, state, faults)
            wait = state.rate_limited(limit_key, now)
            if wait is not None:
                raise _rate_limited(state, wait)
            body = _parse_json_body(raw, content_type) if endpoint.method == "POST" else None
            query = {k.lower(): v for k, v in request.query_params.multi_items()}
            response = endpoint.handler(Call(state, tenant, query, body))
            status = response.status_code
            return response
        except ApiError as error:
            status = error.status
            return error.response()
    finally:
        state.requests.append(
            RequestRecord(
                at=state.clock.now().strftime("%Y-%m-%d %H:%M:%S"),
                method=request.method,
                path=request.url.path,
                function=function,
                tenant_id=tenant.tenant_id if tenant else None,
                status=status,
                fault_ids=fault_ids,
            )
        )


async def _apply_faults(request: Request, state: EmulatorState, faults: FaultDecision) -> None:
    if faults.latency_s > 0:
        await _delay(request, faults.latency_s)
    if faults.error_string is not None:
        # "200 with an error string": a bare JSON string instead of the answer ([CODE-go]).
        raise ApiError(200, body=json.dumps(faults.error_string).encode())
    status = faults.status
    if status is None:
        return
    if status == 429:
        retry_after = faults.retry_after_s
        raise _rate_limited(state, 1.0 if retry_after is None else retry_after)
    if status == 403:
        raise ApiError(403, body=EXPIRED_BODY, media_type="text/plain")
    raise ApiError(status, "injected fault")
