"""loadtests without a server: the trace format, the scenario generator, the delivery judge,
the replayer's refusal of URLs that are not a web server, and the report without matplotlib."""

from __future__ import annotations

import io
import itertools
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from roomserver.client import TargetError, targets
from roomserver.loadtests.__main__ import main
from roomserver.loadtests.metrics import Stream, merge
from roomserver.loadtests.scenario import Scenario, generate
from roomserver.realtime.trace import (
    EVENT_TYPES,
    TraceError,
    TraceEvent,
    TraceHeader,
    TraceWriter,
    dumps_event,
    iter_trace,
    loads_line,
)

labels = st.text(min_size=1, max_size=20)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=30)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


events = st.builds(
    TraceEvent, t=st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    room=labels, user=labels, type=st.sampled_from(sorted(EVENT_TYPES)),
    payload=st.dictionaries(st.text(max_size=10), json_values, max_size=4))


@given(events)
def test_an_event_survives_a_line_round_trip(event: TraceEvent) -> None:
    line = dumps_event(event)
    assert b"\n" not in line
    assert loads_line(line) == event


@given(st.lists(events, max_size=20), st.dictionaries(st.text(max_size=8), st.integers(-2**53, 2**53), max_size=3))
def test_a_trace_survives_a_file_round_trip(items: list[TraceEvent], meta: dict[str, int]) -> None:
    buffer = io.BytesIO()
    writer = TraceWriter(buffer, TraceHeader(source="recording", meta=meta))
    for item in items:
        writer.write(item)
    parsed = list(iter_trace(buffer.getvalue().splitlines()))
    assert parsed[0] == TraceHeader(source="recording", meta=meta, created_at=parsed[0].created_at)
    assert parsed[1:] == items


@pytest.mark.parametrize("line, message", [
    (b"{not json", "not valid JSON"),
    (b"[1]", "JSON object"),
    (b'{"t":-1,"room":"r","user":"u","type":"join"}', "t"),
    (b'{"t":1,"room":"r","user":"u","type":"teleport"}', "unknown event type"),
    (b'{"t":1,"room":"","user":"u","type":"join"}', "room"),
])
def test_a_bad_line_is_refused_with_its_number(line: bytes, message: str) -> None:
    with pytest.raises(TraceError) as refused:
        list(iter_trace([b'{"kind":"header","version":1}', line]))
    assert refused.value.line == 2 and message in str(refused.value)


def test_a_header_after_the_first_line_is_refused() -> None:
    event = dumps_event(TraceEvent(t=0, room="r", user="u", type="join"))
    with pytest.raises(TraceError, match="first line"):
        list(iter_trace([event, b'{"kind":"header"}']))


scenarios = st.builds(
    Scenario, rooms=st.integers(1, 3), members=st.integers(1, 6), duration=st.floats(1, 40),
    message_rate=st.floats(0, 2), reaction_rate=st.floats(0, 1), tutor_rate=st.floats(0, 0.5),
    churn=st.floats(0, 1), storms=st.lists(st.floats(0, 40), max_size=2).map(tuple),
    max_durable_per_minute=st.integers(10, 120), seed=st.integers(0, 2**32))


@hsettings(max_examples=40, deadline=None)
@given(scenarios)
def test_generated_traces_keep_their_promises(s: Scenario) -> None:
    trace = generate(s)
    assert trace == generate(s)  # deterministic
    assert [e.t for e in trace] == sorted(e.t for e in trace)
    assert all(0 <= e.t <= s.duration for e in trace)
    chats: dict[str, float] = {}
    online: dict[str, bool] = {}
    durable: dict[str, list[float]] = {}
    for e in trace:
        if e.type == "join":
            assert not online.get(e.user), "joined twice"
            online[e.user] = True
        elif e.type == "leave":
            assert online.get(e.user)
            online[e.user] = False
        else:
            assert online.get(e.user), f"{e.type} while offline"
        if e.durable:
            durable.setdefault(e.user, []).append(e.t)
        if e.type == "chat_message":
            chats[e.payload["client_msg_id"]] = e.t
        if e.type == "reaction_add":
            assert chats[e.payload["message_ref"]] < e.t
            assert e.payload["message_ref"].startswith(f"user-{e.room.split('-')[1]}-")
    for times in durable.values():
        assert all(b - a >= 60 / s.max_durable_per_minute - 1e-6 for a, b in itertools.pairwise(times))


