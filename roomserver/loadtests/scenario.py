"""Synthetic traces: rooms x members chatting, typing, reacting, asking the tutor, leaving and
rejoining, and reconnect storms. Deterministic for a given `Scenario` (it carries the seed).

Guarantees (tests/test_loadtests.py checks them): events are sorted by `t` and lie in
[0, duration]; each user's first event is `join`; a user sends nothing between its `leave`
and its next `join`; a user's durable frames are at least 60/`max_durable_per_minute` seconds
apart (stay below the server's WS_CHAT_PER_MINUTE) and its tutor questions 60/`max_questions_per_minute`
apart; a reaction's `message_ref` names a chat message sent earlier in the same room.
Highlights and document shares are not generated: they need documents in the room's library.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from roomserver.realtime.trace import TraceEvent, TraceHeader

EMOJI = ("👍", "🎉", "🤔", "❤️", "👀")
WORDS = ("entropy", "state", "function", "reversible", "heat", "work", "isolated", "system",
         "temperature", "gradient", "equilibrium", "why", "does", "the", "integral", "vanish")
QUESTIONS = ("Why is dS >= 0 in an isolated system?", "What makes a process reversible?",
             "How is heat different from work?", "What does a state function mean?")


@dataclass(frozen=True)
class Scenario:
    rooms: int = 10
    members: int = 20
    duration: float = 60.0
    message_rate: float = 0.1
    """Chat messages per member per second."""
    typing: bool = True
    """A typing burst (typing_start … typing_stop) before each message."""
    reaction_rate: float = 0.02
    """Reactions per member per second."""
    tutor_rate: float = 0.0
    """Tutor questions per room per second."""
    churn: float = 0.1
    """Fraction of members who leave once mid-run and rejoin a few seconds later."""
    join_spread: float = 2.0
    """Joins are spread uniformly over the first `join_spread` seconds."""
    storms: tuple[float, ...] = ()
    """Times at which `storm_fraction` of the connected members reconnect at once."""
    storm_fraction: float = 0.5
    max_durable_per_minute: int = 100
    max_questions_per_minute: int = 5
    seed: int = 1
    meta: dict[str, str] = field(default_factory=dict)

    def header(self) -> TraceHeader:
        return TraceHeader(source="scenario", meta={"scenario": {**asdict(self), "storms": list(self.storms)}})


def generate(s: Scenario) -> list[TraceEvent]:
    rng = random.Random(s.seed)
    events: list[TraceEvent] = []
    for r in range(s.rooms):
        events += _room(rng, s, f"room-{r + 1}", [f"user-{r + 1}-{m + 1}" for m in range(s.members)])
    events.sort(key=lambda e: (e.t, e.room, e.user))
    return events


def _room(rng: random.Random, s: Scenario, room: str, users: list[str]) -> list[TraceEvent]:
    online = {u: _intervals(rng, s) for u in users}
    gap = 60 / s.max_durable_per_minute
    out: list[TraceEvent] = []
    chats: dict[str, list[TraceEvent]] = {}
    for user, spans in online.items():
        for start, end in spans:
            out.append(TraceEvent(t=start, room=room, user=user, type="join"))
            if end < s.duration:
                out.append(TraceEvent(t=end, room=room, user=user, type="leave"))
        chats[user] = _spaced(_chats(rng, s, room, user, spans), [], gap)
    every_chat = sorted((c for cs in chats.values() for c in cs), key=lambda e: e.t)
    for user, spans in online.items():
        reactions = [r for t in _arrivals(rng, s.reaction_rate, spans)
                     if (r := _reaction(rng, room, user, t, every_chat)) is not None]
        out += chats[user] + _spaced(reactions, chats[user], gap)
        if s.typing:
            out += [e for c in chats[user] for e in _typing(rng, c, spans)]
    out += _questions(rng, s, room, online)
    out += _storms(rng, s, room, online)
    return out


def _intervals(rng: random.Random, s: Scenario) -> list[tuple[float, float]]:
    join = rng.uniform(0, min(s.join_spread, s.duration))
    if rng.random() >= s.churn or s.duration - join < 6:
        return [(join, s.duration)]
    leave = rng.uniform(join + (s.duration - join) * 0.3, join + (s.duration - join) * 0.6)
    back = min(leave + rng.uniform(1.0, 3.0), s.duration)
    return [(join, leave), (back, s.duration)]


def _arrivals(rng: random.Random, rate: float, spans: list[tuple[float, float]]) -> list[float]:
    """Poisson arrivals inside the spans, kept 0.2 s clear of each span's edges."""
    times: list[float] = []
    if rate <= 0:
        return times
    for start, end in spans:
        t = start + 0.2 + rng.expovariate(rate)
        while t < end - 0.2:
            times.append(round(t, 4))
            t += rng.expovariate(rate)
    return times


