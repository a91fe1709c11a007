"""TutorService: one question in, a stream of `socratic_response` frames to the whole room out.

    ask(Question) --budgets--> thread + turn --task--> retrieval (room scope, inside the SQL)
        -> Claude (streamed) or the offline flow -> frames via `emit` (and an optional
        per-answer listener, for the REST SSE stream) -> the final answer stored through
        `store_final` as a durable message with its sources -> turn finished, usage recorded.

Every run ends with exactly one `done` frame: the answer, or `error` = `tutor_unavailable`
(upstream failure, overload, timeout) or `cancelled` (the asker cancelled). The core knows
nothing of sockets: `emit(room_id, frame_text)` is the edge's fan-out of an ephemeral frame to
the room across nodes, `store_final(room_id, user_id, text, metadata)` its durable write path.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from roomserver.config import Settings
from roomserver.errors import RoomserverError, Unavailable
from roomserver.library.embeddings import Embedder, HashingEmbedder
from roomserver.library.search import Hit, Scope, search
from roomserver.observe.metrics import Metrics
from roomserver.protocol import SocraticResponse, SocraticSource, encode
from roomserver.ratelimit import LimiterFactory, memory_limiters
from roomserver.tutor import prompts, store
from roomserver.tutor.budgets import Budgets, Slot
from roomserver.tutor.claude import ClaudeBackend, Usage, make_client
from roomserver.tutor.offline import OfflineTutor, pieces, source_of, sources_from_state
from roomserver.tutor.sanitize import StreamSanitizer, sanitize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """Where the final answer was written: the chat message and its room seq."""

    message_id: str | None
    seq: int | None


Emit = Callable[[uuid.UUID, str], Awaitable[None]]
"""(room_id, encoded frame) -> fan the frame out to every member of the room, on every node."""
StoreFinal = Callable[[uuid.UUID, uuid.UUID, str, dict[str, Any]], Awaitable[Stored]]
"""(room_id, asker, answer text, metadata) -> the durable tutor message (kind `tutor`)."""
Listener = Callable[[SocraticResponse], None]


@dataclass(frozen=True)
class Question:
    room_id: uuid.UUID
    user_id: uuid.UUID
    text: str
    thread_id: uuid.UUID | None = None
    ref: str | None = None
    """The asker's `client_msg_id`, echoed in every frame."""


