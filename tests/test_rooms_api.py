"""Rooms over real HTTP: the whole lifecycle, the join policy, and every bad input's typed error."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from roomserver.chain import dev
from roomserver.config import Settings
from roomserver.identity.wallet import Wallet
from roomserver.ledger.process import LedgerProcess
from tests.clients import SignedInUser, sign_in

MINT = "So11111111111111111111111111111111111111112"  # shape-valid; only for bodies refused before the ledger is asked


@pytest.fixture(scope="module")
def settings(settings: Settings, ledger: LedgerProcess) -> Settings:
    """The shared settings, with the app pointed at the test ledger (gated rooms validate there)."""
    return dataclasses.replace(settings, solana_rpc_url=ledger.url)


@pytest.fixture(scope="module")
async def token_mint(rpc: AsyncClient, payer: Keypair) -> str:
    return str(await dev.create_mint(rpc, payer, 2))


@pytest.fixture(scope="module")
async def collection(rpc: AsyncClient, payer: Keypair) -> str:
    return str(await dev.create_collection(rpc, payer, "Rooms", "ROOM", "u"))


async def create(http: httpx.AsyncClient, user: SignedInUser, **body: Any) -> dict[str, Any]:
    body.setdefault("room_type", "public")
    body.setdefault("name", f"room {uuid.uuid4().hex[:6]}")
    answer = await http.post("/api/v1/rooms", json=body, headers=user.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def error_of(answer: httpx.Response, status: int) -> str:
    """The typed error's code, after checking the status and the envelope's shape."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    return str(error["code"])


async def join(http: httpx.AsyncClient, user: SignedInUser, room_id: str) -> httpx.Response:
    return await http.post(f"/api/v1/rooms/{room_id}/join", headers=user.headers)


async def members(http: httpx.AsyncClient, user: SignedInUser, room_id: str) -> dict[str, str]:
    answer = await http.get(f"/api/v1/rooms/{room_id}/participants", headers=user.headers)
    assert answer.status_code == 200, answer.text
    return {p["user_id"]: p["role"] for p in answer.json()["participants"]}


async def test_create_each_type_and_read_it_back(http: httpx.AsyncClient, token_mint: str,
                                                 collection: str) -> None:
    owner = await sign_in(http)
    public = await create(http, owner, name="Biology 101", description="cells", topic="biology",
                          tags=["Bio", "cells", "bio"], max_participants=12)
    assert uuid.UUID(public["id"]) and public["owner_id"] == owner.user_id
    assert public["tags"] == ["bio", "cells"] and public["max_participants"] == 12
    assert public["participant_count"] == 1 and public["my_role"] == "owner"
    assert public["is_active"] is True and public["closed_at"] is None

    private = await create(http, owner, room_type="private")
    token = await create(http, owner, room_type="token_gated", access_token_mint=token_mint,
                         min_token_amount=100)
    nft = await create(http, owner, room_type="nft_gated", access_nft_collection=collection)
    assert private["room_type"] == "private"
    assert (token["access_token_mint"], token["min_token_amount"]) == (token_mint, "100")
    assert nft["access_nft_collection"] == collection and nft["min_token_amount"] is None

    got = await http.get(f"/api/v1/rooms/{public['id']}", headers=owner.headers)
    assert got.status_code == 200 and got.json() == public
    assert await members(http, owner, public["id"]) == {owner.user_id: "owner"}


