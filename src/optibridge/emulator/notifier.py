"""Listener notifications: which listeners get which payload (pure), and their delivery.

Optimove POSTs JSON to each registered listener (optimove-api.md §5). Payload fields beyond
EventTypeID/TimeStamp/CampaignID (and ChannelID for 13, ClearanceRequiredBy for 5) are not
documented; the casing is configurable since one partner shows camelCase.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from optibridge.emulator.state import DeliveryRecord

Casing = Literal["pascal", "camel"]
IdKey = Literal["ID", "Id"]
_ID_FIELDS = ("EventTypeID", "CampaignID", "ChannelID")

CAMPAIGN_EVENTS = frozenset({1, 4, 5, 11, 14})
DAILY_EVENTS = frozenset({2, 3})
CHANNEL_EVENT = 13

_CAMEL = {
    "EventTypeID": "eventTypeId",
    "TimeStamp": "timeStamp",
    "CampaignID": "campaignId",
    "ChannelID": "channelId",
    "ClearanceRequiredBy": "clearanceRequiredBy",
}


@dataclass(frozen=True, slots=True)
class Notification:
    url: str
    event_type_id: int
    campaign_id: int | None
    channel_id: int | None
    payload: dict[str, Any]


def _payload(
    fields: dict[str, Any], casing: Casing, id_key: IdKey = "ID", ids_as_strings: bool = False
) -> dict[str, Any]:
    if ids_as_strings:  # "CampaignID": "123" (the live API returned string IDs elsewhere [GH-larvit])
        fields = {k: str(v) if k in _ID_FIELDS and isinstance(v, int) else v for k, v in fields.items()}
    if casing == "camel":
        return {_CAMEL.get(k, k): v for k, v in fields.items()}
    if id_key == "Id":
        return {k[:-2] + "Id" if k in _ID_FIELDS else k: v for k, v in fields.items()}
    return fields


def plan_notifications(
    listeners: Mapping[tuple[int, int | None], str],
    event_type_ids: Sequence[int],
    *,
    timestamp: str,
    campaign_id: int | None = None,
    channel_ids: Sequence[int] = (),
    clearance_required_by: str | None = None,
    casing: Casing = "pascal",
    id_key: IdKey = "ID",
    ids_as_strings: bool = False,
    duplicates: int = 1,
    shuffle: random.Random | None = None,
) -> list[Notification]:
    """The notifications to send, in order.

    A listener registered with a ChannelID hears campaign events only for campaigns on that
    channel; one registered without hears all. Event 13 goes out once per channel. Each URL is
    notified once per (event, channel) even if registered twice (with and without ChannelID).
    """
    planned: list[Notification] = []
    for event in event_type_ids:
        targets: list[tuple[int | None, tuple[int, int | None]]]
        if event == CHANNEL_EVENT:
            targets = [(ch, (event, None)) for ch in channel_ids] + [(ch, (event, ch)) for ch in channel_ids]
        elif event in DAILY_EVENTS:
            targets = [(None, key) for key in listeners if key[0] == event]
        else:
            keys: list[tuple[int, int | None]] = [(event, None)]
            keys += [(event, ch) for ch in channel_ids]
            targets = [(None, key) for key in keys]
        seen: set[tuple[str, int | None]] = set()
        for channel, key in targets:
            url = listeners.get(key)
            if url is None or (url, channel) in seen:
                continue
            seen.add((url, channel))
            fields: dict[str, Any] = {"EventTypeID": event, "TimeStamp": timestamp}
            if event not in DAILY_EVENTS and campaign_id is not None:
                fields["CampaignID"] = campaign_id
            if channel is not None:
                fields["ChannelID"] = channel
            if event == 5 and clearance_required_by is not None:
                fields["ClearanceRequiredBy"] = clearance_required_by
            planned.append(
                Notification(
                    url, event, campaign_id, channel, _payload(fields, casing, id_key, ids_as_strings)
                )
            )
    planned = [n for n in planned for _ in range(max(1, duplicates))]
    if shuffle is not None:
        shuffle.shuffle(planned)
    return planned


async def deliver(
    session: aiohttp.ClientSession,
    notifications: Sequence[Notification],
    *,
    timeout_s: float,
    now_text: str,
) -> list[DeliveryRecord]:
    """POST each notification in order; record the listener's status (or why there was none)."""
    records = []
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for note in notifications:
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(note.url, json=note.payload, timeout=timeout) as response:
                status = response.status
                await response.read()
        except TimeoutError:
            error = f"timeout after {timeout_s:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        records.append(
            DeliveryRecord(
                at=now_text,
                url=note.url,
                event_type_id=note.event_type_id,
                campaign_id=note.campaign_id,
                channel_id=note.channel_id,
                payload=note.payload,
                status=status,
                error=error,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )
    return records
