from optibridge.emulator.faults import FaultBook
from optibridge.emulator.limits import SlidingWindowCounter


def test_a_rule_with_times_fires_that_often_then_stops() -> None:
    book = FaultBook()
    book.add(function="GetChannelTemplates", status_codes=(500,), times=2)
    statuses = [book.decide("getchanneltemplates", "t", 0.0).status for _ in range(4)]
    assert statuses == [500, 500, None, None]


def test_a_rule_with_a_duration_expires() -> None:
    book = FaultBook()
    book.add(status_codes=(429,), duration_s=5.0, retry_after_s=2.0, now=100.0)
    decision = book.decide("AnyThing", None, 104.9)
    assert (decision.status, decision.retry_after_s) == (429, 2.0)
    assert book.decide("AnyThing", None, 105.0).status is None


def test_rules_match_function_case_insensitively_and_by_tenant() -> None:
    book = FaultBook()
    book.add(function="AddChannelTemplates", tenant_id="a", status_codes=(503,))
    assert book.decide("addchanneltemplates", "a", 0).status == 503
    assert book.decide("addchanneltemplates", "b", 0).status is None
    assert book.decide("GetChannelTemplates", "a", 0).status is None


def test_error_rate_is_seeded_so_a_run_can_be_repeated() -> None:
    def run(seed: int) -> list[int | None]:
        book = FaultBook(seed)
        book.add(status_codes=(500, 502, 503), probability=0.3)
        return [book.decide("f", None, 0).status for _ in range(200)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    errors = [s for s in first if s is not None]
    assert 40 <= len(errors) <= 80
    assert set(errors) == {500, 502, 503}


def test_latency_adds_up_across_rules_without_an_error() -> None:
    book = FaultBook()
    book.add(latency_s=0.1)
    book.add(function="f", latency_s=0.2)
    decision = book.decide("f", None, 0)
    assert decision.status is None
    assert abs(decision.latency_s - 0.3) < 1e-9
    assert decision.rule_ids == [1, 2]
    assert book.remove(1)
    assert not book.remove(1)


def test_window_counter_refuses_past_the_limit_and_says_when_to_return() -> None:
    counter = SlidingWindowCounter(2, 10.0)
    assert counter.hit(0.0) is None
    assert counter.hit(4.0) is None
    assert counter.hit(5.0) == 5.0
    assert counter.hit(10.0) is None  # the hit at 0 left the window
    assert counter.hit(11.0) == 3.0  # refused hits are not counted
