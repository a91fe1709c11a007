"""loadtests against the real app: a small replay (what CI runs: it fails on any lost or
out-of-order durable message), and recording then replaying real traffic."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from roomserver.config import Settings
from roomserver.loadtests.__main__ import main
from roomserver.realtime.trace import (
    read_trace,
)


async def test_a_small_replay_delivers_every_durable_message_once_in_order(
        settings: Settings, tmp_path: Path) -> None:
    from tests.servers import run_app

    trace = tmp_path / "ci.jsonl"
    assert main(["generate", str(trace), "--rooms", "10", "--members", "20", "--duration", "5",
                 "--message-rate", "0.3", "--reaction-rate", "0.1", "--churn", "0.2",
                 "--storm", "2.5", "--storm-fraction", "0.3", "--seed", "8"]) == 0
    out = tmp_path / "report"
    async with run_app(settings) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "roomserver.loadtests", "replay", str(trace), "--url", url, "--drain", "10",
            "--duration-limit", "30", "--out", str(out),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, stdout.decode()[-3000:] + stderr.decode()[-3000:]
    result = orjson.loads((out / "result.json").read_bytes())
    assert result["ok"] is True
    assert result["durable"]["lost"] == 0 and result["durable"]["out_of_order"] == 0
    assert result["durable"]["duplicated"] == 0
    assert result["sockets"]["opened"] >= 200 and not result["sockets"]["failed"]
    assert result["sockets"]["reconnects"] > 0 and result["recovery"]["complete"] > 0
    sent_chats = result["sent"]["chat_message"]
    assert result["acked"] >= sent_chats > 50
    # every chat reaches (nearly) the whole room: 20 members each
    assert result["received"]["new_message"] > 10 * sent_chats
    assert result["latency_ms"]["count"] == result["received"]["new_message"]
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PASS" in (out / "summary.txt").read_text()
    assert "delivered" in stdout.decode()
    assert "plot skipped" not in stdout.decode()


async def test_recorded_traffic_is_pseudonymised_and_replays(settings: Settings, tmp_path: Path) -> None:
    import dataclasses

    import httpx

    from roomserver.store.ports import free_port
    from tests.clients import sign_in
    from tests.servers import run_app
    from tests.ws_client import RoomClient, create_room

    port = free_port()
    async with run_app(dataclasses.replace(settings, port=port)) as url, httpx.AsyncClient(base_url=url) as http:
        alice, bob = await sign_in(http), await sign_in(http)
        recorded, ignored = await create_room(http, alice), await create_room(http, alice)
    live = dataclasses.replace(settings, port=free_port(), record_rooms=recorded, record_dir=str(tmp_path / "rec"))
    async with run_app(live) as url:
        a = await RoomClient.open(url, alice, recorded)
        b = await RoomClient.open(url, bob, recorded)
        other = await RoomClient.open(url, bob, ignored)
        await b.send(type="typing_start")
        ack = await b.request(type="chat_message", text="is entropy a state function?", client_msg_id="c-1")
        await asyncio.sleep(0.5)  # people pause between actions; the replay keeps these gaps
        await a.request(type="reaction_add", message_id=ack["message_id"], emoji="👍", client_msg_id="c-2")
        await other.request(type="chat_message", text="not recorded", client_msg_id="c-3")
        await asyncio.sleep(0.5)
        for client in (a, b, other):
            await client.close()
        await asyncio.sleep(0.3)
    [recording] = list((tmp_path / "rec").glob("record-*.jsonl"))
    raw = recording.read_text()
    for secret in (alice.user_id, bob.user_id, alice.wallet.address, ack["message_id"], recorded, "c-1"):
        assert secret not in raw
    header, trace = read_trace(recording)
    assert header.source == "recording"
    assert {e.room for e in trace} == {"room-1"} and "not recorded" not in raw
    bob_label = next(e.user for e in trace if e.type == "chat_message")
    assert [e.type for e in trace if e.user == bob_label] == ["join", "typing_start", "chat_message", "leave"]
    assert len({e.user for e in trace}) == 2
    assert [e.payload for e in trace if e.type == "reaction_add"] == [{"emoji": "👍"}]
    out = tmp_path / "replayed"
    async with run_app(dataclasses.replace(settings, port=free_port())) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "roomserver.loadtests", "replay", str(recording), "--url", url,
            "--out", str(out), "--quiet", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stdout.decode()[-3000:]
    result = orjson.loads((out / "result.json").read_bytes())
    assert result["sent"] == {"typing_start": 1, "chat_message": 1, "reaction_add": 1}
    assert result["ok"] and result["refused"] == {} and result["received"]["new_message"] >= 1
