"""README command 1: the demo runs the whole loop and every metric Optimove receives matches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end_and_all_metrics_match(pg_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "optibridge", "demo", "--customers", "400", "--first-send", "3"],
        cwd=pg_tmp, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Every metric matches." in out
    assert "email       101" in out
    assert "sms         201" in out
    assert "push        301" in out
    mails = list((pg_tmp / ".optibridge" / "demo" / "mail").glob("*.eml"))
    assert len(mails) == 400