@dataclass
class Answer:
    """A running answer. `finished` resolves with its `done` frame."""

    id: str
    question: Question
    thread_id: uuid.UUID
    mode: str
    listener: Listener | None = None
    index: int = 0
    task: asyncio.Task[None] | None = None
    cancelled_by_asker: bool = False
    cleaner: StreamSanitizer = field(default_factory=StreamSanitizer)
    """Every delta goes through it: the room sees only `sanitize`d text (tutor/sanitize.py)."""
    finished: asyncio.Future[SocraticResponse] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class TutorService:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, embedder: Embedder | None, *,
                 emit: Emit, store_final: StoreFinal,
                 limiters: LimiterFactory = memory_limiters, metrics: Metrics | None = None) -> None:
        """`embedder` None (lexical-only library): retrieval is full text, and the offline tutor
        compares words (bag-of-words vectors) and takes any matching passage as covering."""
        self.settings, self.pool, self.embedder = settings, pool, embedder
        self.emit, self.store_final = emit, store_final
        self._tokens = (metrics or Metrics.unexposed()).tutor_tokens
        self.budgets = Budgets(settings, pool, limiters=limiters)
        self.offline = (OfflineTutor(embedder, min_score=settings.tutor_min_score) if embedder
                        else OfflineTutor(HashingEmbedder(), min_score=0.0))
        self.claude: ClaudeBackend | None = None
        api_key = settings.anthropic_api_key.get_secret_value()
        if api_key:
            client = make_client(api_key, settings.anthropic_base_url,
                                 timeout=settings.tutor_timeout_seconds,
                                 max_retries=settings.tutor_max_retries)
            self.claude = ClaudeBackend(client, settings.tutor_model,
                                        max_tokens=settings.tutor_max_tokens,
                                        deadline=settings.tutor_deadline_seconds)
        self.running: dict[str, Answer] = {}

    @property
    def mode(self) -> str:
        return "claude" if self.claude else "offline"

    # ---- asking and cancelling ----

    async def ask(self, question: Question, *, listener: Listener | None = None) -> Answer:
        """Admit the question (raises RateLimited, NotFound for a foreign thread) and start
        answering it in the background; frames go to the room from now on."""
        slot = await self.budgets.admit(question.room_id, question.user_id)
        try:
            thread = await store.open_thread(self.pool, question.room_id, question.user_id,
                                             question.thread_id, question.text.strip()[:80])
            turn_id = await store.start_turn(self.pool, thread, question.user_id, question.text, self.mode)
        except BaseException:
            slot.release()
            raise
        answer = Answer(uuid.uuid4().hex, question, thread.id, self.mode, listener)
        self.running[answer.id] = answer
        answer.task = asyncio.create_task(self._run(answer, turn_id, slot), name=f"tutor-{answer.id}")
        return answer

    def cancel(self, room_id: uuid.UUID, user_id: uuid.UUID, answer_id: str | None = None) -> int:
        """Cancel the user's running answers in the room (one, or all); returns how many."""
        count = 0
        for answer in list(self.running.values()):
            q = answer.question
            if q.room_id == room_id and q.user_id == user_id and answer_id in (None, answer.id):
                if answer.task is not None and not answer.task.done():
                    answer.cancelled_by_asker = True
                    answer.task.cancel()
                    count += 1
        return count

    async def close(self) -> None:
        tasks = [a.task for a in self.running.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.claude is not None:
            await self.claude.close()

    # ---- one answer ----

    async def _run(self, answer: Answer, turn_id: uuid.UUID, slot: Slot) -> None:
        q = answer.question
        usage = Usage()
        sources: list[dict[str, Any]] = []
        state: dict[str, Any] = {}
        parts: list[str] = []
        try:
            with slot:
                if self.claude is not None:
                    sources = await self._answer_claude(answer, parts, usage)
                else:
                    sources, state = await self._answer_offline(answer, parts)
                text = sanitize("".join(parts)).strip()
                metadata = {"thread_id": str(answer.thread_id), "answer_id": answer.id,
                            "mode": answer.mode, "question": q.text, "asked_by": str(q.user_id),
                            "sources": sources}
                stored = await self._store(q, text, metadata)
            await store.finish_turn(self.pool, turn_id, status="done", answer=text, sources=sources,
                                    state=state, input_tokens=usage.input_tokens,
                                    output_tokens=usage.output_tokens,
                                    message_id=_uuid(stored.message_id), message_seq=stored.seq)
            await self._finish(answer, text=text, sources=sources,
                               message_id=stored.message_id, message_seq=stored.seq)
        except asyncio.CancelledError:
            why = "cancelled by the asker" if answer.cancelled_by_asker else "the server is shutting down"
            await asyncio.shield(self._fail(answer, turn_id, "cancelled", why, parts, usage))
            if not answer.cancelled_by_asker:
                raise
        except Unavailable as exc:
            await self._fail(answer, turn_id, exc.code, exc.message, parts, usage)
        except Exception as exc:
            log.exception("tutor answer %s failed", answer.id)
            code = exc.code if isinstance(exc, RoomserverError) else "tutor_unavailable"
            await self._fail(answer, turn_id, code, "the tutor failed; it has been logged", parts, usage)
        finally:
            self.running.pop(answer.id, None)
            self._tokens.labels("input").inc(usage.input_tokens)
            self._tokens.labels("output").inc(usage.output_tokens)

    async def _retrieve(self, room_id: uuid.UUID, text: str) -> list[Hit]:
        scope = Scope(room_id=room_id, include_public=await store.include_public(self.pool, room_id))
        return await search(self.pool, self.embedder, text, scope, limit=self.settings.tutor_top_k)

    async def _answer_claude(self, answer: Answer, parts: list[str], usage: Usage) -> list[dict[str, Any]]:
        assert self.claude is not None
        q = answer.question
        hits = await self._retrieve(q.room_id, q.text)
        sources = [source_of(h) for h in hits]
        await self._send(answer, "", start=True, sources=sources)
        turns = await store.recent_turns(self.pool, answer.thread_id)
        history = prompts.history_messages([(t.question, t.answer or "") for t in turns],
                                           self.settings.tutor_history_tokens)
        passages = [prompts.Passage(s["cite"], h.text) for s, h in zip(sources, hits, strict=True)]
        messages = [*history, {"role": "user", "content": prompts.user_turn(q.text, passages)}]
        async for piece in self.claude.stream(prompts.SYSTEM_PROMPT, messages, usage):
            parts.append(piece)
            await self._delta(answer, piece)
        await self._delta(answer, None)
        return sources

    async def _answer_offline(self, answer: Answer, parts: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        q = answer.question
        state = await store.last_state(self.pool, answer.thread_id) if q.thread_id else {}
        reply = await self.offline.reply(q.text, state, lambda text: self._retrieve(q.room_id, text))
        sources = [source_of(h) for h in reply.sources] or sources_from_state(reply.state)
        await self._send(answer, "", start=True, sources=sources)
        for piece in pieces(reply.text):
            parts.append(piece)
            await self._delta(answer, piece)
        await self._delta(answer, None)
        return sources, reply.state

    async def _store(self, q: Question, text: str, metadata: dict[str, Any]) -> Stored:
        try:
            return await self.store_final(q.room_id, q.user_id, text or "(no answer)", metadata)
        except Exception:
            log.exception("could not store the tutor answer for room %s", q.room_id)
            return Stored(None, None)

    async def _fail(self, answer: Answer, turn_id: uuid.UUID, code: str, detail: str,
                    parts: list[str], usage: Usage) -> None:
        status = "cancelled" if code == "cancelled" else "failed"
        try:
            await store.finish_turn(self.pool, turn_id, status=status, answer=sanitize("".join(parts)) or None,
                                    sources=[], state={}, input_tokens=usage.input_tokens,
                                    output_tokens=usage.output_tokens)
        except Exception:
            log.exception("could not record the end of tutor turn %s", turn_id)
        await self._finish(answer, text=sanitize("".join(parts)), error=code, detail=detail)

    # ---- frames ----

    def _frame(self, answer: Answer, text: str, **fields: Any) -> SocraticResponse:
        q = answer.question
        frame = SocraticResponse(text=text, thread_id=str(answer.thread_id), ref=q.ref,
                                 room_id=str(q.room_id), answer_id=answer.id, index=answer.index,
                                 mode=answer.mode, **fields)  # type: ignore[arg-type]
        answer.index += 1
        return frame

    async def _delta(self, answer: Answer, piece: str | None) -> None:
        """The model's next piece (None: the end) to the room, through the answer's sanitizer."""
        clean = answer.cleaner.flush() if piece is None else answer.cleaner.feed(piece)
        if clean:
            await self._send(answer, clean)

    async def _send(self, answer: Answer, text: str, *, start: bool = False,
                    sources: list[dict[str, Any]] | None = None) -> None:
        extra: dict[str, Any] = {"done": False, "ephemeral": True}
        if start:
            q = answer.question
            extra.update(question=q.text, asked_by=str(q.user_id),
                         sources=[SocraticSource(**s) for s in sources or []])
        await self._publish(answer, self._frame(answer, text, **extra))

    async def _finish(self, answer: Answer, *, text: str, sources: list[dict[str, Any]] | None = None,
                      message_id: str | None = None, message_seq: int | None = None,
                      error: str | None = None, detail: str | None = None) -> None:
        frame = self._frame(answer, text, done=True,
                            sources=[SocraticSource(**s) for s in sources] if sources else None,
                            message_id=message_id, message_seq=message_seq, error=error, detail=detail)
        await self._publish(answer, frame)
        if not answer.finished.done():
            answer.finished.set_result(frame)

    async def _publish(self, answer: Answer, frame: SocraticResponse) -> None:
        if answer.listener is not None:
            answer.listener(frame)
        try:
            await self.emit(answer.question.room_id, encode(frame))
        except Exception:  # the room's fan-out is down: the answer still completes and is stored
            log.warning("tutor frame for room %s not fanned out", answer.question.room_id, exc_info=True)


def _uuid(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


__all__ = ["Answer", "Emit", "Question", "StoreFinal", "Stored", "TutorService"]
