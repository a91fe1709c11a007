"""One frozen settings object, declared once, read from the environment once and passed down.

Every setting is one field of `Settings`: its type, default and help text (the field's
`description`) are stated here and nowhere else. Its environment variable is the field name
upper-cased. `python -m roomserver --help` and the README's settings table are generated
from these declarations (`help_lines`, `markdown_table`; tests/test_config.py checks that the
README agrees). `Settings.from_env` validates every value at once and raises `SettingsError`
naming each bad variable, so the command line can refuse bad settings before anything starts.

`Settings` is a frozen pydantic dataclass: `dataclasses.replace(settings, port=...)` works and
validates the changed values too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["auto", "json", "text"]
OptionalComponent = Literal["solana", "library"]
MintMode = Literal["wallet", "sponsored"]
BLOB_URL = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?)?$"
"""`BLOB_STORE_URL`: empty, or s3:// and a bucket name S3 accepts, then an optional key prefix."""
ENV_FILE = ".env"
"""Read from the working directory by `from_env()` when it exists; real variables win."""


def _origins(raw: Any) -> Any:
    """`ALLOWED_ORIGINS`: comma-separated text to a tuple of origins without trailing slashes."""
    if isinstance(raw, str):
        return tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    return raw


def _flag(raw: Any) -> Any:
    """An empty boolean variable means false (pydantic accepts 1/0, true/false, yes/no, on/off)."""
    return False if isinstance(raw, str) and not raw.strip() else raw


def _lower(raw: Any) -> Any:
    return raw.strip().lower() if isinstance(raw, str) else raw


