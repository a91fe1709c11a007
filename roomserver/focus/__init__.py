"""Shared focus timers of a room (issue 15 part 1): `clock` (pure phase arithmetic), `models`,
`service` (control, boundaries, minutes, statistics)."""

from roomserver.focus.models import FocusControl
from roomserver.focus.service import FocusService

__all__ = ["FocusControl", "FocusService"]
