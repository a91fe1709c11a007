"""create_app(settings): builds the concrete backends in the lifespan and mounts the routes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from roomserver import errors
from roomserver.achievements import Achievements
from roomserver.api import apidocs, asyncapi, auth, contract, health, ipfs, openapi, rooms, web
from roomserver.api import documents as documents_api
from roomserver.api import focus as focus_api
from roomserver.api import messages as messages_api
from roomserver.api import metrics as metrics_api
from roomserver.api import nft as nft_api
from roomserver.api import operator as operator_api
from roomserver.api import tutor as tutor_api
from roomserver.api.guard import authenticate, require_operator
from roomserver.api.http import Endpoint, error_response, routes
from roomserver.api.limits import BodyLimit
from roomserver.api.observe import Observe
from roomserver.api.ws import routes as ws_routes
from roomserver.chain.rpc import ChainReader
from roomserver.config import Settings, SettingsError
from roomserver.focus import FocusService
from roomserver.gating.gatekeeper import GateCache, Gatekeeper, MemoryGateCache, RedisGateCache
from roomserver.gating.recheck import LocalUsers, Rechecker
from roomserver.gating.rooms import RoomGates
from roomserver.identity.purge import ChallengeCap, Purger
from roomserver.identity.sessions import SessionStore
from roomserver.identity.signin import SignIn
from roomserver.ledger.process import start_ledger
from roomserver.library.documents import Library, Quotas
from roomserver.library.embeddings import Embedder, MiniLMEmbedder, missing_embedding_packages
from roomserver.library.extract import ExtractionLimits
from roomserver.library.highlights import Highlights, RowWriter
from roomserver.library.ingest import Ingestor
from roomserver.library.search import vector_census
from roomserver.nft import minting as nft
from roomserver.observe.metrics import Metrics
from roomserver.observe.redact import redact_library_logs, redact_url
from roomserver.periodic import Periodic
from roomserver.protocol import Achievement, FocusState, HighlightCreate, encode
from roomserver.ratelimit import LimiterFactory, Slots, limiters
from roomserver.realtime.broker import redis_client
from roomserver.realtime.frames import Frames, Hooks, TutorHandler
from roomserver.realtime.history import History
from roomserver.realtime.node import Caller, FrameObserver, open_realtime
from roomserver.rooms import RoomService
from roomserver.state import AppState
from roomserver.store.blobstore import PRIVATE, PUBLIC, LocalBlobStore, split_legacy_layout
from roomserver.store.db import create_pool
from roomserver.store.migrations import migrate
from roomserver.store.pgembed import EmbeddedPostgres
from roomserver.tutor.room_link import open_tutor

log = logging.getLogger("roomserver")

API_VERSION = "0.1.0"


def start_recorder(settings: Settings, stack: AsyncExitStack, modes: dict[str, str]) -> FrameObserver | None:
    """Opt-in traffic recording (RECORD_ROOMS) into the load-test trace format, pseudonymised;
    returns the observer to hand to the realtime node."""
    if not settings.record_rooms:
        return None
    from roomserver.realtime.recorder import TrafficRecorder, parse_rooms

    directory = Path(settings.record_dir) if settings.record_dir else settings.data_dir / "recordings"
    recorder = TrafficRecorder(parse_rooms(settings.record_rooms), directory)
    stack.callback(recorder.close)
    modes["recorder"] = f"recording rooms {settings.record_rooms} to {recorder.path}"
    return recorder.observe


def all_endpoints() -> list[Endpoint]:
    return [*health.ENDPOINTS, *metrics_api.ENDPOINTS, *auth.ENDPOINTS, *rooms.ENDPOINTS, *messages_api.ENDPOINTS, *ipfs.ENDPOINTS, *nft_api.ENDPOINTS,
            *documents_api.ENDPOINTS, *tutor_api.ENDPOINTS, *operator_api.ENDPOINTS,
            *focus_api.ENDPOINTS]


def create_app(settings: Settings, *, embedder: Embedder | None = None) -> Starlette:
    """`embedder`: a loaded model the caller owns (tests share one); default: MiniLM, loaded in the background."""
    redact_library_logs()
    endpoints = all_endpoints()
    spec = openapi.build(endpoints, title="roomserver", version=API_VERSION)
    endpoints += apidocs.endpoints(spec, asyncapi.build(version=API_VERSION))
    if settings.validate_responses:
        endpoints = [dataclasses.replace(ep, handler=contract.checked(ep)) for ep in endpoints]

    metrics = Metrics.from_environ()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            stack.callback(metrics.close)
            state = await build_state(settings, stack, embedder, metrics)
            for component, mode in state.modes.items():
                log.info("%-9s %s", component, mode)
            yield {"rs": state}

    middleware = [
        *proxy_headers(settings),
        Middleware(Observe, metrics=metrics),
        Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                   allow_methods=["*"], allow_headers=["Authorization", "Content-Type"],
                   max_age=600),
        Middleware(BodyLimit, default=settings.max_body_bytes,
                   overrides={"/api/v1/documents/upload": settings.max_upload_bytes}),
    ]
    return Starlette(
        routes=[*routes(endpoints, authenticate, require_operator), *ws_routes(), *web.routes(), *apidocs.routes()],
        middleware=middleware,
        exception_handlers={
            errors.RoomserverError: _typed_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )


def proxy_headers(settings: Settings) -> list[Middleware]:
    """uvicorn's X-Forwarded-For/-Proto handling, believed only from FORWARDED_ALLOW_IPS
    (uvicorn itself runs with proxy_headers=False); none when that is empty."""
    trusted = [part.strip() for part in settings.forwarded_allow_ips.split(",") if part.strip()]
    return [Middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)] if trusted else []


async def build_state(settings: Settings, stack: AsyncExitStack,
                      embedder: Embedder | None = None, metrics: Metrics | None = None) -> AppState:
    """Open every resource the app needs; `stack` closes them in reverse order."""
    metrics = metrics or Metrics.unexposed()
    modes: dict[str, str] = {}
    dsn = settings.database_url
    if dsn:
        modes["database"] = "external PostgreSQL (DATABASE_URL)"
    else:
        pg = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
        dsn = pg.start()
        stack.callback(pg.stop)
        modes["database"] = f"embedded PostgreSQL + pgvector on a Unix socket in {pg.socket_dir} ({pg.pgdata})"
    await migrate(dsn)
    pool = await create_pool(dsn)
    stack.push_async_callback(pool.close)
    chain, rpc_url = await open_solana(settings, stack, modes, metrics)

    per_second = settings.rate_limit_per_minute / 60
    limit = open_limiters(settings, stack, modes)
    state = AppState(
        settings=settings,
        db=pool,
        sessions=SessionStore(pool, timedelta(seconds=settings.session_ttl_seconds)),
        user_limiter=limit("rest-user", per_second, max(10, settings.rate_limit_per_minute // 4)),
        ip_limiter=limit("ip", per_second * 4, max(40, settings.rate_limit_per_minute)),
        user_sockets=Slots(settings.ws_sockets_per_user, code="too_many_sockets", what="sockets of this user"),
        ip_sockets=Slots(settings.ws_sockets_per_ip, code="too_many_sockets", what="sockets from this address"),
        metrics=metrics,
        modes=modes,
    )
    metrics.samplers.append(lambda: metrics.db_pool_in_use.set(pool.get_size() - pool.get_idle_size()))
    start_signin(state, stack)

    async def database_health() -> dict[str, Any]:
        await pool.fetchval("SELECT 1")
        return {"ok": True, "detail": {"pool_size": pool.get_size()}}

    state.health_checks["database"] = database_health
    state.gatekeeper = Gatekeeper(chain, await open_gate_cache(settings, stack, modes), metrics=metrics)
    gates = RoomGates(state.gatekeeper)
    state.achievements = open_achievements(state)
    on_event = state.achievements.record
    history = History(pool, on_event=on_event, metrics=metrics)
    observer = start_recorder(settings, stack, modes)
    state.realtime = await open_realtime(settings, stack, history, state.sessions.is_live, modes,
                                         observer=observer, metrics=metrics)
    state.health_checks["redis"] = state.realtime.health
    metrics.samplers.append(state.realtime.sample_metrics)
    state.rooms = RoomService(pool, gate=gates.check_join, gate_validator=gates.validate,
                              gate_recheck_seconds=settings.gate_recheck_seconds,
                              on_event=on_event, removed=state.realtime.remove)
    start_rechecker(state, stack, state.realtime.local_users)
    start_focus(state, stack)

    async def solana_health() -> dict[str, Any]:
        healthy = await chain.health()
        detail: dict[str, Any] = {"url": redact_url(rpc_url)}
        if state.rechecker is not None:
            detail["recheck"] = asdict(state.rechecker.stats)
        return {"ok": healthy, "detail": detail}

    state.health_checks["solana"] = solana_health
    await open_blobs(settings, stack, state)
    state.nft = nft.from_settings(settings, pool, chain, state.public_blobs, state.rooms, modes,
                                  metrics=metrics)
    await open_library(settings, stack, state, embedder)
    state.tutor, tutor_handler = open_tutor(settings, stack, pool, state.embedder, state.realtime, modes,
                                            limiters=limit, metrics=metrics)
    link_room_events(state)
    state.frames = Frames(state.realtime, history, frame_hooks(state, tutor_handler), limiters=limit)
    start_sampling(state, stack)
    return state


SAMPLE_SECONDS = 5.0
"""How often each process refreshes its sampled gauges (pool use, broker state)."""
FEE_PAYER_SECONDS = 60.0
"""How often the sponsored-mint fee payer's balance is read for its gauge."""


