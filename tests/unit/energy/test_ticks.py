"""Tests for pytest_longeff.energy.ticks: measuring a counter's update period, waiting for a tick, the edge error
bound and the coarse-window rule, against scripted counters and clocks. Times are multiples of 1/8 s (exact in
binary), and every expected value is worked out by hand in the comments."""

from __future__ import annotations

import pytest

from pytest_longeff.energy.ticks import (
    Tick,
    UpdatePeriod,
    edge_bound_j,
    is_coarse,
    measure_update_period,
    wait_for_tick,
)


class Script:
    """A clock that moves only by ``sleep`` (by ``move_s``, or by the requested time), and a counter that adds
    ``increments[i]`` at ``ticks[i]`` (seconds after ``start_s``). Counts reads and records the sleeps."""

    def __init__(
        self,
        ticks: list[float],
        increments: list[int] | None = None,
        start_s: float = 0.0,
        move_s: float | None = None,
        fail_on_read: int | None = None,
    ) -> None:
        self.now_s, self.start_s = start_s, start_s
        self.ticks, self.increments = ticks, increments or [1] * len(ticks)
        self.move_s, self.fail_on_read = move_s, fail_on_read
        self.reads = 0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds if self.move_s is None else self.move_s

    def read(self) -> int:
        self.reads += 1
        if self.reads == self.fail_on_read:
            raise OSError("gone")
        elapsed = self.now_s - self.start_s
        return 100 + sum(inc for t, inc in zip(self.ticks, self.increments, strict=True) if t <= elapsed)


# -- measure_update_period -------------------------------------------------------------------------------------


def test_period_is_the_median_interval_and_the_bound_uses_the_longest() -> None:
    # Ticks at 0.5, 1, 1.75, 2.25, 3, 3.5 s, polled every 1/8 s: each seen at its own time. Intervals 0.5, 0.75,
    # 0.5, 0.75, 0.5 -> median 0.5, longest 0.75. The seventh tick (at 5 s) comes after the sixth change has
    # ended the polling, so it changes nothing (it would make the longest interval 1.5 s).
    s = Script([0.5, 1.0, 1.75, 2.25, 3.0, 3.5, 5.0], [3, 5, 7, 11, 13, 17, 19])
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=0.1, max_s=10.0, poll_s=0.125)
    assert found == UpdatePeriod(
        period_s=0.5,
        max_interval_s=0.75,
        increments=(5, 7, 11, 13, 17),
        measured=True,
        note="measured: median of 5 intervals between counter changes, polled every 0.125 s",
        last_tick_s=3.5,
    )
    assert s.reads == 1 + 28  # one read before polling, then one per poll up to 3.5 s
    assert set(s.sleeps) == {0.125}


def test_default_poll_is_a_twentieth_of_the_assumed_period() -> None:
    # assumed 2.5 s -> polls every 0.125 s; ticks at 1, 2, 3 s: intervals 1, 1 -> period 1 s.
    s = Script([1.0, 2.0, 3.0])
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=2.5, max_s=4.0)
    assert set(s.sleeps) == {0.125}
    assert (found.period_s, found.max_interval_s, found.increments, found.last_tick_s) == (1.0, 1.0, (1, 1), 3.0)
    assert found.note == "measured: median of 2 intervals between counter changes, polled every 0.125 s"


def test_polling_stops_after_max_s_of_clock_with_one_poll_at_the_limit() -> None:
    # max_s = 2: the poll at exactly 2 s is not past the limit, so one more poll runs, at 2.125 s, and sees the
    # third tick. Intervals 0.5 and 1.125 -> median 0.8125. A tick at 2.25 s is never seen.
    s = Script([0.5, 1.0, 2.125, 2.25], start_s=100.0)
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=0.1, max_s=2.0, poll_s=0.125)
    assert (found.measured, found.period_s, found.max_interval_s, found.last_tick_s) == (True, 0.8125, 1.125, 102.125)
    assert s.reads == 1 + 17


def test_polls_are_capped_in_number_when_the_clock_barely_moves() -> None:
    # max_s / poll_s = 4 -> at most 4 + 2 = 6 polls. The clock moves 1/1024 s per sleep, so the time limit never
    # applies; the counter gains one at 1, 3 and 5 ms (polls 1, 3, 5) and at 7 ms (poll 7, never made).
    step = 1 / 1024
    s = Script([step, 3 * step, 5 * step, 7 * step], move_s=step)
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=0.1, max_s=1.0, poll_s=0.25)
    assert s.reads == 1 + 6
    assert found.measured and found.increments == (1, 1) and found.last_tick_s == 5 * step
    assert found.period_s == found.max_interval_s == 2 * step


def test_two_changes_are_not_enough_and_the_assumed_period_says_why() -> None:
    s = Script([0.5, 1.0])
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=0.1, max_s=2.0, poll_s=0.125)
    assert found == UpdatePeriod(
        0.1, 0.1, (), False, "assumed 0.1 s: counter changed 2 time(s) in 2 s of polling", None
    )