Origins = Annotated[tuple[str, ...], BeforeValidator(_origins)]
Components = Annotated[tuple[OptionalComponent, ...], BeforeValidator(_origins)]
Flag = Annotated[bool, BeforeValidator(_flag)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid", hide_input_in_errors=True))
class Settings:
    database_url: str = Field("", repr=False, description="PostgreSQL URL (needs the `vector` extension available); empty starts an embedded PostgreSQL + pgvector in `DATA_DIR`")
    redis_url: str = Field("", repr=False, description="Redis URL for cross-node fan-out and presence; empty runs a single node in memory")
    redis_cluster: Flag = Field(False, description="`REDIS_URL` names a node of a Redis Cluster (7+): room fan-out uses sharded pub/sub, a room's keys share one hash slot (docs/operations.md)")
    solana_rpc_url: str = Field("", description="Solana JSON-RPC URL; empty starts the local ledger")
    solana_chain_id: str = Field("localnet", description="chain ID that sign-in messages must name (`mainnet`, `devnet`, ...)")
    anthropic_api_key: SecretStr = Field(SecretStr(""), description="enables the Claude tutor; empty runs the offline tutor")
    anthropic_base_url: str = Field("", description="override of the Anthropic API base URL")
    tutor_model: str = Field("claude-sonnet-4-5", description="model the tutor asks")
    tutor_max_tokens: int = Field(1024, gt=0, description="longest tutor answer, in model tokens")
    tutor_timeout_seconds: float = Field(20.0, gt=0, description="Anthropic request timeout: connecting, and silence between stream events")
    tutor_deadline_seconds: float = Field(120.0, gt=0, description="longest a whole tutor answer may stream")
    tutor_max_retries: int = Field(2, ge=0, description="retries of a failed Anthropic request before the stream starts")
    tutor_top_k: int = Field(5, gt=0, description="passages of the room's documents given to the tutor per question")
    tutor_min_score: float = Field(0.35, ge=-1, le=1, description="offline tutor: lowest passage similarity that counts as covering a question")
    tutor_history_tokens: int = Field(2000, ge=0, description="budget of a thread's earlier turns sent with a question")
    tutor_user_questions_per_minute: int = Field(6, gt=0, description="tutor questions per user per minute")
    tutor_room_questions_per_minute: int = Field(20, gt=0, description="tutor questions per room per minute")
    tutor_user_streams: int = Field(2, gt=0, description="tutor answers streaming at once per user (per node)")
    tutor_room_streams: int = Field(4, gt=0, description="tutor answers streaming at once per room (per node)")
    tutor_user_tokens_per_day: int = Field(100_000, gt=0, description="tutor tokens (in + out) per user per UTC day")
    tutor_room_tokens_per_day: int = Field(500_000, gt=0, description="tutor tokens (in + out) per room per UTC day")
    tutor_total_tokens_per_day: int = Field(5_000_000, gt=0, description="tutor tokens (in + out) of the whole deployment per UTC day, all nodes together (429 `tutor_daily_ceiling`)")
    public_origin: str = Field("", description="origin sign-in messages bind to (`scheme://host:port`: domain and URI); empty: `http://HOST:PORT`")
    allowed_origins: Origins = Field((), description="comma-separated browser origins allowed for CORS and WebSocket `Origin` checks; empty: `PUBLIC_ORIGIN` only")
    session_ttl_seconds: int = Field(86400, gt=0, description="lifetime of a sign-in session")
    nonce_ttl_seconds: int = Field(600, gt=0, description="lifetime of a sign-in challenge")
    challenge_cap: int = Field(100_000, gt=0, description="most sign-in challenges outstanding (unconsumed, unexpired) across the deployment; past it, 429 `challenges_exhausted`")
    purge_interval_seconds: int = Field(300, gt=0, description="how often expired sign-in challenges and sessions are deleted (also at start-up)")
    max_body_bytes: int = Field(1 << 20, gt=0, description="largest JSON request body")
    max_upload_bytes: int = Field(50 << 20, gt=0, description="largest document upload")
    ingest_concurrency: int = Field(2, ge=0, description="document ingestion jobs run at once per process; 0: this node claims none (other nodes of the deployment ingest)")
    ingest_lease_seconds: int = Field(30, gt=0, description="how long a crashed node's ingestion job waits before another node resumes it")
    ingest_max_chars: int = Field(20_000_000, gt=0, description="most characters extracted from one document of any kind; past it the job fails `too_large`")
    ingest_max_rows: int = Field(200_000, gt=0, description="most rows of one CSV")
    ingest_max_cells: int = Field(2_000_000, gt=0, description="most cells of one CSV, all rows together")
    ingest_max_label_chars: int = Field(1000, gt=0, description="longest CSV header label (each label is repeated on every row)")
    ingest_max_depth: int = Field(64, gt=0, description="deepest Markdown nesting on one line (block quotes, list levels, indents, open brackets)")
    ingest_memory_bytes: int = Field(1 << 30, ge=64 << 20, description="address-space limit of the extraction child process")
    ingest_cpu_seconds: int = Field(60, gt=0, description="CPU-time limit of the extraction child process")
    ingest_wall_seconds: float = Field(120.0, gt=0, description="wall-time limit of one extraction")
    ingest_max_extract_crashes: int = Field(2, gt=0, description="times a node may die while extracting a job before the job fails (`extraction_crashed`) instead of moving to the next node")
    library_max_documents: int = Field(500, gt=0, description="live documents per user (429 `upload_quota_exceeded`)")
    library_max_bytes: int = Field(1 << 30, gt=0, description="bytes of live documents per user (413 `storage_quota_exceeded`)")
    library_max_pending_jobs: int = Field(20, gt=0, description="unfinished ingestion jobs per user (429 `too_many_pending_jobs`)")
    blob_sweep_seconds: int = Field(3600, ge=0, description="how often uploads that no live document references are deleted from the private blob store; 0: only at start-up")
    blob_store_url: str = Field("", pattern=BLOB_URL, description="where uploads and published blobs live: `s3://bucket/prefix` for S3-compatible object storage that every node shares (the bucket, 3-63 characters, is created when missing; endpoint and keys from the `AWS_*` settings); empty: `DATA_DIR/blobs` on this node's disk (a single node)")
    blob_part_size_bytes: int = Field(8 << 20, ge=5 << 20, description="object storage: files larger than this go up as multipart uploads of parts this size, read from disk one part at a time")
    aws_endpoint_url: str = Field("", description="object storage endpoint (SeaweedFS, MinIO, ...); empty: AWS S3 itself")
    aws_region: str = Field("", description="object storage region; empty: botocore's default (`AWS_DEFAULT_REGION`, `~/.aws/config`, else `us-east-1`)")
    aws_access_key_id: str = Field("", repr=False, description="object storage access key; empty: botocore's credential chain (`~/.aws`, instance roles)")
    aws_secret_access_key: SecretStr = Field(SecretStr(""), description="object storage secret key")
    data_dir: Path = Field(Path("./data"), description="where the embedded database, ledger state and blobs live")
    host: str = Field("127.0.0.1", description="address `serve` binds to (`--host` overrides)")
    port: int = Field(8000, ge=0, le=65535, description="port `serve` binds to (`--port` overrides)")
    rate_limit_per_minute: int = Field(600, gt=0, description="authenticated REST requests per minute per user; four times as many unauthenticated requests and failed sign-ins per minute per client IP (IPv6: per /64)")
    forwarded_allow_ips: str = Field("", description="comma-separated addresses or networks (CIDR) of trusted reverse proxies: only from these are `X-Forwarded-For`/`X-Forwarded-Proto` believed for the client IP and scheme; `*` trusts every peer; empty: none (the peer address is the client)")
    operator_token: SecretStr = Field(SecretStr(""), description="bearer token of the operator (`Authorization: Bearer <token>`, compared in constant time): `GET /health/detail` shows each component, `/api/v1/operator/*` lists live rooms, disconnects users, closes rooms, broadcasts; empty: none of these is served (403)")
    log_format: Annotated[LogFormat, BeforeValidator(_lower)] = Field("auto", description="`json`: one JSON object per line (time, level, logger, message, request_id, conn_id, user_id, room_id); `text`: human-readable lines; `auto`: json when stderr is not a terminal, else text")
    ready_requires: Components = Field((), description="comma-separated optional components that `GET /ready` also requires (`solana`, `library`); the database, the broker and the object store always are")
    gate_recheck_seconds: int = Field(60, gt=0, description="how old a gated membership's last on-chain verification may get: members of token/NFT-gated rooms are re-verified at join, on REST reads once it is older, and by a sweep of all members this often")
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = Field("info", description="logging level: `critical`, `error`, `warning`, `info` or `debug`")
    ws_auth_timeout_seconds: int = Field(5, gt=0, description="how long a socket without a bearer subprotocol may take to send its `auth` frame")
    ws_ping_interval_seconds: float = Field(20, gt=0, description="how often the server pings each socket (a socket that misses the pong for `WS_PING_TIMEOUT_SECONDS` is closed 1011)")
    ws_ping_timeout_seconds: float = Field(20, gt=0, description="how long a ping may wait for its pong")
    ws_recovery_window: int = Field(1000, gt=0, description="most events `resume` replays; a larger gap answers `complete: false` (reload via REST)")
    ws_resume_per_minute: int = Field(6, gt=0, description="`resume` frames one socket may send per minute (a burst of 3); over it: `error rate_limited`, counted toward the flood close (4004)")
    ws_replay_max_bytes: int = Field(1 << 20, gt=0, description="most bytes one `resume` (or `?last_seq` connect) replays; a larger gap answers `complete: false` (reload via REST)")
    ws_session_recheck_seconds: int = Field(30, gt=0, description="how often open sockets' sessions are re-checked (revoked or expired: closed 4105)")
    ws_chat_per_minute: int = Field(120, gt=0, description="durable socket frames (chat, reactions, shares, highlights, moderation) per user per minute")
    ws_typing_per_minute: int = Field(120, gt=0, description="typing frames per user per minute")
    ws_sockets_per_user: int = Field(16, gt=0, description="open sockets one user may hold on one node; past it 429 `too_many_sockets` before accept, or close 4005 after an `auth` frame")
    ws_sockets_per_ip: int = Field(256, gt=0, description="open sockets one client IP (IPv6: one /64) may hold on one node, signed in or not; past it 429 `too_many_sockets` before accept")
    embeddings_preload: Flag = Field(True, description="load the embedding model at start-up in the background; `false`: on first use (saves ~300 MB on nodes that never embed)")
    record_rooms: str = Field("", description="opt-in traffic recording for load tests (docs/loadtests.md): comma-separated room ids, or `*` for all; users pseudonymised; empty: off")
    record_dir: str = Field("", description="where recordings are written; empty: `DATA_DIR/recordings`")
    presence_ttl_seconds: int = Field(60, gt=0, description="a crashed node's users vanish from presence after this long")
    presence_leave_grace_ms: int = Field(3000, ge=0, description="a user who reconnects within this long is not announced as left")
    nft_mint_mode: MintMode = Field("wallet", description="`wallet`: users sign and pay for their mints; `sponsored`: the server's fee payer signs, pays and sends (docs/nft.md)")
    nft_fee_payer_keypair: str = Field("", description="solana-CLI keypair file of the sponsor; empty: `DATA_DIR/keys/fee-payer.json`, generated (with a warning) only on localnet")
    nft_authority_keypair: str = Field("", description="keypair file of the collection and metadata update authority; empty: `DATA_DIR/keys/collection-authority.json`, generated only on localnet")
    nft_sponsored_user_mints_per_day: int = Field(10, ge=0, description="sponsored mode: mints one user may have sponsored per UTC day (429 `mint_quota_exceeded`)")
    nft_sponsored_mints_per_day: int = Field(500, ge=0, description="sponsored mode: mints the whole deployment sponsors per UTC day")
    nft_sponsored_lamports_per_day: int = Field(2_000_000_000, ge=0, description="sponsored mode: lamports (rent + fees) the fee payer may spend per UTC day")
    nft_sponsored_room_min_age_seconds: int = Field(3600, ge=0, description="sponsored mode: how old a room must be before it can be minted (429 `room_too_new`)")
    solana_rpc_timeout_seconds: float = Field(10.0, gt=0, description="longest one Solana RPC request may take (gating and minting share it)")
    validate_responses: Flag = Field(False, description="check every REST response against its endpoint's declared model and statuses; a breach answers 500 `response_contract` (tests and staging turn it on)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `environ` (default: the process environment over `./.env`), then `overrides`.

        Raises `SettingsError` listing every bad value by its variable name (secrets not echoed),
        `TypeError` for an override that is not a setting.
        """
        env = _process_env() if environ is None else environ
        unknown = set(overrides) - set(FIELDS)
        if unknown:
            raise TypeError(f"not settings: {sorted(unknown)}")
        values: dict[str, Any] = {name: env[var] for name, var in FIELDS.items() if var in env}
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(list(_problems(exc, values))) from None

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


FIELDS: dict[str, str] = {f.name: f.name.upper() for f in dataclasses.fields(Settings)}
"""Field name -> environment variable."""


class SettingsError(ValueError):
    """Bad settings: `problems` holds one (variable, message) per bad value."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{var}: {message}" for var, message in problems))