async def test_list_filters_and_cursor_pagination(http: httpx.AsyncClient, collection: str) -> None:
    owner, other = await sign_in(http), await sign_in(http)
    tag = f"t{uuid.uuid4().hex[:8]}"
    made = [await create(http, owner, name=f"Algebra night {i}", tags=[tag]) for i in range(5)]
    await create(http, owner, name="Chemistry", tags=[tag], room_type="nft_gated",
                 access_nft_collection=collection)

    seen: list[str] = []
    cursor = None
    for _ in range(4):
        params = {"tag": tag, "room_type": "public", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/api/v1/rooms", params=params, headers=other.headers)).json()
        seen += [r["id"] for r in page["rooms"]]
        assert all(r["participant_count"] == 1 for r in page["rooms"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in reversed(made)], "newest first, each room exactly once"

    found = await http.get("/api/v1/rooms", params={"q": "ALGEBRA NIGHT 3", "tag": tag},
                           headers=other.headers)
    assert [r["id"] for r in found.json()["rooms"]] == [made[3]["id"]]
    gated = await http.get("/api/v1/rooms", params={"room_type": "nft_gated", "tag": tag},
                           headers=other.headers)
    assert [r["name"] for r in gated.json()["rooms"]] == ["Chemistry"]

    assert (await join(http, other, made[1]["id"])).status_code == 200
    mine = await http.get("/api/v1/rooms", params={"mine": "true"}, headers=other.headers)
    assert [r["id"] for r in mine.json()["rooms"]] == [made[1]["id"]]
    assert mine.json()["rooms"][0]["participant_count"] == 2
    assert mine.json()["rooms"][0]["my_role"] == "member"

    await http.delete(f"/api/v1/rooms/{made[0]['id']}", headers=owner.headers)
    open_ids = {r["id"] for r in (await http.get("/api/v1/rooms", params={"tag": tag},
                                                 headers=other.headers)).json()["rooms"]}
    all_ids = {r["id"] for r in (await http.get(
        "/api/v1/rooms", params={"tag": tag, "include_closed": "true"}, headers=other.headers)).json()["rooms"]}
    assert made[0]["id"] not in open_ids and made[0]["id"] in all_ids


async def test_private_room_is_hidden_and_joinable_only_by_invitation(http: httpx.AsyncClient) -> None:
    owner, guest, stranger = await sign_in(http), await sign_in(http), await sign_in(http)
    tag = f"p{uuid.uuid4().hex[:8]}"
    room = await create(http, owner, room_type="private", tags=[tag])
    path = f"/api/v1/rooms/{room['id']}"

    assert error_of(await http.get(path, headers=stranger.headers), 404) == "room_not_found"
    assert error_of(await join(http, stranger, room["id"]), 404) == "room_not_found"
    listed = await http.get("/api/v1/rooms", params={"tag": tag}, headers=stranger.headers)
    assert listed.json()["rooms"] == []
    assert error_of(await http.post(f"{path}/invitations", json={"user_id": owner.user_id},
                                    headers=stranger.headers), 404) == "room_not_found"

    invited = await http.post(f"{path}/invitations", json={"wallet_address": guest.wallet.address},
                              headers=owner.headers)
    assert invited.status_code == 201, invited.text
    assert invited.json()["user_id"] == guest.user_id
    assert (await http.get(path, headers=guest.headers)).json()["my_role"] is None
    assert error_of(await http.get(f"{path}/participants", headers=guest.headers), 403) == "not_member"
    assert (await join(http, guest, room["id"])).status_code == 200
    assert await members(http, guest, room["id"]) == {owner.user_id: "owner", guest.user_id: "member"}

    # An invitation admits once: after leaving, a new one is needed.
    assert (await http.post(f"{path}/leave", headers=guest.headers)).json() == {"left": True}
    assert error_of(await join(http, guest, room["id"]), 403) == "not_invited"
    unknown_wallet = {"wallet_address": Wallet.generate().address}
    assert error_of(await http.post(f"{path}/invitations", json=unknown_wallet,
                                    headers=owner.headers), 404) == "user_not_found"


async def test_update_and_close_by_the_owner_only(http: httpx.AsyncClient) -> None:
    owner, member = await sign_in(http), await sign_in(http)
    room = await create(http, owner, max_participants=5)
    path = f"/api/v1/rooms/{room['id']}"
    await join(http, member, room["id"])

    changed = await http.patch(path, json={"name": "Renamed", "tags": ["x"], "topic": None,
                                           "max_participants": 2}, headers=owner.headers)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["tags"], body["topic"], body["max_participants"]) == ("Renamed", ["x"], None, 2)
    assert error_of(await http.patch(path, json={"name": "Mine now"}, headers=member.headers),
                    403) == "not_owner"
    assert error_of(await http.patch(path, json={"max_participants": 2 - 1}, headers=owner.headers),
                    400) == "validation_error"
    assert error_of(await http.patch(path, json={"room_type": "private"}, headers=owner.headers),
                    400) == "validation_error"
    assert error_of(await http.delete(path, headers=member.headers), 403) == "not_owner"

    closed = await http.delete(path, headers=owner.headers)
    assert closed.status_code == 200 and closed.json()["is_active"] is False
    assert closed.json()["closed_at"] is not None
    latecomer = await sign_in(http)
    assert error_of(await join(http, latecomer, room["id"]), 403) == "room_closed"
    assert error_of(await join(http, member, room["id"]), 403) == "room_closed"
    assert error_of(await http.patch(path, json={"name": "again"}, headers=owner.headers),
                    403) == "room_closed"


async def test_max_participants_cannot_drop_below_members(http: httpx.AsyncClient) -> None:
    owner, a, b = await sign_in(http), await sign_in(http), await sign_in(http)
    room = await create(http, owner, max_participants=3)
    await join(http, a, room["id"])
    await join(http, b, room["id"])
    shrink = await http.patch(f"/api/v1/rooms/{room['id']}", json={"max_participants": 2},
                              headers=owner.headers)
    assert error_of(shrink, 409) == "below_member_count"
    assert shrink.json()["error"]["details"]["participant_count"] == 3


async def test_join_leave_and_participants(http: httpx.AsyncClient) -> None:
    owner, member = await sign_in(http), await sign_in(http)
    room = await create(http, owner)
    path = f"/api/v1/rooms/{room['id']}"

    joined = await join(http, member, room["id"])
    assert joined.status_code == 200
    assert (joined.json()["role"], joined.json()["wallet_address"]) == ("member", member.wallet.address)
    again = await join(http, member, room["id"])
    assert again.json()["joined_at"] == joined.json()["joined_at"], "joining twice changes nothing"
    assert (await http.get(path, headers=member.headers)).json()["participant_count"] == 2

    assert (await http.post(f"{path}/leave", headers=member.headers)).status_code == 200
    assert await members(http, owner, room["id"]) == {owner.user_id: "owner"}
    assert error_of(await http.post(f"{path}/leave", headers=member.headers), 409) == "not_member"
    assert error_of(await http.post(f"{path}/leave", headers=owner.headers), 409) == "owner_cannot_leave"
    assert (await join(http, member, room["id"])).status_code == 200


async def test_roles_and_bans(http: httpx.AsyncClient) -> None:
    owner, mod, mod2, member = [await sign_in(http) for _ in range(4)]
    room = await create(http, owner)
    path = f"/api/v1/rooms/{room['id']}"
    for user in (mod, mod2, member):
        assert (await join(http, user, room["id"])).status_code == 200

    def role_url(user: SignedInUser) -> str:
        return f"{path}/participants/{user.user_id}/role"

    for user in (mod, mod2):
        promoted = await http.put(role_url(user), json={"role": "moderator"}, headers=owner.headers)
        assert promoted.status_code == 200 and promoted.json()["role"] == "moderator"
    assert error_of(await http.put(role_url(member), json={"role": "moderator"}, headers=mod.headers),
                    403) == "not_owner"
    assert error_of(await http.put(role_url(owner), json={"role": "member"}, headers=owner.headers),
                    403) == "owner_protected"
    assert error_of(await http.put(role_url(member), json={"role": "owner"}, headers=owner.headers),
                    400) == "validation_error"

    def ban(target: SignedInUser, by: SignedInUser, reason: str | None = None) -> Any:
        return http.post(f"{path}/bans", json={"user_id": target.user_id, "reason": reason},
                         headers=by.headers)

    assert error_of(await ban(owner, mod), 403) == "owner_protected"
    assert error_of(await ban(mod2, mod), 403) == "not_owner"
    assert error_of(await ban(mod, member), 403) == "not_moderator"

    banned = await ban(member, mod, "spam")
    assert banned.status_code == 201 and banned.json()["banned_by"] == mod.user_id
    assert member.user_id not in await members(http, owner, room["id"])
    refused = await join(http, member, room["id"])
    assert error_of(refused, 403) == "banned" and refused.json()["error"]["details"]["reason"] == "spam"

    assert (await ban(mod2, owner)).status_code == 201, "the owner may ban a moderator"
    assert error_of(await join(http, mod2, room["id"]), 403) == "banned"

    unban = await http.delete(f"{path}/bans/{member.user_id}", headers=mod.headers)
    assert unban.status_code == 200 and unban.json() == {"unbanned": True}
    rejoined = await join(http, member, room["id"])
    assert rejoined.status_code == 200 and rejoined.json()["role"] == "member"
    assert error_of(await http.delete(f"{path}/bans/{member.user_id}", headers=mod.headers),
                    404) == "ban_not_found"

    demoted = await http.put(role_url(mod), json={"role": "member"}, headers=owner.headers)
    assert demoted.json()["role"] == "member"
    assert error_of(await ban(member, mod), 403) == "not_moderator"


async def test_the_last_seat_goes_to_exactly_one_of_two_concurrent_joins(http: httpx.AsyncClient) -> None:
    owner = await sign_in(http)
    for _ in range(5):
        room = await create(http, owner, max_participants=2)
        a, b = await sign_in(http), await sign_in(http)
        answers = await asyncio.gather(join(http, a, room["id"]), join(http, b, room["id"]))
        assert sorted(r.status_code for r in answers) == [200, 403]
        loser = next(r for r in answers if r.status_code == 403)
        assert loser.json()["error"]["code"] == "room_full"
        assert len(await members(http, owner, room["id"])) == 2


async def test_a_crowd_fills_a_room_exactly(http: httpx.AsyncClient) -> None:
    owner = await sign_in(http)
    room = await create(http, owner, max_participants=5)
    crowd = [await sign_in(http) for _ in range(12)]
    answers = await asyncio.gather(*(join(http, user, room["id"]) for user in crowd))
    assert sorted(r.status_code for r in answers) == [200] * 4 + [403] * 8
    got = await http.get(f"/api/v1/rooms/{room['id']}", headers=owner.headers)
    assert got.json()["participant_count"] == 5


async def test_bad_room_bodies_get_typed_errors(http: httpx.AsyncClient) -> None:
    user = await sign_in(http)

    def post(body: Any) -> Any:
        return http.post("/api/v1/rooms", json=body, headers=user.headers)

    bad_json = await http.post("/api/v1/rooms", content=b'{"name": ', headers=user.headers)
    assert error_of(bad_json, 400) == "invalid_json"
    cases = [
        {"room_type": "public"},
        {"name": "", "room_type": "public"},
        {"name": "x", "room_type": "secret"},
        {"name": "x", "room_type": "token_gated"},
        {"name": "x", "room_type": "token_gated", "access_token_mint": MINT},
        {"name": "x", "room_type": "token_gated", "access_token_mint": MINT, "min_token_amount": -5},
        {"name": "x", "room_type": "token_gated", "access_token_mint": MINT, "min_token_amount": 0},
        {"name": "x", "room_type": "token_gated", "access_token_mint": "not-base58!", "min_token_amount": 1},
        {"name": "x", "room_type": "nft_gated"},
        {"name": "x", "room_type": "nft_gated", "access_nft_collection": "1111"},
        {"name": "x", "room_type": "public", "access_token_mint": MINT},
        {"name": "x", "room_type": "public", "max_participants": 1},
        {"name": "x", "room_type": "public", "max_participants": 10001},
        {"name": "x", "room_type": "public", "tags": ["a"] * 11},
        {"name": "x", "room_type": "public", "owner_id": user.user_id},
        ["not", "an", "object"],
    ]
    for body in cases:
        answer = await post(body)
        assert error_of(answer, 400) == "validation_error", body
        assert answer.json()["error"]["details"]["errors"], body
    missing = (await post({"room_type": "public"})).json()["error"]["details"]["errors"]
    assert missing[0]["field"] == "name"


async def test_bad_ids_queries_and_sessions(http: httpx.AsyncClient) -> None:
    user = await sign_in(http)
    room = await create(http, user)
    for path in ("/api/v1/rooms/not-a-uuid", f"/api/v1/rooms/{uuid.uuid4()}",
                 "/api/v1/rooms/not-a-uuid/participants"):
        assert error_of(await http.get(path, headers=user.headers), 404) == "room_not_found"
    assert error_of(await http.post("/api/v1/rooms/123/join", headers=user.headers), 404) == "room_not_found"
    role = await http.put(f"/api/v1/rooms/{room['id']}/participants/nobody/role",
                          json={"role": "member"}, headers=user.headers)
    assert error_of(role, 404) == "user_not_found"
    stranger_role = await http.put(f"/api/v1/rooms/{room['id']}/participants/{uuid.uuid4()}/role",
                                   json={"role": "member"}, headers=user.headers)
    assert error_of(stranger_role, 404) == "participant_not_found"
    ban = await http.post(f"/api/v1/rooms/{room['id']}/bans", json={"user_id": "nobody"},
                          headers=user.headers)
    assert error_of(ban, 400) == "validation_error"
    ghost = await http.post(f"/api/v1/rooms/{room['id']}/bans", json={"user_id": str(uuid.uuid4())},
                            headers=user.headers)
    assert error_of(ghost, 404) == "user_not_found"
    both = await http.post(f"/api/v1/rooms/{room['id']}/invitations",
                           json={"user_id": user.user_id, "wallet_address": user.wallet.address},
                           headers=user.headers)
    assert error_of(both, 400) == "validation_error"

    for params in ({"limit": 0}, {"limit": 101}, {"room_type": "secret"}, {"mine": "perhaps"}):
        assert error_of(await http.get("/api/v1/rooms", params=params, headers=user.headers),
                        400) == "validation_error", params
    bad_cursor = await http.get("/api/v1/rooms", params={"cursor": "garbage!"}, headers=user.headers)
    assert error_of(bad_cursor, 400) == "invalid_cursor"
    assert error_of(await http.get("/api/v1/rooms"), 401) == "not_authenticated"
    assert error_of(await http.post("/api/v1/rooms", json={"name": "x", "room_type": "public"}),
                    401) == "not_authenticated"


async def test_state_changes_are_audited(http: httpx.AsyncClient, settings: Settings) -> None:
    owner, member = await sign_in(http), await sign_in(http)
    room = await create(http, owner)
    path = f"/api/v1/rooms/{room['id']}"
    await join(http, member, room["id"])
    await http.put(f"{path}/participants/{member.user_id}/role", json={"role": "moderator"},
                   headers=owner.headers)
    await http.put(f"{path}/participants/{member.user_id}/role", json={"role": "member"},
                   headers=owner.headers)
    await http.post(f"{path}/bans", json={"user_id": member.user_id}, headers=owner.headers)
    await http.delete(f"{path}/bans/{member.user_id}", headers=owner.headers)
    await join(http, member, room["id"])
    await http.post(f"{path}/leave", headers=member.headers)
    await http.patch(path, json={"name": "audited"}, headers=owner.headers)
    await http.delete(path, headers=owner.headers)

    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, actor_id FROM audit_log WHERE target_type = 'room' AND target_id = $1 ORDER BY id",
            room["id"])
    finally:
        await conn.close()
    assert [r["action"] for r in rows] == [
        "room.create", "room.join", "room.set_role", "room.set_role", "room.ban", "room.unban",
        "room.join", "room.leave", "room.update", "room.close"]
    assert str(rows[1]["actor_id"]) == member.user_id


