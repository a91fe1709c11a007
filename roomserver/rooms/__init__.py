"""Study rooms: `models.py` (what goes in and out, validated) and `service.py` (`RoomService`, the
one join and moderation policy, with all of the rooms' SQL). Import from the package."""

from roomserver.rooms.models import (
    Ban,
    Invitation,
    Participant,
    Role,
    Room,
    RoomChanges,
    RoomDraft,
    RoomFilter,
    RoomPage,
    RoomType,
)
from roomserver.rooms.service import Gate, GateValidator, RoomService, gating_requirement

__all__ = ["Ban", "Gate", "GateValidator", "Invitation", "Participant", "Role", "Room", "RoomChanges",
           "RoomDraft", "RoomFilter", "RoomPage", "RoomService", "RoomType", "gating_requirement"]