def _problems(exc: ValidationError, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        var = FIELDS.get(name, name)
        shown = "" if name not in values or _secret(name) else f" (got {values[name]!r})"
        yield var, f"{error['msg']}{shown}"


def _secret(name: str) -> bool:
    return _info(name).annotation is SecretStr


def _process_env() -> dict[str, str]:
    dotenv = dotenv_values(ENV_FILE) if Path(ENV_FILE).is_file() else {}
    return {**{k: v for k, v in dotenv.items() if v is not None}, **os.environ}


def _info(name: str) -> FieldInfo:
    """The declaration (default, description, bounds) of one setting."""
    infos: dict[str, FieldInfo] = Settings.__pydantic_fields__  # type: ignore[attr-defined]
    return infos[name]


def _default_text(name: str) -> str:
    default = _info(name).default
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if isinstance(default, bool):
        return str(default).lower()
    return "empty" if default in ("", ()) else str(default)


def _help(name: str) -> str:
    return _info(name).description or ""


def help_lines() -> list[str]:
    """One line per setting for `--help`: variable, help text, default."""
    return [f"  {var:<32} {_help(name).replace('`', '')} (default: {_default_text(name)})"
            for name, var in FIELDS.items()]


def markdown_table() -> str:
    """The README's settings table, generated: `python -m roomserver settings --markdown`."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, var in FIELDS.items():
        default = _default_text(name)
        shown = default if default == "empty" else f"`{default}`"
        meaning = _help(name).replace("|", "\\|")
        rows.append(f"| `{var}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


def describe(settings: Settings) -> list[str]:
    """`VAR=value` for each setting as in effect, secrets and URLs with credentials hidden."""
    lines = []
    for name, var in FIELDS.items():
        value = getattr(settings, name)
        hidden = isinstance(value, SecretStr) or (not _info(name).repr and bool(value))
        lines.append(f"{var}={'**********' if hidden else value}")
    return lines
