"""roomserver as a peer of the shared fan-out harness (/work/shared/bench/loadgen.py).

    cd /work/shared/bench
    $PY loadgen.py load --peer C,/work/main/roomserver/loadtests/bench_adapter.py --rates ...

Everything on: `server_cmd` runs `roomserver/loadtests/bench_server.py serve` (embedded PostgreSQL
persisting every chat message, Redis fan-out + presence at $BENCH_REDIS_URL, real sessions).
Each socket authenticates with a real SIWS session token from the mapping written by
`python -m roomserver.loadtests.bench_server prepare` (the harness cannot set headers, so the token goes
in the first `auth` frame, as browsers do), is admitted only as a REST-joined member, and is
ready on `welcome`. A chat is a `chat_message` with a `client_msg_id` (so the server also
acks it after the commit); the harness's stamp travels verbatim in `new_message.message.text`.
This file runs inside the harness's venv: it imports nothing from roomserver.
"""

from __future__ import annotations

import json
import os
import time

from loadgen import Adapter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = os.environ.get("BENCH_RS_PYTHON", os.path.join(REPO, ".venv", "bin", "python"))
MAPPING = os.path.join(os.environ.get("BENCH_RS_DIR", "/tmp/rsbench"), "mapping.json")


class RoomserverAdapter(Adapter):
    name = "RS-roomserver"
    needs_redis = True
    echo_to_sender = True   # the sender's own socket receives new_message too (and an ack)
    multi_worker = True

    def __init__(self) -> None:
        with open(MAPPING) as f:
            rooms = json.load(f)["rooms"]
        self.ids = {name: entry["id"] for name, entry in rooms.items()}
        self.tokens = {name: entry["tokens"] for name, entry in rooms.items()}
        self.next = {name: 0 for name in rooms}
        self.sent = 0
        self.run = "%x" % int(time.time() * 1000)  # client_msg_ids are idempotency keys: unique per run

    def server_cmd(self, host, port, workers):
        # BENCH_RS_PG_OUTSIDE=1 (idle-memory runs): PostgreSQL is left out of the measured process
        # tree; its backends' RSS counts the shared buffers they touch (not memory per socket).
        # Otherwise it is inside: the database's CPU is server CPU.
        outside = os.environ.get("BENCH_RS_PG_OUTSIDE", "0")
        return ["env", f"PYTHONPATH={REPO}", f"BENCH_RS_PG_OUTSIDE={outside}", PYTHON, "-m", "roomserver.loadtests.bench_server", "serve",
                "--host", host, "--port", str(port), "--workers", str(workers)]

    def path(self, room):
        if room not in self.ids:
            raise SystemExit(f"{room} is not in {MAPPING}: run `python -m roomserver.loadtests.bench_server "
                             "prepare --rooms R --per-room N` with enough rooms and members")
        return f"/ws/rooms/{self.ids[room]}"

    def on_open(self, conn):
        tokens = self.tokens[conn.room]
        k = self.next[conn.room]
        self.next[conn.room] = k + 1
        conn.send_text('{"type":"auth","token":"%s"}' % tokens[k % len(tokens)])

    def on_control(self, conn, text):
        if text.startswith('{"type":"welcome"'):
            conn.mark_ready()
        elif text.startswith('{"type":"error"'):
            conn.fail("server error: " + text[:200])

    def encode(self, room, text):
        # client_msg_id without the stamp (the ack must not count as a delivery), unique per send
        self.sent += 1
        return '{"type":"chat_message","text":"%s","client_msg_id":"b%s-%d"}' % (text, self.run, self.sent)


ADAPTER = RoomserverAdapter
