"""The health verdict: which combinations of probe results are healthy, and what is said."""

from __future__ import annotations

from optibridge.web.health import Probe, assess


def test_all_well_is_200_with_both_parts_ok() -> None:
    code, body = assess(
        Probe(db_ok=True, engine_schema=True, live_workers=2, server_version="18.1"),
        embedded=True,
        expect_workers=True,
    )
    assert code == 200
    assert body["status"] == "ok"
    assert body["database"]["ok"]
    assert body["database"]["embedded"]
    assert body["job_engine"] == {
        "ok": True,
        "workers": 2,
        "jobs": {"todo": 0, "doing": 0, "failed": 0},
        "last_tick": None,
    }


def test_database_down_is_503_and_engine_down_too() -> None:
    code, body = assess(Probe(db_ok=False, db_error="refused"), embedded=False, expect_workers=True)
    assert code == 503
    assert body["database"] == {"ok": False, "embedded": False, "error": "refused"}
    assert body["job_engine"]["ok"] is False


def test_no_live_worker_is_503_when_workers_are_expected() -> None:
    probe = Probe(db_ok=True, engine_schema=True, live_workers=0)
    code, body = assess(probe, embedded=True, expect_workers=True)
    assert code == 503
    assert "no worker heartbeat" in body["job_engine"]["error"]
    code, _ = assess(probe, embedded=True, expect_workers=False)
    assert code == 200


def test_missing_job_tables_is_503_with_the_fix() -> None:
    code, body = assess(Probe(db_ok=True, engine_schema=False), embedded=True, expect_workers=False)
    assert code == 503
    assert "db upgrade" in body["job_engine"]["error"]
