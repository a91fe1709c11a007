"""The focus timer's pure phase arithmetic (roomserver.focus.clock), by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from roomserver.focus import clock
from roomserver.focus.clock import Plan, Timer

T0 = datetime(2026, 1, 1, tzinfo=UTC)

plans = st.builds(Plan, st.integers(60, 7200), st.integers(0, 3600), st.integers(1, 12))
offsets = st.floats(min_value=-100, max_value=200_000, allow_nan=False)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def total(plan: Plan) -> int:
    return plan.cycles * plan.work_seconds + (plan.cycles - 1) * plan.break_seconds


@given(plans, offsets)
def test_phases_partition_time(plan: Plan, t: float) -> None:
    """Every instant lies in exactly one segment, and that segment's span contains it."""
    v = clock.view(Timer(plan, T0), at(t))
    if t >= total(plan):
        assert v.phase == "idle" and v.ends_at is None and v.cycle == plan.cycles
        return
    assert v.phase in ("work", "break")
    assert v.ends_at is not None
    assert v.started_at <= at(t) < v.ends_at or t < 0
    assert (v.phase == "work") == (v.segment % 2 == 0)
    assert v.cycle == v.segment // 2 + 1
    assert v.paused_remaining is None


@given(plans, st.integers(0, 22))
def test_segments_follow_each_other(plan: Plan, k: int) -> None:
    """Each segment ends where the next begins; the last work phase is followed by idle."""
    if k >= clock.segment_count(plan):
        return
    end = clock.segment_start(plan, k) + clock.segment_length(plan, k)
    assert clock.segment_start(plan, k + 1) == end
    next_view = clock.view(Timer(plan, T0), at(end))
    expected = k + 1 if plan.break_seconds or k % 2 else k + 2  # a zero-length break is passed over
    assert next_view.segment == min(expected, clock.segment_count(plan))


@given(plans, st.floats(0, 100_000, allow_nan=False), st.floats(0, 100_000, allow_nan=False),
       st.floats(0, 50_000, allow_nan=False))
def test_pause_resume_preserves_remaining(plan: Plan, t: float, paused_for: float, later: float) -> None:
    running = Timer(plan, T0)
    before = clock.view(running, at(t))
    paused = clock.pause(running, at(t))
    frozen = clock.view(paused, at(t + paused_for))
    if before.phase == "idle":
        assert frozen.phase == "idle"
        return
    assert before.ends_at is not None
    remaining = (before.ends_at - at(t)).total_seconds()
    assert frozen.phase == "paused" and frozen.ends_at is None
    assert abs((frozen.paused_remaining or 0) - remaining) < 1e-3
    assert clock.view(paused, at(t + paused_for + later)) == frozen  # paused: time stands still
    resumed = clock.view(clock.resume(paused, at(t + paused_for)), at(t + paused_for))
    assert resumed.phase == before.phase and resumed.segment == before.segment
    assert resumed.ends_at is not None
    assert abs((resumed.ends_at - at(t + paused_for)).total_seconds() - remaining) < 1e-3


@given(plans, st.floats(0, 100_000, allow_nan=False))
def test_skip_moves_to_the_next_phase(plan: Plan, t: float) -> None:
    timer = Timer(plan, T0)
    before = clock.view(timer, at(t))
    after = clock.view(clock.skip(timer, at(t)), at(t))
    if before.phase == "idle":
        assert after.phase == "idle"
        return
    assert after.segment > before.segment
    assert after.segment == before.segment + 1 or plan.break_seconds == 0
    assert after.started_at == at(t)  # the next phase starts now, at its full length
    if after.phase != "idle":
        assert after.ends_at == at(t) + timedelta(seconds=clock.segment_length(plan, after.segment))


@given(plans, st.floats(0, 100_000, allow_nan=False))
def test_skip_while_paused_stays_paused_at_full_length(plan: Plan, t: float) -> None:
    paused = clock.pause(Timer(plan, T0), at(t))
    after = clock.view(clock.skip(paused, at(t + 5)), at(t + 10))
    if after.phase != "idle":
        assert after.phase == "paused"
        assert after.paused_remaining == clock.segment_length(plan, after.segment)


@given(plans)
def test_the_last_cycle_ends_idle(plan: Plan) -> None:
    last_work = clock.segment_count(plan) - 1
    start = clock.segment_start(plan, last_work)
    in_last = clock.view(Timer(plan, T0), at(start))
    assert in_last.phase == "work" and in_last.cycle == plan.cycles
    assert in_last.ends_at == at(total(plan))
    done = clock.view(Timer(plan, T0), at(total(plan)))
    assert done.phase == "idle" and done.started_at == at(total(plan)) and done.cycle == plan.cycles


@given(plans, st.integers(0, 22), st.integers(0, 22))
def test_completed_work_counts_each_work_phase_once(plan: Plan, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    mid = (lo + hi) // 2
    whole = clock.completed_work(plan, lo, hi)
    assert whole == clock.completed_work(plan, lo, mid) + clock.completed_work(plan, mid, hi)
    assert all(1 <= c <= plan.cycles for c in whole) and len(set(whole)) == len(whole)
