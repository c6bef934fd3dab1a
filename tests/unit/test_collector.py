"""tune_collector: what the serve and worker processes do to Python's collector at start."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from optibridge.core.collector import tune_collector
from optibridge.core.config import Settings


@pytest.fixture
def restored() -> Iterator[tuple[int, int, int]]:
    """This test process's collector as it was, whatever the test did to it."""
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tuning_freezes_start_up_objects_and_raises_only_the_young_threshold(
    restored: tuple[int, int, int],
) -> None:
    gc.unfreeze()
    tune_collector(12_345)
    assert gc.get_threshold() == (12_345, restored[1], restored[2])
    assert gc.get_freeze_count() > 1000  # the imported modules' objects, never walked again


def test_zero_leaves_pythons_collector_alone(restored: tuple[int, int, int]) -> None:
    gc.unfreeze()
    tune_collector(0)
    assert gc.get_threshold() == restored
    assert gc.get_freeze_count() == 0


def test_the_setting_defaults_to_the_measured_threshold_and_refuses_a_negative_one() -> None:
    assert Settings.model_fields["gc_young_threshold"].default == 50_000
    with pytest.raises(ValueError, match="gc_young_threshold"):
        Settings(gc_young_threshold=-1)
