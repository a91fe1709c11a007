"""Token/NFT gating applied to rooms: the `gate` and `gate_validator` RoomService plugs in."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from roomserver import errors
from roomserver.gating.gatekeeper import Decision, Gate, Gatekeeper
from roomserver.rooms import Room


def gate_of(room_type: str, address: str | None, min_amount: Decimal | None) -> Gate | None:
    if room_type == "token_gated" and address:
        return Gate("token", address, min_amount)
    if room_type == "nft_gated" and address:
        return Gate("nft", address)
    return None


def room_gate(room: Room) -> Gate | None:
    address = room.access_token_mint if room.room_type == "token_gated" else room.access_nft_collection
    amount = Decimal(room.min_token_amount) if room.min_token_amount is not None else None
    return gate_of(room.room_type, address, amount)


def refusal(decision: Decision) -> errors.Forbidden:
    return errors.Forbidden(decision.message, code=decision.code or "forbidden", details=decision.details)


class RoomGates:
    """Joins to gated rooms ask the ledger; room creation validates the mint or collection."""

    def __init__(self, gatekeeper: Gatekeeper):
        self.gatekeeper = gatekeeper

    async def check_join(self, wallet_address: str, room: Room) -> datetime | None:
        """When the chain was read for the (possibly cached) decision that admits the wallet;
        raises the refusal (403) or Unavailable (503)."""
        gate = room_gate(room)
        if gate is None:
            return None
        decision = await self.gatekeeper.check(wallet_address, gate)
        if not decision.allowed:
            raise refusal(decision)
        return datetime.fromtimestamp(decision.checked_at, UTC) if decision.checked_at else None

    async def validate(self, room_type: str, address: str, min_amount: Decimal | None) -> None:
        gate = gate_of(room_type, address, min_amount)
        if gate is not None:
            await self.gatekeeper.validate_gate(gate)
