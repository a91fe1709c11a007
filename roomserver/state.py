"""The resources one app instance owns, built in the lifespan and handed to the edge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from roomserver.achievements import Achievements
from roomserver.config import Settings
from roomserver.focus import FocusService
from roomserver.gating.gatekeeper import Gatekeeper
from roomserver.gating.recheck import Rechecker
from roomserver.identity.purge import Purger
from roomserver.identity.sessions import SessionStore
from roomserver.identity.signin import SignIn
from roomserver.library.documents import Library
from roomserver.library.embeddings import Embedder
from roomserver.library.highlights import Highlights
from roomserver.library.ingest import Ingestor
from roomserver.nft.minting import NftService
from roomserver.observe.metrics import Metrics
from roomserver.ratelimit import Limiter, Slots
from roomserver.realtime.frames import Frames
from roomserver.realtime.node import Realtime
from roomserver.rooms import RoomService
from roomserver.store.blobstore import BlobStore
from roomserver.tutor import TutorService

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class AppState:
    settings: Settings
    db: asyncpg.Pool
    sessions: SessionStore
    user_limiter: Limiter
    ip_limiter: Limiter
    user_sockets: Slots
    """Open sockets per user on this node (WS_SOCKETS_PER_USER)."""
    ip_sockets: Slots
    """Open sockets per client IP key on this node (WS_SOCKETS_PER_IP)."""
    metrics: Metrics
    modes: dict[str, str] = field(default_factory=dict)
    signin: SignIn = field(init=False)
    purger: Purger | None = None
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    rooms: RoomService = field(init=False)
    gatekeeper: Gatekeeper = field(init=False)
    rechecker: Rechecker | None = None
    realtime: Realtime = field(init=False)
    frames: Frames = field(init=False)
    public_blobs: BlobStore = field(init=False)  # published on purpose: served by /ipfs
    private_blobs: BlobStore = field(init=False)  # uploads: only through the document download
    nft: NftService | None = None
    embedder: Embedder | None = field(init=False)  # None: lexical-only library
    ingestor: Ingestor = field(init=False)
    library: Library = field(init=False)
    highlights: Highlights = field(init=False)
    tutor: TutorService | None = None
    achievements: Achievements = field(init=False)
    focus: FocusService = field(init=False)
