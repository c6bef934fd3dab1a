"""What an operator action does to a campaign in each state (the pure part of campaigns.act)."""

from __future__ import annotations

from optibridge.campaigns import decide


def test_cancel_cancels_once_then_only_sweeps_pending_messages() -> None:
    assert decide("cancel", status="ingesting", paused=False) == "cancel"
    assert decide("cancel", status="ingested", paused=True) == "cancel"
    assert decide("cancel", status="canceled", paused=False) == "recancel"


def test_pause_and_resume_flip_the_flag_or_say_it_is_already_so() -> None:
    assert decide("pause", status="ingested", paused=False) == "pause"
    assert decide("pause", status="ingested", paused=True) == "already paused"
    assert decide("resume", status="ingesting", paused=True) == "resume"
    assert decide("resume", status="ingesting", paused=False) == "not paused"


def test_a_canceled_campaign_cannot_be_paused_or_resumed() -> None:
    assert decide("pause", status="canceled", paused=False) == "conflict"
    assert decide("resume", status="canceled", paused=True) == "conflict"


def test_a_finished_campaign_has_nothing_left_to_cancel() -> None:
    assert decide("cancel", status="ingested", paused=False, open_messages=0) == "finished"
    assert decide("cancel", status="ingested", paused=False, open_messages=3) == "cancel"
    assert decide("cancel", status="ingesting", paused=False, open_messages=0) == "cancel"  # more to come