def _chats(rng: random.Random, s: Scenario, room: str, user: str,
           spans: list[tuple[float, float]]) -> list[TraceEvent]:
    return [TraceEvent(t=t, room=room, user=user, type="chat_message",
                       payload={"text": " ".join(rng.choices(WORDS, k=rng.randint(3, 12))),
                                "client_msg_id": f"{user}.{n}"})
            for n, t in enumerate(_arrivals(rng, s.message_rate, spans), 1)]


def _reaction(rng: random.Random, room: str, user: str, t: float,
              chats: list[TraceEvent]) -> TraceEvent | None:
    earlier = [c for c in chats if c.t < t - 0.5]
    if not earlier:
        return None
    target = rng.choice(earlier[-20:] if len(earlier) > 20 else earlier)
    return TraceEvent(t=t, room=room, user=user, type="reaction_add",
                      payload={"message_ref": target.payload["client_msg_id"], "emoji": rng.choice(EMOJI)})


def _spaced(events: list[TraceEvent], fixed: list[TraceEvent], gap: float) -> list[TraceEvent]:
    """The events (in time order) that keep `gap` seconds from `fixed` and from each other."""
    taken = sorted(e.t for e in fixed)
    kept: list[TraceEvent] = []
    for event in sorted(events, key=lambda e: e.t):
        if all(abs(event.t - t) >= gap for t in taken):
            kept.append(event)
            taken.append(event.t)
    return kept


def _typing(rng: random.Random, chat: TraceEvent, spans: list[tuple[float, float]]) -> list[TraceEvent]:
    start = round(chat.t - rng.uniform(0.2, 1.5), 4)
    span = next(sp for sp in spans if sp[0] <= chat.t <= sp[1])
    if start <= span[0]:
        return []
    stop = round(max(start, chat.t - 0.01), 4)
    return [TraceEvent(t=start, room=chat.room, user=chat.user, type="typing_start"),
            TraceEvent(t=stop, room=chat.room, user=chat.user, type="typing_stop")]


def _questions(rng: random.Random, s: Scenario, room: str,
               online: dict[str, list[tuple[float, float]]]) -> list[TraceEvent]:
    out: list[TraceEvent] = []
    last: dict[str, float] = {}
    for n, t in enumerate(_arrivals(rng, s.tutor_rate, [(0.0, s.duration)]), 1):
        here = [u for u, spans in online.items() if any(a + 0.2 <= t <= b - 0.2 for a, b in spans)
                and t - last.get(u, -1e9) >= 60 / s.max_questions_per_minute]
        if here:
            user = rng.choice(here)
            last[user] = t
            out.append(TraceEvent(t=t, room=room, user=user, type="socratic_query",
                                  payload={"question": rng.choice(QUESTIONS), "client_msg_id": f"{user}.q{n}"}))
    return out


def _storms(rng: random.Random, s: Scenario, room: str,
            online: dict[str, list[tuple[float, float]]]) -> list[TraceEvent]:
    out: list[TraceEvent] = []
    for at in s.storms:
        for user, spans in online.items():
            t = round(at + rng.uniform(0, 0.5), 4)
            if rng.random() < s.storm_fraction and any(a + 0.5 <= t <= b - 0.5 for a, b in spans):
                out.append(TraceEvent(t=t, room=room, user=user, type="reconnect"))
    return out