def start_sampling(state: AppState, stack: AsyncExitStack) -> None:
    """Refresh the sampled gauges every SAMPLE_SECONDS (each worker writes its own: a scrape
    answered by another worker still sees them), and the fee payer's balance in sponsored
    minting every FEE_PAYER_SECONDS; `stack` stops both."""

    async def sample() -> None:
        while True:
            state.metrics.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    tasks = [asyncio.create_task(sample(), name="metrics-sample")]
    if state.nft is not None and state.settings.nft_mint_mode == "sponsored":
        tasks.append(asyncio.create_task(_watch_fee_payer(state.nft, state.metrics), name="fee-payer"))
    for task in tasks:
        stack.push_async_callback(_cancel, task)


async def _watch_fee_payer(service: nft.NftService, metrics: Metrics) -> None:
    while True:
        try:
            balance = await service.fee_payer_balance()
        except errors.Unavailable:
            balance = None  # logged by the chain reader; the gauge keeps its last reading
        if balance is not None:
            metrics.fee_payer_lamports.set(balance)
        await asyncio.sleep(FEE_PAYER_SECONDS)


def open_achievements(state: AppState) -> Achievements:
    """Achievements, whose `record` the services get as their event hook. They are built
    before the realtime node (which needs the services), so an earned one is announced
    through `state.realtime` as it is when the announcement happens."""

    async def announce(user_id: uuid.UUID, room_id: uuid.UUID | None, achievement: Achievement) -> None:
        await state.realtime.announce_achievement(user_id, room_id, achievement)

    return Achievements(state.db, announce=announce)


