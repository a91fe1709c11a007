"""roomserver.client against the real app (uvicorn on a free port, embedded Postgres): sign-in,
rooms, chat with acks, a dropped socket that reconnects and resumes, the tutor stream (the
offline tutor: no API key) and typed errors with the server's codes and close codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roomserver.client import ApiError, Client, Closed, RoomSocket, Wallet
from roomserver.errors import CloseCode
from roomserver.protocol import Kick, NewMessage, ServerFrame


@pytest.fixture
async def alice(base_url: str) -> AsyncIterator[Client]:
    async with Client(base_url) as client:
        await client.sign_in(Wallet.generate())
        yield client


@pytest.fixture
async def bob(base_url: str) -> AsyncIterator[Client]:
    async with Client(base_url) as client:
        await client.sign_in()
        yield client


async def messages(socket: RoomSocket, count: int) -> list[NewMessage]:
    """The next `count` new_message events (other events skipped)."""
    found: list[NewMessage] = []
    async with asyncio.timeout(20):
        async for event in socket.events():
            if isinstance(event, NewMessage):
                found.append(event)
                if len(found) == count:
                    return found
    raise AssertionError("events ended")


async def test_sign_in_rooms_and_history(alice: Client, bob: Client) -> None:
    assert alice.session is not None and alice.session.wallet.address
    room = await alice.create_room("Thermo", topic="physics")
    assert room.my_role == "owner" and room.room_type == "public"
    joined = await bob.join(str(room.id))
    assert str(joined.user_id) == bob.session.user_id if bob.session else False
    listed = await bob.rooms(mine=True)
    assert [r.id for r in listed.rooms] == [room.id]
    async with alice.socket(str(room.id)) as socket:
        ack = await socket.chat("hello")
    page = await bob.messages(str(room.id))
    assert [(m.seq, m.text) for m in page.messages] == [(ack.seq, "hello")]
    assert [m.text async for m in bob.history(str(room.id))] == ["hello"]
    await bob.leave(str(room.id))
    with pytest.raises(ApiError) as refused:
        await bob.messages(str(room.id))
    assert (refused.value.status, refused.value.code) == (403, "not_member")


async def test_two_clients_chat_with_acks_in_order(alice: Client, bob: Client) -> None:
    room = str((await alice.create_room("Acks")).id)
    await bob.join(room)
    async with alice.socket(room) as a, bob.socket(room) as b:
        acks = [await a.chat(f"m{i}") for i in range(5)]
        seqs = [ack.seq for ack in acks]
        assert seqs == list(range(a.welcome.seq + 1, a.welcome.seq + 6))
        got = await messages(b, 5)
        assert [(m.seq, m.message.text) for m in got] == [(s, f"m{i}") for i, s in enumerate(seqs)]
        assert [m.message.id for m in got] == [ack.message_id for ack in acks]


async def test_a_dropped_socket_resumes_every_message_exactly_once_in_order(
        alice: Client, bob: Client) -> None:
    room = str((await alice.create_room("Resume")).id)
    await bob.join(room)
    async with alice.socket(room) as a, bob.socket(room) as b:
        first = await a.chat("before")
        assert [m.seq for m in await messages(b, 1)] == [first.seq]
        b.drop()  # the TCP connection dies without a close frame (1006)
        sent = [await a.chat(f"while away {i}") for i in range(8)]
        mine = asyncio.create_task(b.chat("sent while reconnecting"))  # resent if it was lost
        more = [await a.chat(f"after {i}") for i in range(3)]
        ack = await asyncio.wait_for(mine, 20)
        got = await messages(b, 12)
        seqs = [m.seq for m in got]
        assert seqs == sorted(set(seqs)) == list(range(first.seq + 1, first.seq + 13))
        assert {x.seq for x in [*sent, *more, ack]} == set(seqs)
        assert [m.message.text for m in got].count("sent while reconnecting") == 1
        assert b.reconnects >= 1 and b.seq == seqs[-1]
    page = await alice.messages(room)
    assert len(page.messages) == 13  # the resent frame was stored once


async def test_the_tutor_streams_deltas_then_the_final_answer(alice: Client) -> None:
    room = str((await alice.create_room("Tutor")).id)
    async with alice.socket(room) as socket:
        async with asyncio.timeout(60):
            frames = [f async for f in socket.ask("Why is dS >= 0 in an isolated system?")]
    assert frames[-1].done and not any(f.done for f in frames[:-1])
    assert [f.index for f in frames] == sorted(f.index or 0 for f in frames)
    assert frames[0].question and frames[-1].mode == "offline"
    assert frames[-1].text and frames[-1].message_seq is not None
    assert "".join(f.text for f in frames[:-1]) == frames[-1].text


async def test_a_private_room_refuses_with_the_servers_code(alice: Client, bob: Client) -> None:
    room = str((await alice.create_room("Secret", room_type="private")).id)
    with pytest.raises(ApiError) as rest:
        await bob.join(room)
    assert (rest.value.status, rest.value.code) == (404, "room_not_found")
    with pytest.raises(ApiError) as socket:
        await bob.socket(room).connect()
    assert (socket.value.status, socket.value.code) == (404, "room_not_found")


async def test_a_kick_ends_the_socket_with_its_close_code(alice: Client, bob: Client) -> None:
    room = str((await alice.create_room("Kick")).id)
    await bob.join(room)
    async with alice.socket(room) as a, bob.socket(room) as b:
        assert bob.session is not None
        await a.send(Kick(user_id=bob.session.user_id))
        seen: list[ServerFrame] = []
        with pytest.raises(Closed) as closed:
            async with asyncio.timeout(10):
                async for event in b.events():
                    seen.append(event)
        assert closed.value.code == CloseCode.KICKED and not closed.value.reconnectable
        with pytest.raises(Closed):
            await b.chat("after the kick")


async def test_the_documented_example_runs(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "client.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.rstrip().endswith("asyncio.run(main())") and len(code.splitlines()) <= 30
    scope: dict[str, object] = {}
    exec(code.replace("http://127.0.0.1:8000", base_url).replace("asyncio.run(main())", ""), scope)
    async with asyncio.timeout(60):
        await scope["main"]()  # type: ignore[operator]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("stored as seq ") and out[1].endswith(" Is entropy a state function?")
    assert out[-1] == "404 room_not_found"