async def test_rooms_endpoints_are_in_openapi(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    expected = {
        "/api/v1/rooms": {"get", "post"},
        "/api/v1/rooms/{room_id}": {"get", "patch", "delete"},
        "/api/v1/rooms/{room_id}/join": {"post"},
        "/api/v1/rooms/{room_id}/leave": {"post"},
        "/api/v1/rooms/{room_id}/participants": {"get"},
        "/api/v1/rooms/{room_id}/participants/{user_id}/role": {"put"},
        "/api/v1/rooms/{room_id}/bans": {"post"},
        "/api/v1/rooms/{room_id}/bans/{user_id}": {"delete"},
        "/api/v1/rooms/{room_id}/invitations": {"post"},
    }
    for path, methods in expected.items():
        assert set(spec["paths"][path]) == methods, path
    create_schema = spec["components"]["schemas"]["CreateRoomRequest"]
    assert {"name", "room_type", "access_token_mint", "min_token_amount"} <= set(create_schema["properties"])
    assert create_schema["required"] == ["name", "room_type"]
    assert "Room" in spec["components"]["schemas"]


async def test_wallet_addresses_are_shown_to_members_only(http: httpx.AsyncClient) -> None:
    owner, member, outsider = [await sign_in(http) for _ in range(3)]
    room = await create(http, owner)
    assert (await join(http, member, room["id"])).status_code == 200
    url = f"/api/v1/rooms/{room['id']}/participants"
    seen = (await http.get(url, headers=member.headers)).json()["participants"]
    assert {p["wallet_address"] for p in seen} == {owner.wallet.address, member.wallet.address}
    public = await http.get(url, headers=outsider.headers)
    assert public.status_code == 200
    people = public.json()["participants"]
    assert {p["user_id"] for p in people} == {owner.user_id, member.user_id}
    assert all(p["wallet_address"] is None for p in people)
    assert owner.wallet.address not in public.text and member.wallet.address not in public.text
