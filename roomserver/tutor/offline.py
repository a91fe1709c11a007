"""The offline tutor: a retrieval-grounded, template-driven Socratic flow, no language model.

Per thread, one step per student message (the step lives in the turn's `state`):

    start    retrieve the best passage; if nothing scores `min_score` or more, say so
             honestly and stop. Else point to the document and page and ask what the
             student already knows.                                   -> known
    known    offer a cloze of the passage's key sentence (the sentence closest to the
             question) with one important word blanked.               -> cloze
    cloze    a right word moves on; a miss earns a hint (first letter, length); after
             `MAX_MISSES` misses the word is given.                   -> cloze | explain
    explain  compare the student's explanation with the passage by embedding similarity,
             then reveal the passage with its citation.               -> done

A new question (a new thread, or a thread whose flow is done) starts again.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roomserver.library.embeddings import Embedder
from roomserver.library.search import Hit
from roomserver.tutor.prompts import cite_label

MAX_MISSES = 2
CLOSE_ENOUGH = 0.6
LABEL = "Offline tutor (no AI model; built only from this room's documents)"

STOPWORDS = frozenset("""a about above after again against all also an and any are as at be because
been before being below between both but by can could did do does doing down during each few for
from further had has have having here how if in into is it its itself just more most no nor not of
off on once only or other our out over own same should so some such than that the their them then
there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your""".split())

Retrieve = Callable[[str], Awaitable[list[Hit]]]


@dataclass
class OfflineReply:
    text: str
    state: dict[str, Any]
    sources: list[Hit] = field(default_factory=list)


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return [p for p in parts if len(p.split()) >= 3] or [" ".join(text.split())]


def pick_blank(sentence: str, question: str) -> str:
    """The sentence's most telling word: long, not a stopword, preferably not in the question."""
    asked = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]+", question)}
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z-]+", sentence) if w.lower() not in STOPWORDS]
    fresh = [w for w in words if w.lower() not in asked]
    pool = fresh or words or sentence.split()
    return max(pool, key=len)


def cloze(sentence: str, word: str) -> str:
    return re.sub(rf"\b{re.escape(word)}\b", "_____", sentence, count=1)


class OfflineTutor:
    mode = "offline"

    def __init__(self, embedder: Embedder, *, min_score: float) -> None:
        self.embedder, self.min_score = embedder, min_score

    async def reply(self, message: str, state: dict[str, Any], retrieve: Retrieve) -> OfflineReply:
        stage = state.get("stage")
        if stage == "known":
            return self._offer_cloze(state)
        if stage == "cloze":
            return self._check_word(message, state)
        if stage == "explain":
            return await self._compare(message, state)
        return await self._start(message, retrieve)

    async def _start(self, question: str, retrieve: Retrieve) -> OfflineReply:
        hits = await retrieve(question)
        best = max(hits, key=lambda h: h.score, default=None)
        if best is None or best.score < self.min_score:
            near = f" (the closest passage scores {best.score:.2f}, below {self.min_score:.2f})" if best else ""
            return OfflineReply(
                f"{LABEL}: none of the documents shared in this room seems to cover this question{near}. "
                "I can only help from the room's documents: could you rephrase the question, "
                "or share a document that covers it?", {"stage": "done", "covered": False})
        key = await self._key_sentence(question, best.text)
        cite = cite_label(best.title, best.page_start, best.page_end)
        state = {"stage": "known", "question": question, "cite": cite, "passage": best.text,
                 "sentence": key, "word": pick_blank(key, question), "misses": 0,
                 "source": _source(best)}
        return OfflineReply(
            f"{LABEL}. The room's documents cover this in {cite}. Before you read it: "
            "what do you already know about this question? Tell me in a sentence or two.",
            state, [best])

    async def _key_sentence(self, question: str, passage: str) -> str:
        candidates = sentences(passage)
        vectors = await self.embedder.embed([question, *candidates])
        scores = vectors[1:] @ vectors[0]
        return candidates[int(np.argmax(scores))]

    def _offer_cloze(self, state: dict[str, Any]) -> OfflineReply:
        state = {**state, "stage": "cloze"}
        return OfflineReply(
            f"Thanks. Now read {state['cite']} and fill in the missing word of its key sentence:\n"
            f"\"{cloze(state['sentence'], state['word'])}\"", state)

    def _check_word(self, answer: str, state: dict[str, Any]) -> OfflineReply:
        word: str = state["word"]
        guess = re.sub(r"[^A-Za-z-]", "", answer.strip().split()[0] if answer.strip() else "")
        explain = f"Now explain in your own words: {state['question']}"
        if guess.lower() == word.lower():
            return OfflineReply(f"Yes: \"{word}\". {explain}", {**state, "stage": "explain"})
        misses = state["misses"] + 1
        if misses >= MAX_MISSES:
            return OfflineReply(f"The word is \"{word}\", as {state['cite']} says. {explain}",
                                {**state, "stage": "explain", "misses": misses})
        return OfflineReply(
            f"Not quite. Hint: the word starts with \"{word[0]}\" and has {len(word)} letters. "
            f"Look again at {state['cite']}.", {**state, "misses": misses})

    async def _compare(self, explanation: str, state: dict[str, Any]) -> OfflineReply:
        vectors = await self.embedder.embed([explanation, state["passage"]])
        similarity = float(vectors[0] @ vectors[1])
        verdict = (f"Your explanation is close to the source (similarity {similarity:.2f})."
                   if similarity >= CLOSE_ENOUGH else
                   f"Your explanation differs from the source (similarity {similarity:.2f}): "
                   "compare the two and see what is missing.")
        return OfflineReply(f"{verdict} Here is the passage, {state['cite']}:\n> {state['passage']}",
                            {**state, "stage": "done", "similarity": round(similarity, 3)})


def _source(hit: Hit) -> dict[str, Any]:
    return {"document_id": str(hit.document_id), "chunk_id": str(hit.chunk_id), "title": hit.title,
            "page_start": hit.page_start, "page_end": hit.page_end, "score": round(hit.score, 4)}


def source_of(hit: Hit) -> dict[str, Any]:
    """A hit as a citation: document, title, page range, chunk and score."""
    return {**_source(hit), "cite": cite_label(hit.title, hit.page_start, hit.page_end)}


def sources_from_state(state: dict[str, Any]) -> list[dict[str, Any]]:
    source = state.get("source")
    return [{**source, "cite": state["cite"]}] if source else []


def pieces(text: str) -> Sequence[str]:
    """Split a templated reply into word-group deltas, so clients see one stream shape."""
    words = re.split(r"(\s+)", text)
    out, current = [], ""
    for w in words:
        current += w
        if len(current) >= 24:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out