def link_room_events(state: AppState) -> None:
    """What REST-side services do that rooms must see goes through the realtime write path."""
    realtime = state.realtime
    if state.nft is not None:
        state.nft.announce = realtime.announce
    state.library.on_shared = realtime.document_shared
    state.ingestor.notify = realtime.notify_user


def frame_hooks(state: AppState, tutor: TutorHandler) -> Hooks:
    """The policy socket frames run under: the library's document checks, the tutor and the
    room's roles."""

    async def check_highlight(caller: Caller, frame: HighlightCreate) -> RowWriter:
        return await state.highlights.check_frame(caller.room_id, caller.user_id, frame)

    async def may_share(caller: Caller, document_id: uuid.UUID) -> str | None:
        """`Library.point_room_to`: owners and admins make sure the room can read it."""
        return (await state.library.point_room_to(document_id, caller.user_id, caller.room_id)).title

    return Hooks(is_moderator=state.rooms.is_moderator, kick=state.rooms.kick,
                 check_highlight=check_highlight, may_share=may_share, tutor=tutor)


async def open_blobs(settings: Settings, stack: AsyncExitStack, state: AppState) -> None:
    """The two namespaces, `public/` (published, served by /ipfs) and `private/` (uploads): in
    the object store `BLOB_STORE_URL` names (shared by every node), else under DATA_DIR/blobs,
    where a store of the single-namespace layout is split between them first."""
    if settings.blob_store_url:
        await open_object_store(settings, stack, state)
        return
    root = settings.data_dir.resolve() / "blobs"
    root.mkdir(parents=True, exist_ok=True)
    uploads = {row["blob_cid"] for row in await state.db.fetch("SELECT DISTINCT blob_cid FROM documents")}
    moved = await asyncio.to_thread(split_legacy_layout, root, uploads.__contains__)
    if moved:
        log.warning("moved %d blob(s) of the old layout into %s/{public,private}", moved, root)
    state.public_blobs = LocalBlobStore(root / PUBLIC)
    state.private_blobs = LocalBlobStore(root / PRIVATE)
    state.modes["blobs"] = f"local directory {root}"


