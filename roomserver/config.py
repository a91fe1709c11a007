"""One frozen settings object, read from the environment once and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str


# name -> (environment variable, default as text, description). The README table mirrors this.
SETTINGS: dict[str, Setting] = {
    "database_url": Setting("DATABASE_URL", "", "PostgreSQL URL; empty starts an embedded PostgreSQL + pgvector in DATA_DIR"),
    "redis_url": Setting("REDIS_URL", "", "Redis URL for cross-node fan-out and presence; empty runs a single node in memory"),
    "solana_rpc_url": Setting("SOLANA_RPC_URL", "", "Solana JSON-RPC URL; empty starts the local ledger"),
    "solana_chain_id": Setting("SOLANA_CHAIN_ID", "localnet", "chain ID that sign-in messages must name"),
    "anthropic_api_key": Setting("ANTHROPIC_API_KEY", "", "enables the Claude tutor; empty runs the offline tutor"),
    "anthropic_base_url": Setting("ANTHROPIC_BASE_URL", "", "override of the Anthropic API base URL"),
    "tutor_model": Setting("TUTOR_MODEL", "claude-sonnet-4-5", "model the tutor asks"),
    "tutor_max_tokens": Setting("TUTOR_MAX_TOKENS", "1024", "longest tutor answer, in model tokens"),
    "tutor_timeout_seconds": Setting("TUTOR_TIMEOUT_SECONDS", "20", "Anthropic request timeout: connecting, and silence between stream events"),
    "tutor_deadline_seconds": Setting("TUTOR_DEADLINE_SECONDS", "120", "longest a whole tutor answer may stream"),
    "tutor_max_retries": Setting("TUTOR_MAX_RETRIES", "2", "retries of a failed Anthropic request before the stream starts"),
    "tutor_top_k": Setting("TUTOR_TOP_K", "5", "passages of the room's documents given to the tutor per question"),
    "tutor_min_score": Setting("TUTOR_MIN_SCORE", "0.35", "offline tutor: lowest passage similarity that counts as covering a question"),
    "tutor_history_tokens": Setting("TUTOR_HISTORY_TOKENS", "2000", "budget of a thread's earlier turns sent with a question"),
    "tutor_user_questions_per_minute": Setting("TUTOR_USER_QUESTIONS_PER_MINUTE", "6", "tutor questions per user per minute"),
    "tutor_room_questions_per_minute": Setting("TUTOR_ROOM_QUESTIONS_PER_MINUTE", "20", "tutor questions per room per minute"),
    "tutor_user_streams": Setting("TUTOR_USER_STREAMS", "2", "tutor answers streaming at once per user (per node)"),
    "tutor_room_streams": Setting("TUTOR_ROOM_STREAMS", "4", "tutor answers streaming at once per room (per node)"),
    "tutor_user_tokens_per_day": Setting("TUTOR_USER_TOKENS_PER_DAY", "100000", "tutor tokens (in + out) per user per UTC day"),
    "tutor_room_tokens_per_day": Setting("TUTOR_ROOM_TOKENS_PER_DAY", "500000", "tutor tokens (in + out) per room per UTC day"),
    "public_origin": Setting("PUBLIC_ORIGIN", "", "origin sign-in binds to (scheme://host:port); empty: http://HOST:PORT"),
    "allowed_origins": Setting("ALLOWED_ORIGINS", "", "comma-separated browser origins allowed for CORS and WebSockets; empty: PUBLIC_ORIGIN only"),
    "session_ttl_seconds": Setting("SESSION_TTL_SECONDS", "86400", "lifetime of a sign-in session"),
    "nonce_ttl_seconds": Setting("NONCE_TTL_SECONDS", "600", "lifetime of a sign-in challenge"),
    "max_body_bytes": Setting("MAX_BODY_BYTES", "1048576", "largest JSON request body"),
    "max_upload_bytes": Setting("MAX_UPLOAD_BYTES", "52428800", "largest document upload"),
    "ingest_concurrency": Setting("INGEST_CONCURRENCY", "2", "document ingestion jobs run at once per process"),
    "ingest_lease_seconds": Setting("INGEST_LEASE_SECONDS", "30", "how long a crashed node's ingestion job waits before another node resumes it"),
    "data_dir": Setting("DATA_DIR", "./data", "where the embedded database, ledger and blobs live"),
    "host": Setting("HOST", "127.0.0.1", "address serve binds to"),
    "port": Setting("PORT", "8000", "port serve binds to"),
    "rate_limit_per_minute": Setting("RATE_LIMIT_PER_MINUTE", "600", "authenticated REST requests per minute, per user and per IP"),
    "gate_recheck_seconds": Setting("GATE_RECHECK_SECONDS", "60", "how often members of token/NFT-gated rooms connected to a node are re-verified on chain"),
    "log_level": Setting("LOG_LEVEL", "info", "logging level"),
    "ws_auth_timeout_seconds": Setting("WS_AUTH_TIMEOUT_SECONDS", "5", "how long a socket without a bearer subprotocol may take to send its auth frame"),
    "ws_recovery_window": Setting("WS_RECOVERY_WINDOW", "1000", "most events `resume` replays; a larger gap answers complete=false (reload via REST)"),
    "ws_session_recheck_seconds": Setting("WS_SESSION_RECHECK_SECONDS", "30", "how often open sockets' sessions are re-checked (revoked/expired: closed 4105)"),
    "ws_chat_per_minute": Setting("WS_CHAT_PER_MINUTE", "120", "durable frames (chat, reactions, shares, ...) per user per minute"),
    "ws_typing_per_minute": Setting("WS_TYPING_PER_MINUTE", "120", "typing frames per user per minute"),
    "embeddings_preload": Setting("EMBEDDINGS_PRELOAD", "true", "load the embedding model at start-up (in the background); false: on first use"),
    "record_rooms": Setting("RECORD_ROOMS", "", "opt-in traffic recording (docs/loadtests.md): comma-separated room ids, or * for all; empty: off"),
    "record_dir": Setting("RECORD_DIR", "", "where recordings are written; empty: DATA_DIR/recordings"),
    "presence_ttl_seconds": Setting("PRESENCE_TTL_SECONDS", "60", "a crashed node's users vanish from presence after this long"),
    "presence_leave_grace_ms": Setting("PRESENCE_LEAVE_GRACE_MS", "3000", "a user who reconnects within this long is not announced as left"),
    "nft_mint_mode": Setting("NFT_MINT_MODE", "wallet", "wallet: users sign and pay for mints; sponsored: the server's fee payer does"),
    "nft_fee_payer_keypair": Setting("NFT_FEE_PAYER_KEYPAIR", "", "keypair file (solana-CLI JSON) of the fee payer for sponsored mints; empty: DATA_DIR/keys/fee-payer.json, generated on localnet"),
    "nft_authority_keypair": Setting("NFT_AUTHORITY_KEYPAIR", "", "keypair file of the collection/metadata update authority; empty: DATA_DIR/keys/collection-authority.json, generated on localnet"),
}


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    redis_url: str = ""
    solana_rpc_url: str = ""
    solana_chain_id: str = "localnet"
    anthropic_api_key: str = field(default="", repr=False)
    anthropic_base_url: str = ""
    tutor_model: str = "claude-sonnet-4-5"
    tutor_max_tokens: int = 1024
    tutor_timeout_seconds: float = 20.0
    tutor_deadline_seconds: float = 120.0
    tutor_max_retries: int = 2
    tutor_top_k: int = 5
    tutor_min_score: float = 0.35
    tutor_history_tokens: int = 2000
    tutor_user_questions_per_minute: int = 6
    tutor_room_questions_per_minute: int = 20
    tutor_user_streams: int = 2
    tutor_room_streams: int = 4
    tutor_user_tokens_per_day: int = 100_000
    tutor_room_tokens_per_day: int = 500_000
    public_origin: str = ""
    allowed_origins: tuple[str, ...] = ()
    session_ttl_seconds: int = 86400
    nonce_ttl_seconds: int = 600
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 50 << 20
    ingest_concurrency: int = 2
    ingest_lease_seconds: int = 30
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 8000
    rate_limit_per_minute: int = 600
    gate_recheck_seconds: int = 60
    log_level: str = "info"
    ws_auth_timeout_seconds: int = 5
    ws_recovery_window: int = 1000
    ws_session_recheck_seconds: int = 30
    ws_chat_per_minute: int = 120
    ws_typing_per_minute: int = 120
    embeddings_preload: bool = True
    record_rooms: str = ""
    record_dir: str = ""
    presence_ttl_seconds: int = 60
    presence_leave_grace_ms: int = 3000
    nft_mint_mode: str = "wallet"
    nft_fee_payer_keypair: str = ""
    nft_authority_keypair: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            spec = SETTINGS[f.name]
            raw = env.get(spec.env, spec.default)
            values[f.name] = _convert(f.name, raw)
        values.update(overrides)
        return cls(**values)

    @property
    def origin(self) -> str:
        """The origin sign-in messages bind to, without a trailing slash."""
        if self.public_origin:
            return self.public_origin.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def domain(self) -> str:
        """host[:port] of the public origin: the SIWS `domain`."""
        return self.origin.split("://", 1)[-1]

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return self.allowed_origins or (self.origin,)


def _convert(name: str, raw: str) -> Any:
    kind = Settings.__dataclass_fields__[name].type
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return _boolean(raw)
    except ValueError:
        raise ValueError(f"{SETTINGS[name].env}={raw!r} is not a valid {kind}") from None
    if kind == "Path":
        return Path(raw)
    if kind == "tuple[str, ...]":
        return tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    return raw


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)
