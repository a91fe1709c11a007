"""Focus timers' data: the control request (validated here: one 400 `validation_error` rule set
for every caller) and what history and statistics answer."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

WORK_SECONDS = (60, 7200)
BREAK_SECONDS = (0, 3600)
CYCLES = (1, 12)


class FocusControl(BaseModel):
    """`start` takes the plan (bounds: work 60..7200 s, break 0..3600 s, cycles 1..12); the
    other actions take nothing else."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["start", "pause", "resume", "skip", "stop"]
    work_seconds: int | None = Field(None, ge=WORK_SECONDS[0], le=WORK_SECONDS[1])
    break_seconds: int | None = Field(None, ge=BREAK_SECONDS[0], le=BREAK_SECONDS[1])
    cycles: int | None = Field(None, ge=CYCLES[0], le=CYCLES[1])

    @model_validator(mode="after")
    def _plan_only_with_start(self) -> FocusControl:
        plan = (self.work_seconds, self.break_seconds, self.cycles)
        if self.action == "start" and None in plan:
            raise ValueError("start requires work_seconds, break_seconds and cycles")
        if self.action != "start" and any(v is not None for v in plan):
            raise ValueError(f"{self.action} takes no work_seconds, break_seconds or cycles")
        return self


class FocusSession(BaseModel):
    id: uuid.UUID
    room_id: uuid.UUID
    started_by: uuid.UUID | None
    work_seconds: int
    break_seconds: int
    cycles: int
    started_at: datetime
    ended_at: datetime | None
    end_reason: Literal["finished", "stopped"] | None
    completed_cycles: int = Field(description="work phases that ran to their end")
    minutes: float = Field(description="focus minutes credited to present members, summed")


class FocusHistory(BaseModel):
    sessions: list[FocusSession]


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100)


class DayMinutes(BaseModel):
    day: date
    minutes: float


class RoomMinutes(BaseModel):
    room_id: uuid.UUID
    name: str
    minutes: float


class FocusStats(BaseModel):
    """The caller's focus minutes over the last `days` days (UTC days)."""

    total_minutes: float
    sessions: int = Field(description="sessions with at least one credited work phase")
    days: list[DayMinutes]
    rooms: list[RoomMinutes]


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(30, ge=1, le=366)
