"""The Socratic tutor: room-scoped retrieval, Claude or the offline flow, budgets. See docs/tutor.md."""

from roomserver.tutor.service import Answer, Question, Stored, TutorService

__all__ = ["Answer", "Question", "Stored", "TutorService"]
