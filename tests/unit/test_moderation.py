"""The one table of who may remove whom (roomserver/rooms/moderation.py), every cell."""

from __future__ import annotations

import pytest

from roomserver import errors
from roomserver.rooms.moderation import MODERATORS, check_removal, is_moderator

ROLES = ("owner", "moderator", "member", None)
ALLOWED = {  # (action, actor, target) that pass; every other combination is refused
    ("kick", "owner", "moderator"), ("kick", "owner", "member"), ("kick", "moderator", "member"),
    ("ban", "owner", "moderator"), ("ban", "owner", "member"), ("ban", "moderator", "member"),
    ("ban", "owner", None), ("ban", "moderator", None),
}


@pytest.mark.parametrize("action", ["kick", "ban"])
@pytest.mark.parametrize("actor", ROLES)
@pytest.mark.parametrize("target", ROLES)
def test_every_cell_of_the_table(action: str, actor: str | None, target: str | None) -> None:
    if (action, actor, target) in ALLOWED:
        check_removal(action, actor, target, is_self=False)  # type: ignore[arg-type]
        return
    with pytest.raises(errors.RoomserverError) as refused:
        check_removal(action, actor, target, is_self=False)  # type: ignore[arg-type]
    expected = ("not_moderator" if actor not in MODERATORS
                else "owner_protected" if target == "owner"
                else "participant_not_found" if target is None
                else "owner_protected" if action == "kick" else "not_owner")
    assert refused.value.code == expected


@pytest.mark.parametrize("action", ["kick", "ban"])
@pytest.mark.parametrize("role", ["owner", "moderator"])
def test_nobody_removes_themselves(action: str, role: str) -> None:
    with pytest.raises(errors.RoomserverError) as refused:
        check_removal(action, role, role, is_self=True)  # type: ignore[arg-type]
    assert refused.value.code == ("owner_protected" if role == "owner" else "self_moderation")


def test_moderators_are_the_owner_and_moderators_only() -> None:
    assert [r for r in ROLES if is_moderator(r)] == ["owner", "moderator"]