async def open_object_store(settings: Settings, stack: AsyncExitStack, state: AppState) -> None:
    """Both namespaces as key prefixes of one bucket, created when missing; `/health` probes it."""
    try:
        from roomserver.store.s3blobs import (
            S3BlobStore,
            S3Credentials,
            S3Location,
            ensure_bucket,
            open_s3,
        )
    except ImportError as exc:
        raise RuntimeError(f"BLOB_STORE_URL needs the [s3] extra (missing {exc.name})") from None
    where = S3Location.parse(settings.blob_store_url)
    credentials = S3Credentials(endpoint_url=settings.aws_endpoint_url, region=settings.aws_region,
                                access_key_id=settings.aws_access_key_id,
                                secret_access_key=settings.aws_secret_access_key.get_secret_value())
    client = await open_s3(stack, credentials)
    await ensure_bucket(client, where.bucket)
    spool = settings.data_dir.resolve() / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    public, private = (S3BlobStore(client, where.bucket, f"{where.prefix}{name}/", spool_dir=spool,
                                   part_size=settings.blob_part_size_bytes) for name in (PUBLIC, PRIVATE))
    state.public_blobs, state.private_blobs = public, private
    endpoint = redact_url(settings.aws_endpoint_url) or "AWS S3"
    state.modes["blobs"] = f"object storage s3://{where.bucket}/{where.prefix} at {endpoint}"
    state.health_checks["blobs"] = private.health


