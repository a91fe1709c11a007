"""Who may remove whom from a room: the one table. Pure, no I/O.

Roles are `owner`, `moderator`, `member`; a target who is not a member has role None.

| actor \\ target | owner | moderator | member | not a member |
|----------------|-------|-----------|--------|--------------|
| owner          | no    | kick, ban | kick, ban | ban       |
| moderator      | no    | no        | kick, ban | ban       |
| member         | no    | no        | no     | no           |

Nobody removes themselves this way (leaving is `RoomService.leave`); a kick needs a current
member (it closes sockets), a ban does not (it also keeps a non-member out). Leaving, closing
the room and the gate's re-check are not a person's decision about another and are not here.
"""

from __future__ import annotations

from typing import Literal

from roomserver import errors

Action = Literal["kick", "ban"]
MODERATORS = frozenset({"owner", "moderator"})
"""The roles that moderate a room (pin, delete others' messages, kick, ban, invite)."""
MAY_REMOVE: dict[str, frozenset[str]] = {
    "owner": frozenset({"moderator", "member"}),
    "moderator": frozenset({"member"}),
}
"""actor role -> the member roles it may kick or ban."""
_REFUSED = {"kick": ("you cannot kick this member", "owner_protected"),
            "ban": ("only the owner can ban a moderator", "not_owner")}


def is_moderator(role: str | None) -> bool:
    return role in MODERATORS


def check_removal(action: Action, actor_role: str | None, target_role: str | None, *,
                  is_self: bool) -> None:
    """Return if an actor with `actor_role` may `action` a target with `target_role`;
    else raise the typed refusal (403 not_moderator / owner_protected / not_owner,
    409 self_moderation, 404 participant_not_found for a kick of a non-member)."""
    if not is_moderator(actor_role):
        raise errors.Forbidden("only the room's owner or a moderator can do this", code="not_moderator")
    if target_role == "owner":
        raise errors.Forbidden(f"the owner cannot be {'kicked' if action == 'kick' else 'banned'}",
                               code="owner_protected")
    if is_self:
        raise errors.Conflict(f"you cannot {action} yourself", code="self_moderation")
    if target_role is None:
        if action == "kick":
            raise errors.NotFound("that user is not a member of this room", code="participant_not_found")
        return
    assert actor_role is not None
    if target_role not in MAY_REMOVE[actor_role]:
        message, code = _REFUSED[action]
        raise errors.Forbidden(message, code=code)
