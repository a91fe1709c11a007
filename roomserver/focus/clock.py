"""The focus timer's phase arithmetic: pure functions of a stored timer and an instant.

A timer is a plan (work and break lengths, cycles) laid on a timeline from `anchor`: cycle n
(1-based) is a work phase then a break, except the last cycle, which has no break; after it the
timer is idle. The timeline's position at instant `t` is `(paused_at or t) - anchor`, so a paused
timer stands still and every reader (any node, any late joiner) computes the same phase from the
same stored row. Changes move the anchor: resume shifts it by the pause's length (the remaining
time is preserved), skip puts the position at the next phase's start.

Segments are numbered 0, 1, 2, ...: even ones are work (cycle k // 2 + 1), odd ones breaks;
`segment_count(plan)` (= 2 * cycles - 1) is the idle segment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

Phase = Literal["work", "break", "paused", "idle"]


@dataclass(frozen=True)
class Plan:
    work_seconds: int
    break_seconds: int
    cycles: int


@dataclass(frozen=True)
class Timer:
    plan: Plan
    anchor: datetime
    paused_at: datetime | None = None


@dataclass(frozen=True)
class View:
    """What `view` computes: the wire's `focus_state` fields plus the segment index."""

    phase: Phase
    segment: int
    started_at: datetime
    ends_at: datetime | None
    paused_remaining: float | None
    cycle: int
    cycles: int


def segment_count(plan: Plan) -> int:
    return 2 * plan.cycles - 1


def segment_start(plan: Plan, k: int) -> float:
    """Seconds from the anchor to the start of segment `k` (the idle one: the total length)."""
    return (k // 2) * (plan.work_seconds + plan.break_seconds) + (k % 2) * plan.work_seconds


def segment_length(plan: Plan, k: int) -> float:
    return plan.work_seconds if k % 2 == 0 else plan.break_seconds


def position(timer: Timer, at: datetime) -> float:
    """Seconds of the timeline elapsed at `at` (frozen while paused)."""
    return ((timer.paused_at or at) - timer.anchor).total_seconds()


def segment_at(plan: Plan, elapsed: float) -> int:
    """The segment containing `elapsed` seconds: segment k holds [start(k), start(k+1));
    before 0 is segment 0, from the total length on the idle segment."""
    period = plan.work_seconds + plan.break_seconds
    k = 2 * int(max(elapsed, 0) // period)
    if elapsed >= segment_start(plan, k) + plan.work_seconds:
        k += 1
    return min(k, segment_count(plan))


def view(timer: Timer, at: datetime) -> View:
    """The timer's phase at `at`."""
    plan = timer.plan
    elapsed = position(timer, at)
    k = segment_at(plan, elapsed)
    started = timer.anchor + timedelta(seconds=segment_start(plan, k))
    cycle = min(k // 2 + 1, plan.cycles)
    if k == segment_count(plan):
        return View("idle", k, started, None, None, cycle, plan.cycles)
    ends = started + timedelta(seconds=segment_length(plan, k))
    if timer.paused_at is not None:
        remaining = segment_start(plan, k + 1) - elapsed
        return View("paused", k, started, None, remaining, cycle, plan.cycles)
    return View("work" if k % 2 == 0 else "break", k, started, ends, None, cycle, plan.cycles)


def pause(timer: Timer, at: datetime) -> Timer:
    return timer if timer.paused_at is not None else replace(timer, paused_at=at)


def resume(timer: Timer, at: datetime) -> Timer:
    """Shift the anchor by the pause's length: the remaining time is what it was at the pause."""
    if timer.paused_at is None:
        return timer
    return Timer(timer.plan, timer.anchor + (at - timer.paused_at), None)


def skip(timer: Timer, at: datetime) -> Timer:
    """Move to the start of the next segment (the idle one after the last work phase); a paused
    timer stays paused, at the next phase's full length."""
    plan = timer.plan
    k = segment_at(plan, position(timer, at))
    target = segment_start(plan, min(k + 1, segment_count(plan)))
    now = timer.paused_at or at
    return replace(timer, anchor=now - timedelta(seconds=target))


def completed_work(plan: Plan, before: int, after: int) -> list[int]:
    """The cycles (1-based) whose work phase ended between segment `before` and `after`."""
    return [k // 2 + 1 for k in range(before, min(after, segment_count(plan))) if k % 2 == 0]
