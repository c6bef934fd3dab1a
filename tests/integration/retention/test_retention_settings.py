"""The retention settings an operator sets: `unsubscribe_keep_days` below the legal 30 days is
refused (CAN-SPAM: an opt-out honoured 30 days after sending), and the policy takes the keep
times from the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from optibridge.core.config import Settings
from optibridge.reporting.show import counts_from_totals
from optibridge.retention.policy import RetentionPolicy

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def _settings(tmp_path: Path, **kw: float) -> Settings:
    return Settings(database_url="postgresql://x/y", data_dir=tmp_path, **kw)  # type: ignore[arg-type]


def test_unsubscribe_keep_days_below_thirty_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unsubscribe_keep_days"):
        _settings(tmp_path, unsubscribe_keep_days=29.9)
    assert _settings(tmp_path).unsubscribe_keep_days == 60
    policy = RetentionPolicy.from_settings(
        _settings(tmp_path, unsubscribe_keep_days=30, notifications_keep_days=5)
    )
    assert policy.unsubscribe_sent_after(NOW) == NOW - timedelta(days=30)
    assert policy.prune_before("unsubscribe_keys", NOW) == NOW - timedelta(days=30)
    assert policy.prune_before("notifications", NOW) == NOW - timedelta(days=5)
    assert policy.prune_before("preference_outbox", NOW) == NOW - timedelta(days=7)


def test_counts_from_totals() -> None:
    states = {"sent": 90, "failed": 4, "suppressed": 3, "expired": 1, "canceled": 2}
    events = {"opened": 30, "clicked": 8, "bounced": 2, "failed": 1, "unsubscribed": 1, "complained": 1}
    by_name = {int(m): n for m, n in counts_from_totals(states, events, "sent").items()}
    # sent, delivered, opened, clicked, unsubscribed, dropped, spam, bounced
    assert by_name == {0: 90, 1: 87, 2: 30, 3: 8, 4: 1, 5: 9, 6: 1, 9: 2}
    receipts = counts_from_totals(states, {**events, "delivered": 80}, "receipts")
    assert int(receipts[next(m for m in receipts if int(m) == 1)]) == 80