def test_polling_lasts_two_seconds_by_default() -> None:
    # A counter that never moves, polled every 1/8 s (assumed 2.5 s / 20) for 2 s: 16 polls, then one at the limit.
    s = Script([])
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=2.5)
    assert found.note == "assumed 2.5 s: counter changed 0 time(s) in 2 s of polling"
    assert s.reads == 1 + 17


def test_a_failed_read_gives_the_assumed_period_with_the_error() -> None:
    s = Script([0.5, 1.0, 1.5, 2.0], fail_on_read=3)
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=0.25, max_s=4.0, poll_s=0.125)
    assert found == UpdatePeriod(
        0.25, 0.25, (), False, "assumed 0.25 s: counter read failed while measuring its period (gone)", None
    )


def test_a_clock_that_does_not_move_gives_the_assumed_period() -> None:
    s = Script([0.5, 1.0, 1.5], move_s=0.0)
    found = measure_update_period(s.read, s.clock, s.sleep, assumed_s=0.1, poll_s=0.125)
    note = "assumed 0.1 s: the clock did not move while sleeping (an injected clock?)"
    assert found == UpdatePeriod(0.1, 0.1, (), False, note, None)
    assert s.reads == 1


def test_describe_states_the_period_as_environment_facts() -> None:
    period = UpdatePeriod(0.1, 0.125, (3,), True, "measured", 4.0)
    assert period.describe() == {
        "counter_update_period_s": 0.1,
        "counter_update_max_interval_s": 0.125,
        "counter_update_measured": True,
        "counter_update_note": "measured",
    }


# -- wait_for_tick ---------------------------------------------------------------------------------------------


def test_wait_for_tick_returns_the_first_change_and_the_poll_interval_it_lies_in() -> None:
    # From 10 s, polled every 1/8 s: the tick at +0.375 s is seen by the third poll, 0.125 s after the second.
    s = Script([0.375, 0.5], [7, 9], start_s=10.0)
    assert wait_for_tick(s.read, s.clock, s.sleep, poll_s=0.125, max_wait_s=1.0) == Tick(10.375, 0.125, 100, 107)
    assert s.reads == 1 + 3 and set(s.sleeps) == {0.125}


def test_wait_for_tick_gives_up_one_poll_past_max_wait() -> None:
    # max_wait 0.5 s: the poll at 0.5 s is not past it, the one at 0.625 s is, but it still sees a tick there.
    s = Script([0.625])
    assert wait_for_tick(s.read, s.clock, s.sleep, poll_s=0.125, max_wait_s=0.5) == Tick(0.625, 0.125, 100, 101)
    s = Script([0.75])
    assert wait_for_tick(s.read, s.clock, s.sleep, poll_s=0.125, max_wait_s=0.5) is None
    assert s.reads == 1 + 5


def test_wait_for_tick_polls_at_most_max_wait_over_poll_plus_two_times() -> None:
    # 0.5 / 0.125 + 2 = 6 polls; the clock moves 1/1024 s per sleep, so the time limit never applies.
    s = Script([], move_s=1 / 1024)
    assert wait_for_tick(s.read, s.clock, s.sleep, poll_s=0.125, max_wait_s=0.5) is None
    assert s.reads == 1 + 6
    s = Script([6 / 1024], move_s=1 / 1024)  # seen by the sixth and last poll
    assert wait_for_tick(s.read, s.clock, s.sleep, poll_s=0.125, max_wait_s=0.5) == Tick(6 / 1024, 1 / 1024, 100, 101)


def test_wait_for_tick_is_none_for_a_frozen_clock_or_a_failed_read() -> None:
    s = Script([0.0625], move_s=0.0)  # the counter moves but the clock does not
    assert wait_for_tick(s.read, s.clock, s.sleep, poll_s=0.125, max_wait_s=1.0) is None
    assert s.reads == 2
    s = Script([0.5], fail_on_read=2)
    assert wait_for_tick(s.read, s.clock, s.sleep, poll_s=0.125, max_wait_s=1.0) is None


# -- edge bound and coarse windows -----------------------------------------------------------------------------


def test_edge_bound_is_one_longest_interval_at_the_ceiling_plus_the_resolution() -> None:
    period = UpdatePeriod(0.125, 0.25, (), True, "measured", None)
    assert edge_bound_j(300.0, period, 0.5) == 300.0 * 0.25 + 0.5  # 75.5 J: the longest interval, not the median


@pytest.mark.parametrize(("time_s", "coarse"), [(1.0, True), (1.24, True), (1.25, False), (2.0, False)])
def test_a_window_under_ten_median_periods_is_coarse(time_s: float, coarse: bool) -> None:
    period = UpdatePeriod(0.125, 0.5, (), True, "measured", None)  # 10 periods = 1.25 s; the longest is not used
    assert is_coarse(time_s, period) is coarse
