"""Background work repeated on an interval: one step, its failures logged and counted, the
loop going on; `Periodic` owns the task (`start` once, `close` cancels and waits)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]


async def every(name: str, interval: float, step: Step, *, first_now: bool = False,
                on_failure: Callable[[], None] | None = None, level: int = logging.ERROR) -> None:
    """Run `step` every `interval` seconds (at once first when `first_now`), forever. A step
    that raises is logged at `level` with its traceback, counted by `on_failure`, and retried
    at the next round."""
    if not first_now:
        await asyncio.sleep(interval)
    while True:
        try:
            await step()
        except Exception:
            if on_failure is not None:
                on_failure()
            log.log(level, "%s failed; retrying in %gs", name, interval, exc_info=True)
        await asyncio.sleep(interval)


class Periodic:
    """`every(...)` as one owned task."""

    def __init__(self, name: str, interval: float, step: Step, *, first_now: bool = False,
                 on_failure: Callable[[], None] | None = None, level: int = logging.ERROR) -> None:
        self.name = name
        self._run = lambda: every(name, interval, step, first_now=first_now,
                                  on_failure=on_failure, level=level)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
