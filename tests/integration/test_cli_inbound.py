"""The catalog and contacts commands as a user runs them, good input and bad."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from test_cli_errors import assert_one_line_error, run

WELCOME = """+++
id = 101
name = "Welcome"
subject = "Hi [%FirstName:friend%]"
+++
<p>Hello {{ FirstName }}</p>
"""


def add_tenant(env: dict[str, str]) -> None:
    proc = run(
        env, "tenants", "add", "acme", "--api-url", "http://127.0.0.1:9", "--api-key", "k",
        "--channel", "email:504", "--channel", "sms:505",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_templates_import_is_idempotent_and_queues_one_sync(
    service_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    add_tenant(service_env)
    folder = tmp_path / "templates"
    (folder / "email").mkdir(parents=True)
    (folder / "email" / "welcome.html").write_text(WELCOME)
    (folder / "sms").mkdir()
    (folder / "sms" / "code.txt").write_text("+++\nid = 7\nname = 'Code'\n+++\nYour code: {{ Code }}")
    first = run(service_env, "templates", "import", "acme", str(folder))
    assert first.returncode == 0, first.stderr
    assert "template 101 on email: added" in first.stdout
    assert "template 7 on sms: added" in first.stdout
    second = run(service_env, "templates", "import", "acme", str(folder))
    assert second.stdout.count(": unchanged") == 2
    listed = json.loads(run(service_env, "templates", "list", "acme", "--json").stdout)
    assert [(t["channel"], t["id"], t["attributes"], t["synced"]) for t in listed] == [
        ("email", 101, ["FirstName"], False),
        ("sms", 7, ["Code"], False),
    ]
    with psycopg.connect(db_url) as conn:
        jobs = conn.execute(
            "SELECT args->>'channel_name' FROM procrastinate_jobs "
            "WHERE task_name = 'optibridge.catalog.sync' ORDER BY 1"
        ).fetchall()
    assert jobs == [("email",), ("sms",)]  # one waiting sync per channel, not one per change


def test_a_broken_template_in_a_folder_imports_nothing(
    service_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    add_tenant(service_env)
    folder = tmp_path / "t"
    (folder / "email").mkdir(parents=True)
    (folder / "email" / "a.html").write_text(WELCOME)
    (folder / "email" / "b.html").write_text(
        "+++\nid = 102\nname = 'B'\nsubject = 's'\n+++\n<p>\n{% for x in y %}oops</p>"
    )
    proc = run(service_env, "templates", "import", "acme", str(folder))
    assert_one_line_error(proc, "template 102 does not parse: html, line 2")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM templates").fetchone() == (0,)


def test_template_commands_report_unknown_things_clearly(service_env: dict[str, str], tmp_path: Path) -> None:
    add_tenant(service_env)
    body = tmp_path / "b.html"
    body.write_text("<p>{{ FirstName }}</p>")
    ok = run(
        service_env, "templates", "add", "acme", "email", "--id", "5", "--name", "N", "--body", str(body),
        "--subject", "S",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    again = run(
        service_env, "templates", "add", "acme", "email", "--id", "5", "--name", "N", "--body", str(body),
        "--subject", "S",
    )  # fmt: skip
    assert_one_line_error(again, "template 5 already exists")
    assert_one_line_error(run(service_env, "templates", "rename", "acme", "email", "6", "X"), "no template 6")
    assert_one_line_error(
        run(
            service_env, "templates", "add", "acme", "fax", "--id", "1", "--name", "N", "--body", str(body)
        ),
        "has no channel 'fax'",
    )  # fmt: skip
    assert run(service_env, "templates", "rename", "acme", "email", "5", "Renamed").returncode == 0
    assert run(service_env, "templates", "delete", "acme", "email", "5").returncode == 0
    assert run(service_env, "templates", "list", "acme").stdout.strip() == ""


def test_contacts_import_reports_counts_and_refuses_bad_files(
    service_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    add_tenant(service_env)
    good = tmp_path / "good.csv"
    good.write_text("customer_id,email,phone\nC1,a@x.io,+100\nC2,b@x.io,\n")
    proc = run(service_env, "contacts", "import", "acme", str(good))
    assert proc.stdout.strip() == "2 row(s): 2 added or changed, 0 unchanged"
    bad = tmp_path / "bad.csv"
    bad.write_text("email\nx@y\n")
    assert_one_line_error(run(service_env, "contacts", "import", "acme", str(bad)), "no customer_id column")
    assert_one_line_error(run(service_env, "contacts", "import", "ghost", str(good)), "no tenant 'ghost'")
    assert_one_line_error(
        run(service_env, "contacts", "import", "acme", str(tmp_path / "nope.csv")), "cannot read"
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM contacts").fetchone() == (2,)


def test_campaign_commands_pause_resume_cancel_and_show(service_env: dict[str, str], db_url: str) -> None:
    add_tenant(service_env)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, first_event, status) "
            "VALUES ('acme', 504, 77, 'email', 1, 'ingested')"
        )
        conn.execute(
            """INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                                     scheduled_at, send_at, address, state)
               SELECT gen_random_uuid(), 'acme', 504, 77, 'C' || g, 1, now(), now(), 'a@b',
                      (CASE WHEN g <= 3 THEN 'sent' ELSE 'pending' END)::message_state
               FROM generate_series(1, 10) g"""
        )
    assert "paused" in run(service_env, "campaigns", "pause", "acme", "email", "77").stdout
    listed = run(service_env, "campaigns", "list").stdout
    assert "77" in listed
    assert "paused" in listed
    shown = run(service_env, "campaigns", "show", "acme", "email", "77").stdout
    assert "3/10 sent" in shown
    assert "resumed" in run(service_env, "campaigns", "resume", "acme", "email", "77").stdout
    out = run(service_env, "campaigns", "cancel", "acme", "email", "77").stdout
    assert "7 pending message(s) canceled" in out
    assert_one_line_error(run(service_env, "campaigns", "pause", "acme", "email", "77"), "is canceled")
    assert_one_line_error(run(service_env, "campaigns", "pause", "acme", "email", "78"), "no campaign 78")
    with psycopg.connect(db_url) as conn:
        states = dict(conn.execute("SELECT state::text, count(*) FROM messages GROUP BY 1").fetchall())
    assert states == {"sent": 3, "canceled": 7}
