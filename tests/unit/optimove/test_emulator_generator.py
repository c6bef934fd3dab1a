import json
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from optibridge.emulator.generator import (
    FIRST_NAMES,
    CampaignSpec,
    GeneratedCampaign,
    WeightedTemplate,
    WeightedTime,
)

NOW = datetime(2024, 5, 1, 8, 20, tzinfo=UTC)


def campaign(count: int = 1000, seed: int = 1, **spec: object) -> GeneratedCampaign:
    return GeneratedCampaign(CampaignSpec(customer_count=count, **spec), 7, seed, NOW)  # type: ignore[arg-type]


MIXED = {
    "templates": [WeightedTemplate(template_id=1, weight=3), WeightedTemplate(template_id=2)],
    "scheduled_times": [
        WeightedTime(scheduled_time="2024-05-01 10:00:00"),
        WeightedTime(scheduled_time="2024-05-01 12:00:00"),
    ],
}


def test_same_seed_gives_the_same_audience_and_another_seed_a_different_one() -> None:
    first = campaign(500, 1, **MIXED).page_json(0, 500, ["FirstName"])
    assert first == campaign(500, 1, **MIXED).page_json(0, 500, ["FirstName"])
    assert first != campaign(500, 2, **MIXED).page_json(0, 500, ["FirstName"])


def test_any_page_equals_the_matching_slice_of_the_whole_campaign() -> None:
    """Pages are computed from indices alone: no state carried from earlier pages."""
    gen = campaign(1000, **MIXED)
    whole = json.loads(gen.page_json(0, 1000, ["Email", "Country"]))
    for skip, top in [(0, 1), (137, 250), (900, 100), (999, 50)]:
        assert json.loads(gen.page_json(skip, top, ["Email", "Country"])) == whole[skip : skip + top]
    assert gen.row(421, ["Email", "Country"]) == whole[421]
    assert gen.template_id(421) == whole[421]["TemplateID"]
    assert gen.scheduled_time(421) == whole[421]["ScheduledTime"]


def test_rows_past_the_end_are_empty_and_the_count_is_exact() -> None:
    gen = campaign(1000)
    assert gen.page_json(1000, 10) == "[]"
    assert gen.page_json(0, 0) == "[]"
    assert len(json.loads(gen.page_json(990, 100))) == 10


def test_template_and_time_weights_shape_the_mix() -> None:
    rows = json.loads(campaign(20_000, **MIXED).page_json(0, 20_000))
    templates = Counter(r["TemplateID"] for r in rows)
    times = Counter(r["ScheduledTime"] for r in rows)
    assert templates[1] / 20_000 == pytest.approx(0.75, abs=0.02)
    assert times["2024-05-01 10:00:00"] / 20_000 == pytest.approx(0.5, abs=0.02)
    # Template and time are drawn independently, so all four pairs occur.
    assert len(Counter((r["TemplateID"], r["ScheduledTime"]) for r in rows)) == 4


def test_default_scheduled_time_is_the_next_full_hour() -> None:
    assert campaign(1).scheduled_times == ["2024-05-01 09:00:00"]


def test_attribute_values_are_typed_by_name_and_arbitrary_names_get_values_too() -> None:
    spec = {"attribute_values": {"Tier": ["gold", "silver"]}}
    row = campaign(10, **spec).row(3, ["Email", "MobilePhone", "first_name", "Tier", "Shoe Size"])
    email, phone, first, tier, other = row["CustomerAttributes"]
    assert email == "c4@example.com"
    assert phone.startswith("+1")
    assert phone[1:].isdigit()
    assert first in FIRST_NAMES
    assert tier in ("gold", "silver")
    assert other == "shoe size-4"


def test_legacy_string_format_joins_attributes_with_the_delimiter() -> None:
    row = campaign(5, attribute_format="string").row(0, ["Email", "Country"])
    assert "CustomerAttributes" not in row
    email, country = row["CustomerAttribute"].split(",")
    assert email == "c1@example.com"
    assert len(country) == 2
    piped = json.loads(campaign(5, attribute_format="string").page_json(0, 1, ["A", "B"], "|"))
    assert piped[0]["CustomerAttribute"] == "a-1|b-1"


def test_text_that_needs_json_escaping_stays_valid_json() -> None:
    gen = campaign(3, customer_id_prefix='x"\\', attribute_values={"Q": ['say "hi"\n']})
    rows = json.loads(gen.page_json(0, 3, ["Q", 'we"ird']))
    assert rows[0]["CustomerID"] == 'x"\\1'
    assert rows[0]["CustomerAttributes"] == ['say "hi"\n', 'we"ird-1']


def test_huge_campaigns_cost_nothing_until_a_page_is_asked_for() -> None:
    started = time.perf_counter()
    gen = campaign(1_000_000_000)
    rows = json.loads(gen.page_json(999_999_990, 100))
    assert time.perf_counter() - started < 0.5
    assert [r["CustomerID"] for r in rows] == [f"C{i}" for i in range(999_999_991, 1_000_000_001)]


@pytest.mark.parametrize("count", [1, 2, 10, 97, 1000, 1024])
def test_cancellation_picks_exactly_the_fraction_as_distinct_customers(count: int) -> None:
    gen = campaign(count)
    canceled = gen.cancel(0.3)
    assert canceled == round(0.3 * count)
    ids = [c["CustomerID"] for c in gen.canceled_customers(0, count)]
    assert len(ids) == len(set(ids)) == canceled
    flagged = {gen.customer_id(i) for i in range(count) if gen.is_canceled(i)}
    assert flagged == set(ids)
    # Pages of the canceled list line up with the whole list.
    assert [c["CustomerID"] for c in gen.canceled_customers(1, 2)] == ids[1:3]


def test_cancelling_everyone_and_no_one() -> None:
    gen = campaign(50, promo_code="A7Bonus")
    assert gen.cancel(1.0) == 50
    assert gen.canceled_customers(0, 1) == [
        {"CustomerID": gen.canceled_customers(0, 1)[0]["CustomerID"], "ActionID": "4",
         "PromoCode": "A7Bonus"}
    ]  # fmt: skip
    assert gen.cancel(0.0) == 0
    assert gen.canceled_customers(0, 50) == []
    assert not gen.is_canceled(0)
