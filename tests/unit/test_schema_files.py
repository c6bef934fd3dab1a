"""Migration bookkeeping that needs no database: ordering, and which procrastinate files apply."""

from __future__ import annotations

from optibridge.store.database import redact
from optibridge.store.migrate import our_migrations, procrastinate_migrations_between


def test_our_migrations_are_ordered_and_numbered_once() -> None:
    versions = [m.version for m in our_migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    assert our_migrations()[0].name == "foundation"


def test_procrastinate_migrations_are_selected_by_version_range_in_order() -> None:
    files = [p.name for p in procrastinate_migrations_between((3, 0, 0), (3, 2, 0))]
    assert files, "procrastinate ships migrations for 3.x"
    assert all(f.startswith(("03.01.", "03.02.")) for f in files)
    assert files == sorted(files)
    assert "03.01.00_01_pre_add_heartbeat.sql" in files
    assert procrastinate_migrations_between((3, 2, 0), (3, 2, 0)) == []


def test_passwords_are_redacted_from_urls() -> None:
    assert redact("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("postgresql://bob@db/x") == "postgresql://bob@db/x"
