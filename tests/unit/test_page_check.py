"""Paging evidence: what a campaign's pages say about the server, read without I/O."""

from __future__ import annotations

from optibridge.intake.page_check import PageCheck


def test_consistent_pages_raise_nothing() -> None:
    check = PageCheck(top=100)
    assert [check.observe(n, n) for n in (100, 100, 37)] == [[], [], []]


def test_a_server_cap_below_top_is_noted_once() -> None:
    check = PageCheck(top=10_000)
    assert check.observe(500, 500) == []  # a short page may simply be the last
    [note] = check.observe(500, 500)
    assert "at most 500 rows a page ($top=10000)" in note
    assert check.observe(500, 500) == []
    assert check.observe(120, 120) == []


def test_a_page_larger_than_asked_and_repeated_customers_are_noted() -> None:
    check = PageCheck(top=100)
    [big] = check.observe(150, 150)
    assert big == "a page held 150 rows for $top=100"
    [repeat] = check.observe(100, 90)
    assert repeat.startswith("10 rows repeated customers already read (10 in all)")
    [again] = check.observe(100, 95)
    assert "(15 in all)" in again
