"""Event 14 read without I/O: the webhook body in both casings, file names, metadata, records."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from optibridge.intake import ingest
from optibridge.intake.engagement_payload import (
    CATALOG_TEMPLATE_MAX,
    InvalidEngagement,
    RecordReader,
    customers_file_name,
    customers_file_names,
    decode_key,
    parse_event,
    parse_metadata,
    record_value,
)

KEY = base64.b64encode(bytes(range(32))).decode()
PASCAL = {
    "EventTypeID": 14,
    "TimeStamp": "2022-07-19 08:54",
    "CampaignID": 38085,
    "EngagementID": 144523,
    "TenantID": 28209,
    "BucketName": "optigration-external-eu",
    "CustomersFolderPath": "2022-07-19 08 54 hook 1 144523/customers",
    "MetadataFilePath": "2022-07-19 08 54 hook 1 144523/metadata_144523",
    "DecryptionKey": KEY,
    "ChannelID": 1,
}


def camel(body: dict[str, object]) -> dict[str, object]:
    out = {k[0].lower() + k[1:]: v for k, v in body.items()}
    out["serviceAccount"] = "eyJ0eXBlIjoic2VydmljZV9hY2NvdW50In0="
    return out


@pytest.mark.parametrize("shape", ["pascal", "camel"])
def test_both_casings_read_the_same(shape: str) -> None:
    body = PASCAL if shape == "pascal" else camel(PASCAL)
    e = parse_event(body | {"SomethingNew": [1, 2]})
    assert (e.campaign_id, e.engagement_id, e.tenant_id, e.channel_id) == (38085, 144523, 28209, 1)
    assert e.bucket_name == "optigration-external-eu"
    assert e.customers_folder.endswith("/customers")
    assert e.metadata_path.endswith("metadata_144523")
    assert e.decryption_key == bytes(range(32))
    assert e.timestamp == datetime(2022, 7, 19, 8, 54, tzinfo=UTC)
    stored = e.stored_payload(body)
    assert not {k.lower() for k in stored} & {"decryptionkey", "serviceaccount"}
    assert stored.get("CampaignID", stored.get("campaignID")) == 38085


def test_ids_as_strings_and_a_bad_timestamp_is_only_a_problem() -> None:
    e = parse_event(PASCAL | {"CampaignID": "38085", "EngagementID": "7", "TimeStamp": "19/07/2022"})
    assert (e.campaign_id, e.engagement_id) == (38085, 7)
    assert e.timestamp is None
    assert any("TimeStamp" in p for p in e.problems)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"EventTypeID": 13}, "EventTypeID"),
        ({"CampaignID": None}, "CampaignID is missing"),
        ({"EngagementID": -1}, "EngagementID"),
        ({"EngagementID": True}, "EngagementID"),
        ({"BucketName": ""}, "BucketName is missing"),
        ({"MetadataFilePath": 5}, "MetadataFilePath must be a string"),
        ({"DecryptionKey": ""}, "mandatory for an external bucket"),
        ({"DecryptionKey": "not base64!"}, "not base64"),
        ({"DecryptionKey": base64.b64encode(b"short").decode()}, "256-bit"),
        ({"CustomersFolderPath": "a\nb"}, "control characters"),
    ],
)
def test_unusable_bodies_are_refused_with_the_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidEngagement, match=reason):
        parse_event(PASCAL | change)


def test_a_key_is_optional_for_a_bucket_that_is_not_external() -> None:
    e = parse_event(PASCAL | {"BucketName": "optigration-internal", "DecryptionKey": None})
    assert e.decryption_key is None
    with pytest.raises(InvalidEngagement):
        parse_event([PASCAL])
    assert decode_key(KEY) == bytes(range(32))


def test_file_names_pad_to_three_digits_below_100_only() -> None:
    assert customers_file_name("f/customers/", 1) == "f/customers/customers_file001.deflate.avro"
    assert customers_file_name("f/customers", 99).endswith("customers_file099.deflate.avro")
    assert customers_file_name("f/customers", 100).endswith("customers_file100.deflate.avro")
    assert customers_file_name("f/customers", 1234).endswith("customers_file1234.deflate.avro")
    names = customers_file_names("x", 3)
    assert [n.rsplit("/", 1)[1] for n in names] == [
        "customers_file001.deflate.avro",
        "customers_file002.deflate.avro",
        "customers_file003.deflate.avro",
    ]  # 1..NumberOfFiles (Java SDK), not 0..N-1
    with pytest.raises(ValueError, match="numbered from 1"):
        customers_file_name("x", 0)


META = {
    "ActionID": 1,
    "CampaignID": 38085,
    "EngagementID": 144523,
    "Duration": 3,
    "NumberOfCustomers": 25000,
    "NumberOfFiles": 3,
    "Promotions": "promo1, promo2,,promo1",
    "ScheduledTime": "2022-07-19T09:00:00Z",
    "TemplateID": 9007199254740993,  # 2^53 + 1: a double would read 2^53
    "TemplateName": "Summer",
    "Tags": "vip,summer",
}


def test_metadata_keeps_a_template_id_above_2_53_exact() -> None:
    raw = json.dumps(META).encode()
    assert b"9007199254740993" in raw
    m = parse_metadata(raw)
    assert m.template_id == 2**53 + 1
    assert m.template_id > CATALOG_TEMPLATE_MAX
    assert m.scheduled_time == datetime(2022, 7, 19, 9, tzinfo=UTC)
    assert m.duration_days == 3
    assert m.promotions == ("promo1", "promo2")
    assert m.tags == ("vip", "summer")
    assert (m.number_of_files, m.number_of_customers) == (3, 25000)
    big = parse_metadata(json.dumps(META | {"TemplateID": 18446744073709551615}).encode())
    assert big.template_id == 2**64 - 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"TemplateID": None}, "TemplateID is missing"),
        ({"ScheduledTime": "soon"}, "ScheduledTime"),
        ({"NumberOfFiles": 0}, "NumberOfFiles"),
        ({"Promotions": 5}, "Promotions"),
    ],
)
def test_bad_metadata_says_why(change: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidEngagement, match=reason):
        parse_metadata(json.dumps(META | change).encode())
    with pytest.raises(InvalidEngagement, match="not valid JSON"):
        parse_metadata(b"{")
    with pytest.raises(InvalidEngagement, match="JSON object"):
        parse_metadata(b"[1]")


def test_records_become_send_details_and_bad_ones_notes() -> None:
    when = datetime(2026, 1, 1, 9, tzinfo=UTC)
    reader = RecordReader(("Email", "FirstName", "Points"), 7, when, id_field="customerid")
    records: list[object] = [
        {"CustomerID": "C1", "email": "a@x.test", "FirstName": "Ann", "Points": 12},
        {"CustomerID": "", "Email": "b@x.test"},  # no id: skipped, noted
        {"Email": "c@x.test"},  # no id field at all
        "not a record",
        {"CUSTOMERID": 42, "Email": "d@x.test", "FirstName": None, "Points": True},
    ]
    details = list(reader.details(records, "file 1"))
    assert [d.customer_id for d in details] == ["C1", "42"]
    assert details[0].attributes == ("a@x.test", "Ann", "12")
    assert details[1].attributes == ("d@x.test", "", "true")
    assert all(d.template_id == 7 and d.scheduled_time == when for d in details)
    assert reader.read == 5
    assert reader.skipped == 3
    notes = reader.notes(expected=4)
    assert "3 customer record(s) skipped (first: file 1 record 2" in notes[0]
    assert "NumberOfCustomers is 4, the files held 5" in notes[1]
    assert reader.notes(expected=5) == notes[:1]


def test_record_rows_are_the_classic_flow_rows() -> None:
    """The same plan and row builder as GetCustomerSendDetailsByChannel: same ids, same policy."""
    when = datetime(2026, 1, 1, 9, tzinfo=UTC)
    plan = ingest.plan("acme", 504, 10, "email", {}, ["FirstName"])
    reader = RecordReader(plan.attributes, 1, when)
    details = list(reader.details([{"CustomerID": "C1", "Email": "a@x.test", "FirstName": "Ann"}], "f"))
    rows = ingest.build_rows(plan, details)
    assert rows.count == 1
    assert rows.unaddressed == 0
    assert str(ingest.message_id("acme", 504, 10, "C1", 1)).replace("-", "") in rows.copy_text
    assert '"FirstName":"Ann"' in rows.copy_text


def test_values_become_strings() -> None:
    assert record_value(None) == ""
    assert record_value(b"x") == "x"
    assert record_value(1.5) == "1.5"
    assert record_value({"a": 1}) == '{"a": 1}'


def test_the_stored_payload_keeps_known_fields_only_and_storable_text() -> None:
    body = PASCAL | {
        "TimeStamp": "2022-07-19 08:54\x00\ud800",
        "Extra": {"deep": [1, 2]},
        "ServiceAccount": "secret",
        "TenantID": float("nan"),
    }
    e = parse_event(body)
    stored = e.stored_payload(body)
    assert set(stored) == {k for k in PASCAL if k not in ("DecryptionKey", "TenantID")}
    assert stored["TimeStamp"] == "2022-07-19 08:54\ufffd?"
    json.dumps(stored, allow_nan=False)  # what PostgreSQL's jsonb takes


def test_metadata_is_kept_in_a_form_postgresql_stores() -> None:
    raw = json.dumps(
        META
        | {
            "Note": "a\x00b",
            "Odd": [float("inf"), {"k\x00": "\ud800"}],
            "Tags": "x\x00",
            "TemplateName": "\x00",
        }
    )
    m = parse_metadata(raw.encode("utf-8", "surrogatepass"))
    assert m.raw["Note"] == "a\ufffdb"
    assert m.raw["Odd"] == [None, {"k\ufffd": "?"}]
    assert m.raw["TemplateID"] == 2**53 + 1
    assert (m.tags, m.template_name) == (("x\ufffd",), "\ufffd")
    json.dumps(m.raw, allow_nan=False)
