"""`optibridge demo --event14`: the e-mail campaign comes by the webhook and Avro files in a GCS
emulator, and every metric the emulator receives still matches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_with_event_14_runs_and_all_metrics_match(pg_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "optibridge", "demo", "--customers", "400", "--first-send", "3", "--event14"],
        cwd=pg_tmp, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "e-mail campaign by event 14: 1 Avro file(s) in GCS" in out
    assert "Every metric matches." in out
    assert "email       101" in out
    mails = list((pg_tmp / ".optibridge" / "demo" / "mail").glob("*.eml"))
    assert len(mails) == 400