def test_a_busier_scenario_sends_more() -> None:
    quiet = Counter(e.type for e in generate(Scenario(rooms=2, members=10, duration=30, message_rate=0.05, churn=0)))
    busy = Counter(e.type for e in generate(Scenario(rooms=2, members=10, duration=30, message_rate=0.5, churn=0)))
    assert quiet["join"] == busy["join"] == 20
    assert busy["chat_message"] > 3 * quiet["chat_message"] > 0


@given(st.integers(0, 50), st.permutations(list(range(1, 40))), st.integers(0, 39), st.data())
def test_the_judge_counts_every_lost_duplicated_and_reordered_seq(
        base: int, order: list[int], dropped: int, data: st.DataObject) -> None:
    seqs = [base + s for s in order]
    lost = set(data.draw(st.lists(st.sampled_from(seqs), max_size=dropped, unique=True)))
    dups = data.draw(st.lists(st.sampled_from(seqs), max_size=3))
    stream = Stream()
    stream.baseline(base)
    delivered = [s for s in seqs if s not in lost] + [d for d in dups if d not in lost]
    for seq in delivered:
        stream.deliver(seq)
    stream.connected = True
    top = base + 39
    judged = merge([_part(stream, top)], 1.0)["durable"]
    assert judged["lost"] == len(lost)
    assert judged["duplicated"] == len([d for d in dups if d not in lost])
    in_order = all(a < b for a, b in itertools.pairwise(delivered))
    assert (judged["out_of_order"] == 0) == in_order


def _part(stream: Stream, top: int) -> dict[str, object]:
    return {"counts": {}, "sent": {}, "received": {}, "errors": {}, "connect_failures": {}, "drops": {},
            "skipped": {}, "rest_retries": {}, "latency_at": [], "latency": [], "ack_latency": [], "recovery": [], "tutor": [],
            "room_high": {"r": top}, "streams": [["r", "u", stream.high, sorted(stream.missing),
                                                   stream.received, stream.duplicates, stream.out_of_order,
                                                   stream.connected]]}


@pytest.mark.parametrize("url", ["ftp://example.com", "file:///etc/passwd", "localhost:8000", "http://", "redis://x"])
def test_the_replayer_refuses_urls_that_are_not_a_web_server(url: str, tmp_path: Path) -> None:
    with pytest.raises(TargetError):
        targets(url)
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(dumps_event(TraceEvent(t=0, room="r", user="u", type="join")) + b"\n")
    assert main(["replay", str(trace), "--url", url, "--quiet"]) == 2


def test_ws_and_http_urls_map_to_both_bases() -> None:
    assert targets("ws://127.0.0.1:9/x/") == ("http://127.0.0.1:9/x", "ws://127.0.0.1:9/x")
    assert targets("https://rooms.example") == ("https://rooms.example", "wss://rooms.example")


def test_report_without_matplotlib_prints_the_summary_and_keeps_the_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from roomserver.loadtests import report

    stream = Stream()
    stream.baseline(0)
    for seq in (1, 2, 3):
        stream.deliver(seq)
    stream.connected = True
    result = merge([_part(stream, 3)], 1.0)
    assert result["ok"] is True
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert not report.can_plot()
    paths = report.write(result, tmp_path / "out")
    assert set(paths) == {"json", "summary"} and not (tmp_path / "out" / report.PLOT).exists()
    capsys.readouterr()
    assert main(["report", str(paths["json"])]) == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed and report.PLOT_SKIPPED in printed
    result["ok"] = False
    paths["json"].write_bytes(orjson.dumps(result))
    assert main(["report", str(paths["json"])]) == 1
