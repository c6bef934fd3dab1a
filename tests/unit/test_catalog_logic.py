"""Catalog decisions without I/O: the sync plan, template files, and what a template needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from optibridge.catalog.importer import parse_file, read_folder
from optibridge.catalog.models import RESERVED_TEMPLATE_ID, TemplateSpec, compile_spec
from optibridge.catalog.sync import plan_templates
from optibridge.core.errors import ConfigError


def test_sync_plan_adds_missing_and_renamed_deletes_tombstones_and_spares_foreign() -> None:
    p = plan_templates(
        ours={1: "A", 2: "B", 3: "C"},
        tombstones={4, 5},
        remote={1: "A", 2: "old B", 4: "D", 9: "theirs"},
    )
    assert p.add == {2: "B", 3: "C"}
    assert p.delete == [4]
    assert p.foreign == [9]
    assert not p.empty
    forced = plan_templates({1: "A"}, set(), {1: "A", 9: "theirs"}, delete_foreign=True)
    assert (forced.add, forced.delete, forced.foreign) == ({}, [9], [])
    assert plan_templates({1: "A"}, set(), {1: "A"}).empty


def test_the_reserved_built_in_template_is_never_synced_nor_a_tenants() -> None:
    # The SMS aggregator's prepared-text template lives in our catalog but is not Optimove's.
    p = plan_templates(
        ours={1: "A", RESERVED_TEMPLATE_ID: "optibridge: prepared"}, tombstones=set(), remote={}
    )
    assert p.add == {1: "A"}
    gone = plan_templates(ours={}, tombstones={RESERVED_TEMPLATE_ID}, remote={RESERVED_TEMPLATE_ID: "x"})
    assert gone.delete == []


FILE = """+++
id = 101
name = "Welcome"
subject = "Hi [%FirstName:friend%]"
text = "Hi {{ FirstName }}"
[defaults]
Country = "FR"
+++
<p>Hello {{ FirstName }} from {{ Country }}</p>
"""


def test_template_file_front_matter_and_body() -> None:
    tf = parse_file(Path("email/welcome.html"), FILE, "email")
    assert tf.channel == "email"
    assert (tf.spec.template_id, tf.spec.name, tf.spec.subject) == (101, "Welcome", "Hi [%FirstName:friend%]")
    assert tf.spec.body == "<p>Hello {{ FirstName }} from {{ Country }}</p>"
    assert tf.spec.defaults == {"Country": "FR"}
    compiled = compile_spec("email", tf.spec)
    assert compiled.attributes == ("FirstName", "Country")
    assert compiled.render({"FirstName": "Ann"})["html"] == "<p>Hello Ann from FR</p>"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<p>no front matter</p>", "must start with a \\+\\+\\+ line"),
        ("+++\nid = 1\n", "no closing"),
        ("+++\nid = \n+++\nbody", "not valid TOML"),
        ("+++\nid = 1\nname = 'x'\ncolour = 'red'\n+++\nbody", "unknown front matter keys: colour"),
        ("+++\nid = 0\nname = 'x'\n+++\nbody", "template_id"),
        ("+++\nid = 1\nname = 'x'\n+++\n", "body"),
    ],
)
def test_bad_template_files_are_refused_naming_the_file(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        parse_file(Path("sms/t.txt"), text, "sms")
    assert "sms/t.txt" in str(info.value)


def test_folder_import_finds_channel_by_folder_and_refuses_duplicates(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "a.html").write_text(FILE)
    (tmp_path / "sms").mkdir()
    (tmp_path / "sms" / "b.txt").write_text("+++\nid = 5\nname = 'S'\n+++\nHi {{ FirstName }}")
    (tmp_path / "README.md").write_text("ignored")
    found = read_folder(tmp_path, {"email", "sms"})
    assert [(f.channel, f.spec.template_id) for f in found] == [("email", 101), ("sms", 5)]
    (tmp_path / "email" / "copy.html").write_text(FILE)
    with pytest.raises(ConfigError, match="both define template 101"):
        read_folder(tmp_path, {"email", "sms"})


def test_email_templates_need_a_subject() -> None:
    with pytest.raises(ConfigError, match="needs a subject"):
        compile_spec("email", TemplateSpec(template_id=1, name="n", body="b"))
    assert compile_spec("sms", TemplateSpec(template_id=1, name="n", body="{{ Code }}")).attributes == (
        "Code",
    )