async def open_library(settings: Settings, stack: AsyncExitStack, state: AppState,
                       embedder: Embedder | None) -> None:
    """The embedding model (loading in the background), ingestion workers, library, highlights.

    Without `embedder` and without the `[embeddings]` extra, the library runs lexical-only."""
    if embedder is None and not missing_embedding_packages():
        model = MiniLMEmbedder()
        if settings.embeddings_preload:
            model.start()
        stack.push_async_callback(asyncio.to_thread, model.close)
        embedder = model
    state.embedder = embedder
    state.ingestor = Ingestor(state.db, state.private_blobs, embedder, metrics=state.metrics,
                              concurrency=settings.ingest_concurrency,
                              lease_seconds=settings.ingest_lease_seconds, limits=extraction_limits(settings),
                              max_extract_crashes=settings.ingest_max_extract_crashes)
    if settings.ingest_concurrency:
        state.ingestor.start()
    stack.push_async_callback(state.ingestor.close)
    membership = state.rooms.verified_membership  # REST reads re-verify stale gated members
    quotas = Quotas(max_documents=settings.library_max_documents, max_bytes=settings.library_max_bytes,
                    max_pending_jobs=settings.library_max_pending_jobs)
    state.library = Library(state.db, state.private_blobs, embedder, membership=membership,
                            wake_ingest=state.ingestor.wake, quotas=quotas,
                            on_event=state.achievements.record)
    sweeper = asyncio.create_task(state.library.keep_sweeping(settings.blob_sweep_seconds), name="blob-sweep")
    stack.push_async_callback(_cancel, sweeper)
    state.highlights = Highlights(state.db, state.library, membership=membership,
                                  in_room=state.realtime.highlight_created,
                                  on_event=state.achievements.record)
    await check_library(state, embedder, settings.ingest_concurrency)


async def check_library(state: AppState, embedder: Embedder | None, workers: int) -> None:
    """The library's mode line and health: hybrid or lexical-only search, the model, and how
    many stored chunks vector search cannot use (another model's vectors, or none)."""
    model = embedder.model_id if embedder is not None else None
    census = await vector_census(state.db, model)
    if embedder is None:
        search_mode = "lexical"
        mode = ("lexical search only: the [embeddings] extra is not installed "
                f"(missing {', '.join(missing_embedding_packages())}); chunks stored without vectors")
    else:
        search_mode = "hybrid"
        mode = f"hybrid search, {type(embedder).__name__} embeddings ({model})"
        if census["other_model"]:
            log.warning("%d stored chunks were embedded by another model than %s: vector search "
                        "ignores them (full text still finds them) until their documents are "
                        "uploaded again", census["other_model"], model)
    state.modes["library"] = f"{mode}, {workers} ingestion worker(s)"
    detail: dict[str, Any] = {"search": search_mode, "embedding_model": model,
                              "chunks_other_model": census["other_model"],
                              "chunks_without_vector": census["without_vector"]}

    async def library_health() -> dict[str, Any]:
        return {"ok": True, "detail": dict(detail)}

    state.health_checks["library"] = library_health


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def extraction_limits(settings: Settings) -> ExtractionLimits:
    s = settings
    return ExtractionLimits(memory_bytes=s.ingest_memory_bytes, cpu_seconds=s.ingest_cpu_seconds,
                            wall_seconds=s.ingest_wall_seconds, max_chars=s.ingest_max_chars,
                            max_rows=s.ingest_max_rows, max_cells=s.ingest_max_cells,
                            max_label_chars=s.ingest_max_label_chars, max_depth=s.ingest_max_depth)


async def open_solana(settings: Settings, stack: AsyncExitStack, modes: dict[str, str],
                      metrics: Metrics) -> tuple[ChainReader, str]:
    """The one chain reader: SOLANA_RPC_URL, or a local ledger started (and stopped) with the app."""
    url = settings.solana_rpc_url
    if url:
        modes["solana"] = f"RPC at {redact_url(url)} (chain {settings.solana_chain_id})"
    else:
        ledger_dir = settings.data_dir.resolve() / "ledger"
        ledger = start_ledger(ledger_dir)
        stack.callback(ledger.stop)
        url = ledger.url
        modes["solana"] = f"local ledger (LiteSVM) at {url}, state in {ledger_dir}"
    timeout = settings.solana_rpc_timeout_seconds
    client = AsyncClient(url, commitment=Confirmed, timeout=timeout)
    stack.push_async_callback(client.close)
    return ChainReader(client, timeout_seconds=timeout, metrics=metrics), url


