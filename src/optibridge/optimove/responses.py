"""Turning Optimove's JSON answers into typed values.

Optimove's key casing is not reliable (`ChannelId` vs `ChannelID`, `UserName` vs `Username`), so
small answers are read case-insensitively. Send-detail rows, a million per large campaign, take
a fast path on the documented keys and fall back to case-insensitive lookup only for a row that
misses them. Shape errors raise `ValueError`; the client turns it into `OptimoveResponseError`.
An empty 200 body or `null` where a list is expected reads as the empty list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from optibridge.optimove.models import (
    CampaignDetails,
    CanceledCustomer,
    ChannelTemplate,
    EventListener,
    ExecutionChannel,
    SendDetail,
)
from optibridge.optimove.timefmt import parse_optimove_date, parse_optimove_time


def error_string(payload: bytes) -> str | None:
    """The message when a 2xx body is a bare JSON string ("Error: ..."), else None.

    Some Optimove answers are a 200 whose body is a quoted string instead of the object or list
    the call returns ([CODE-go] treats it as an error message, optimove-api.md §3.6). Only the
    first bytes are looked at unless they open a string, so a large page costs nothing here.
    """
    if not payload[:64].lstrip().startswith(b'"'):
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, str) else None


def lower_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()}


def _require_list(data: Any, what: str) -> list[Any]:
    if data is None:  # an empty 200 body means "nothing"
        return []
    if not isinstance(data, list):
        raise ValueError(f"{what}: expected a JSON array, got {type(data).__name__}")
    return data


def _require_obj(item: Any, what: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"{what}: expected JSON objects, got {type(item).__name__}")
    return lower_keys(item)


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _attributes(row: Mapping[str, Any], delimiter: str) -> tuple[str, ...]:
    values = row.get("CustomerAttributes")
    if values is None:
        values = row.get("customerattributes")
    if values is None:
        # The legacy live API returned one delimiter-joined string (optimove-api.md §7.1).
        legacy = row.get("CustomerAttribute", row.get("customerattribute"))
        if legacy is None:
            return ()
        return tuple(_text(legacy).split(delimiter))
    if isinstance(values, str):
        return tuple(values.split(delimiter))
    result = tuple(values)
    for value in result:
        if type(value) is not str:  # rare: null or a number; normalise the whole row
            return tuple(_text(v) for v in result)
    return result


def _checked(detail: SendDetail, expected: int | None, delimiter: str) -> SendDetail:
    """A row whose attribute count is not the number requested is failed alone, never shifted: in
    the legacy joined string a value holding the delimiter ("Washington, D.C.") splits in two and
    moves every later value under the wrong name."""
    n = len(detail.attributes)
    if not expected or n == expected:  # nothing requested: nothing to check against
        return detail
    return SendDetail(
        detail.customer_id,
        detail.template_id,
        detail.scheduled_time,
        (),
        f"customer attributes: {n} values for {expected} requested attributes "
        f"(a value holding the delimiter {delimiter!r}?); not sent",
    )


def _slow_row(row: Any, delimiter: str) -> SendDetail:
    fields = _require_obj(row, "GetCustomerSendDetailsByChannel")
    try:
        customer_id = fields["customerid"]
        template_id = fields["templateid"]
        scheduled = fields["scheduledtime"]
    except KeyError as missing:
        raise ValueError(f"send-detail row lacks {missing.args[0]}: {row!r:.200}") from None
    if customer_id is None or scheduled is None:
        raise ValueError(f"send-detail row has a null CustomerID or ScheduledTime: {row!r:.200}")
    return SendDetail(
        _text(customer_id), int(template_id), parse_optimove_time(str(scheduled)),
        _attributes(fields, delimiter),
    )  # fmt: skip


def parse_send_details(data: Any, delimiter: str = ",", expected: int | None = None) -> list[SendDetail]:
    """Rows of GetCustomerSendDetailsByChannel (attributes as an array or a legacy string).

    `expected`: how many attributes were requested; a row with another count gets a `problem`.
    """
    rows = _require_list(data, "GetCustomerSendDetailsByChannel")
    parse_time = parse_optimove_time  # cached: rows share a few ScheduledTimes
    make = SendDetail
    out: list[SendDetail] = []
    append = out.append
    for row in rows:
        try:
            customer_id = row["CustomerID"]
            template_id = row["TemplateID"]
            scheduled = row["ScheduledTime"]
        except (KeyError, TypeError):
            append(_checked(_slow_row(row, delimiter), expected, delimiter))
            continue
        if type(customer_id) is not str:
            if customer_id is None:
                raise ValueError(f"send-detail row has a null CustomerID: {row!r:.200}")
            customer_id = str(customer_id)
        detail = make(
            customer_id,
            template_id if type(template_id) is int else int(template_id),
            parse_time(scheduled),
            _attributes(row, delimiter),
        )
        if expected and len(detail.attributes) != expected:
            detail = _checked(detail, expected, delimiter)
        append(detail)
    return out


def parse_listeners(data: Any) -> list[EventListener]:
    out = []
    for item in _require_list(data, "GetRegisteredEventListeners"):
        fields = _require_obj(item, "GetRegisteredEventListeners")
        out.append(
            EventListener(
                event_type_id=int(fields["eventtypeid"]),
                listener_url=_text(fields.get("listenerurl")),
                channel_id=_opt_int(fields.get("channelid")),
            )
        )
    return out


def parse_templates(data: Any) -> list[ChannelTemplate]:
    out = []
    for item in _require_list(data, "GetChannelTemplates"):
        fields = _require_obj(item, "GetChannelTemplates")
        out.append(ChannelTemplate(int(fields["templateid"]), _text(fields.get("templatename"))))
    return out


def parse_execution_channels(data: Any) -> list[ExecutionChannel]:
    out = []
    for item in _require_list(data, "GetExecutionChannels"):
        fields = _require_obj(item, "GetExecutionChannels")
        out.append(ExecutionChannel(int(fields["channelid"]), _text(fields.get("channelname"))))
    return out


def parse_canceled_customers(data: Any) -> list[CanceledCustomer]:
    out = []
    for item in _require_list(data, "GetCanceledCampaignCustomers"):
        fields = _require_obj(item, "GetCanceledCampaignCustomers")
        promo = fields.get("promocode")
        out.append(
            CanceledCustomer(
                customer_id=_text(fields["customerid"]),
                action_id=_text(fields.get("actionid")),  # the doc sample has "4", a fixture 4
                promo_code=None if promo is None else _text(promo),
            )
        )
    return out


def _bool_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _channel_ids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    ids = []
    for item in value:
        if isinstance(item, dict):
            fields = lower_keys(item)
            found = fields.get("id", fields.get("channelid"))
            if found is not None:
                ids.append(int(found))
        elif item is not None:
            ids.append(int(item))
    return tuple(ids)


def parse_campaign_details(campaign_id: int, data: Any) -> CampaignDetails:
    if isinstance(data, list) and len(data) == 1:
        data = data[0]  # some endpoints wrap a single object in an array
    if not isinstance(data, dict):
        raise ValueError(f"GetCampaignDetails: expected a JSON object, got {type(data).__name__}")
    fields = lower_keys(data)
    tags = fields.get("tags")
    return CampaignDetails(
        campaign_id=campaign_id,
        channel_ids=_channel_ids(fields.get("channels")),
        duration_days=_opt_int(fields.get("duration")),
        lead_time_days=_opt_int(fields.get("leadtime")),
        status=_bool_text(fields.get("status")),
        campaign_type=_bool_text(fields.get("campaigntype")),
        target_group_id=_opt_int(fields.get("targetgroupid")),
        tags=tuple(_text(t) for t in tags) if isinstance(tags, list) else (),
        notes=_bool_text(fields.get("notes")),
        raw=dict(data),
    )


def parse_last_data_update(data: Any) -> date:
    if isinstance(data, str):
        return parse_optimove_date(data)
    if not isinstance(data, dict):
        raise ValueError(f"GetLastDataUpdate: expected a JSON object, got {type(data).__name__}")
    return parse_optimove_date(_text(lower_keys(data)["date"]))
