"""Splitting writes to the API's per-call limits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Final, TypeVar

T = TypeVar("T")

# Per-call limits from the reference (optimove-api.md §6, §9, §13).
MAX_ITEMS_PER_CALL: Final = 100
MAX_INTERACTION_CUSTOMERS: Final = 10_000
MAX_PREFERENCE_CUSTOMERS: Final = 50_000


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items, in order; nothing for an empty input."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    if isinstance(items, Sequence):
        for start in range(0, len(items), size):
            yield list(items[start : start + size])
        return
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
