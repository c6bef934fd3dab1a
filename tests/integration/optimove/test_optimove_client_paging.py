"""Paging GetCustomerSendDetailsByChannel through the client against the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from optibridge.emulator.testing import RunningEmulator
from optibridge.optimove import OptimoveClient, OptimoveRequestError, SendDetail

MakeClient = Callable[..., OptimoveClient]
ATTRS = ["Email", "FirstName", "Tier"]


async def pull(client: OptimoveClient, campaign: int = 9, **kw: object) -> list[list[SendDetail]]:
    return [page.rows async for page in client.iter_send_details(campaign, 504, ATTRS, **kw)]  # type: ignore[arg-type]


async def requests_made(emulator: RunningEmulator) -> list[str]:
    log = await emulator.control.requests(function="GetCustomerSendDetailsByChannel")
    return [r["path"] for r in log]


@pytest.mark.parametrize(
    ("customers", "page_size", "pages", "requests"),
    [
        (0, 100, [], 1),  # empty campaign: one empty page ends it
        (40, 100, [40], 2),  # one short page, then the empty page that ends the data
        (100, 100, [100], 2),  # exactly one full page: an empty page confirms the end
        (150, 100, [100, 50], 3),  # two pages
        (1000, 100, [100] * 10, 11),  # many pages, an exact multiple of the page size
        (1234, 100, [100] * 12 + [34], 14),  # many pages and a remainder
    ],
)
async def test_pages_cover_the_campaign_and_stop_at_the_empty_page(
    emulator: RunningEmulator,
    make_client: MakeClient,
    customers: int,
    page_size: int,
    pages: list[int],
    requests: int,
) -> None:
    await emulator.control.create_campaign(
        "t1", campaign_id=9, customer_count=customers, attribute_values={"Tier": ["gold"]}
    )
    client = make_client(page_size=page_size)
    got = await pull(client)
    assert [len(p) for p in got] == pages
    assert len(await requests_made(emulator)) == requests
    ids = [row.customer_id for page in got for row in page]
    assert ids == [f"C{i}" for i in range(1, customers + 1)]


async def test_rows_are_typed_and_match_the_generated_campaign(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.create_campaign(
        "t1", campaign_id=9, customer_count=250, attribute_values={"Tier": ["gold", "silver"]},
        templates=[{"template_id": 11, "weight": 1}, {"template_id": 12, "weight": 1}],
        scheduled_times=[{"scheduled_time": "2030-01-01 09:00:00"},
                         {"scheduled_time": "2030-01-01 18:30:00"}],
    )  # fmt: skip
    rows = [row for page in await pull(make_client(page_size=100)) for row in page]
    generated = emulator.state.tenants["t1"].campaigns[9].data
    expected = json.loads(generated.page_json(0, 250, ATTRS))
    assert [(r.customer_id, r.template_id, r.scheduled_time, list(r.attributes)) for r in rows] == [
        (e["CustomerID"], e["TemplateID"],
         datetime.strptime(e["ScheduledTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC),
         e["CustomerAttributes"])
        for e in expected
    ]  # fmt: skip
    assert {r.template_id for r in rows} == {11, 12}
    assert {r.scheduled_time.hour for r in rows} == {9, 18}
    assert rows[0].attributes[0] == "c1@example.com"


async def test_page_attribute_names_label_the_values(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=3)
    page = await make_client().get_send_details_page(9, 504, ["Email", "Alias"], top=2, skip=1)
    assert (page.skip, page.top, len(page)) == (1, 2, 2)
    assert page.attribute_dict(page.rows[0]) == {"Email": "c2@example.com", "Alias": "c2"}


async def test_legacy_delimited_attribute_string_is_split(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=5, attribute_format="string")
    pages = [p async for p in make_client().iter_send_details(9, 504, ["Email", "Alias"],
                                                              delimiter="|")]  # fmt: skip
    assert pages[0].rows[4].attributes == ("c5@example.com", "c5")


async def test_paging_can_resume_from_an_offset_and_work_without_prefetch(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=250)
    client = make_client(page_size=100, prefetch_pages=False)
    ids = [r.customer_id for page in await pull(client, start_skip=120) for r in page]
    assert ids == [f"C{i}" for i in range(121, 251)]


async def test_a_campaign_on_another_channel_has_no_rows(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=5, channel_ids=[505])
    assert await pull(make_client()) == []


async def test_invalid_attribute_names_and_delimiters_fail_before_sending(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(OptimoveRequestError, match="attribute names"):
        client.iter_send_details(9, 504, ["Email;Phone"])
    with pytest.raises(OptimoveRequestError, match="delimiter"):
        client.iter_send_details(9, 504, ["Email"], delimiter="&")
    assert await requests_made(emulator) == []