def open_limiters(settings: Settings, stack: AsyncExitStack, modes: dict[str, str]) -> LimiterFactory:
    """Per-minute limits counted in Redis (shared by every node) with REDIS_URL, else in memory."""
    if not settings.redis_url:
        modes["limits"] = "rate limits counted in memory (this node)"
        return limiters(None)
    # short timeouts, one retry: a check that cannot reach Redis soon counts on this node
    client = redis_client(settings.redis_url, cluster=settings.redis_cluster, timeout=0.5, retries=1)
    stack.push_async_callback(client.aclose)
    modes["limits"] = "rate limits counted in Redis (shared by every node)"
    return limiters(client)


async def open_gate_cache(settings: Settings, stack: AsyncExitStack, modes: dict[str, str]) -> GateCache:
    """Gate decisions cached in Redis (shared by every node) with REDIS_URL, else in memory."""
    if not settings.redis_url:
        modes["gating"] = "gate decisions cached in memory (this node)"
        return MemoryGateCache()
    client = redis_client(settings.redis_url, cluster=settings.redis_cluster)
    stack.push_async_callback(client.aclose)
    modes["gating"] = "gate decisions cached in Redis (shared by every node)"
    return RedisGateCache(client)


def start_signin(state: AppState, stack: AsyncExitStack) -> None:
    """Sign-in with its cap on outstanding challenges, and the purge of expired challenges and
    sessions every PURGE_INTERVAL_SECONDS (its first pass at once); `stack` stops the purge."""
    settings = state.settings
    cap = ChallengeCap(settings.challenge_cap, retry_after=settings.purge_interval_seconds)
    state.signin = SignIn(state.db, state.sessions, settings, cap)
    state.purger = Purger(state.db, cap, interval=settings.purge_interval_seconds)
    state.purger.start()
    stack.push_async_callback(state.purger.close)


FOCUS_TICK_SECONDS = 1.0
"""How often each node looks for focus timers whose phase boundary passed."""


def start_focus(state: AppState, stack: AsyncExitStack) -> FocusService:
    """Focus timers: state frames through the realtime node's ephemeral path, presence from the
    shared store, and a boundary loop (every FOCUS_TICK_SECONDS) stopped by `stack`."""
    realtime = state.realtime

    async def emit(room_id: uuid.UUID, focus: FocusState) -> None:
        await realtime.emit(str(room_id), encode(focus))

    async def present(room_id: uuid.UUID) -> set[uuid.UUID]:
        return {uuid.UUID(u) for u in await realtime.present_users(str(room_id))}

    state.focus = FocusService(state.db, state.rooms, emit=emit, present=present)

    ticks = Periodic("focus boundary tick", FOCUS_TICK_SECONDS, state.focus.tick)
    ticks.start()
    stack.push_async_callback(ticks.close)
    return state.focus


def start_rechecker(state: AppState, stack: AsyncExitStack, local_users: LocalUsers) -> Rechecker:
    """Re-verify members of gated rooms connected to this node every GATE_RECHECK_SECONDS;
    `stack` stops it (before the hub it uses, when called after the hub was opened)."""
    rechecker = Rechecker(local_users, state.rooms, state.gatekeeper,
                          interval=state.settings.gate_recheck_seconds)
    rechecker.start()
    stack.push_async_callback(rechecker.close)
    state.rechecker = rechecker
    return rechecker


async def _typed_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.RoomserverError)
    log.info("%s %s -> %s %s: %s", request.method, request.url.path, exc.status, exc.code, exc.message)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    typed = errors.RoomserverError(str(exc.detail), code=code)
    typed.status = exc.status_code
    return error_response(typed)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(errors.RoomserverError("internal error; it has been logged"))


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory roomserver.app:app_from_env` and multi-worker serve.

    Bad settings are logged by variable name and exit with status 2, without a traceback."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        for var, problem in exc.problems:
            log.critical("bad setting %s: %s", var, problem)
        raise SystemExit(2) from None
    return create_app(settings)
