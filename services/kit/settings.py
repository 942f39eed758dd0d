"""Process settings, read once from the environment.

Plain ``DATABASE_URL``, ``REDIS_URL`` and ``PORT`` follow the twelve-factor convention that hosting
platforms set; everything else is ``CERDAS_*``. When the URLs are unset the CLI starts embedded
servers (see :mod:`services.kit.embedded`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.models import Role

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# An object is put under its key by one CopyObject, which S3 allows up to 5 GiB.
_S3_COPY_MAX_BYTES = 5 * 1024**3


# Signature algorithms an issuer may be trusted with: public-key ones only. "none" and the HMAC
# family (HS*) are refused: an HMAC "verified" with a published key proves nothing.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class OidcIssuer(BaseModel):
    """One trusted OpenID Provider (e.g. a Keycloak realm) and how its tokens' claims map to a
    Cerdas role and regions. Claim names may be dotted paths into nested claims
    (``realm_access.roles``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(description="The provider's issuer URL, exactly as tokens' `iss` says it")
    audience: str = Field(description="The `aud` a token for Cerdas carries")
    algorithms: tuple[str, ...] = ("RS256",)
    roles_claim: str = "realm_access.roles"
    # The provider's role names → Cerdas roles; the first entry the token holds wins.
    role_map: dict[str, Role] = Field(min_length=1)
    regions_claim: str = "kemendagri_codes"
    name_claim: str = "name"
    nip_claim: str = "nip"

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        loopback = parts.hostname in {"localhost", "127.0.0.1", "::1"}
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(f"an issuer is an https:// URL (http only on loopback), got {value!r}")
        return value

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused or not value:
            raise ValueError(
                f"algorithms must be public-key ones ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); "
                f"refused: {refused or 'an empty list'}"
            )
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CERDAS_", extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "CERDAS_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "CERDAS_REDIS_URL")
    )
    port: int = Field(default=8000, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    host: str = "127.0.0.1"
    data_dir: Path = Path(".cerdas")
    evidence_dir: Path | None = None
    evidence_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    # Where evidence files are kept: the local folder evidence_path, or an S3-compatible bucket
    # (credentials from the standard AWS chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    # AWS_PROFILE with the shared credentials file, a web identity token file, instance roles).
    evidence_backend: Literal["local", "s3"] = "local"
    evidence_s3_bucket: str | None = Field(default=None, validate_default=True)
    # Keys are <prefix><ab>/<sha256>; uploads in progress are staged under <prefix>.incoming/.
    evidence_s3_prefix: str = ""
    # Unset: AWS itself; set it for MinIO, SeaweedFS, Ceph, R2 and other S3-compatible stores.
    evidence_s3_endpoint_url: str | None = None
    # Unset: AWS_REGION / AWS_DEFAULT_REGION or the AWS config file.
    evidence_s3_region: str | None = None
    evidence_s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Files larger than one part go up as a multipart upload in parts of this size (S3's
    # minimum part is 5 MiB); smaller files in one PUT. Each upload in flight buffers one part.
    evidence_s3_part_size_bytes: int = Field(
        default=8 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024**3
    )
    # Downloads answer 307 to a presigned URL valid this long, instead of streaming through.
    evidence_s3_presign_downloads: bool = False
    evidence_s3_presign_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # human: one readable line per record (the default); json: one JSON object per line, with
    # the request id of the request being served (services/kit/logs.py).
    log_format: Literal["human", "json"] = "human"
    # `cerdas worker` serves its Prometheus metrics at /metrics on this port (it has no HTTP
    # API); unset: none (in multiprocess mode an HTTP service beside it serves them).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # How long a request waits for a free database connection before it is answered 503.
    db_pool_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    # Request bodies, by kind (see docs/api.md, "Limits"): JSON, CSV imports; evidence uploads
    # are bounded by evidence_max_bytes.
    json_max_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    csv_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # Longest CSV line; longer is a 422 naming the line.
    csv_max_line_bytes: int = Field(default=64 * 1024, ge=256)
    # A client that sends nothing for this long while its body is due gets 408; a body that
    # takes longer than body_total_seconds in all, too.
    body_idle_seconds: float = Field(default=15.0, gt=0, le=3600)
    body_total_seconds: float = Field(default=600.0, gt=0, le=86400)
    # Requests per minute per API key, and per client address without a key (0: unlimited).
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    anonymous_rate_limit_per_minute: int = Field(default=600, ge=0)
    # The sweeper re-enqueues outbox rows older than this, checking as often.
    sweep_seconds: int = Field(default=5, ge=1, le=60)
    # Longest a job may run; a job whose worker died is retried this much (+10 s) later.
    job_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    # First webhook retry after this many seconds, then 5× longer each time (8 attempts).
    webhook_backoff_seconds: float = Field(default=5.0, gt=0, le=3600)
    # Encrypts webhook signing secrets at rest: a Fernet key (32 url-safe base64-encoded bytes).
    # Unset: a key made once and kept in data_dir (webhook-secret.key, mode 0600), which every
    # process must share; unset is refused when DATABASE_URL names another machine.
    webhook_secret_key: SecretStr | None = Field(default=None, validate_default=True)
    # Deliver webhooks to loopback, private, link-local and other non-public addresses
    # (development and tests only).
    webhook_allow_private_targets: bool = False
    # People sign in with their organisation's SSO: the OpenID Providers whose bearer tokens
    # (JWTs) are accepted, as a JSON list of OidcIssuer objects; empty: API keys only.
    oidc_issuers: tuple[OidcIssuer, ...] = ()
    # Clock skew allowed on a token's exp, nbf and iat.
    oidc_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # A token signed by a key not in the cached JWKS refetches it, at most this often per issuer.
    oidc_jwks_cooldown_seconds: float = Field(default=60.0, ge=0, le=86400)
    # Browser origins allowed to call the API (CORS), comma-separated; none by default.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in _POSTGRES_SCHEMES:
            raise ValueError(
                f"expected a postgresql:// URL, got {value!r} "
                "(unset it to use the embedded Postgres)"
            )
        return to_asyncpg_url(value)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if urlsplit(value).scheme not in _REDIS_SCHEMES:
            raise ValueError(
                f"expected a redis:// or unix:// URL, got {value!r} "
                "(unset it to use the embedded Redis)"
            )
        return value

    @field_validator("evidence_backend")
    @classmethod
    def _check_evidence_backend(cls, value: str, info: ValidationInfo) -> str:
        largest = info.data.get("evidence_max_bytes")
        if value == "s3" and largest is not None and largest > _S3_COPY_MAX_BYTES:
            raise ValueError(
                "the s3 backend stores files up to 5 GiB (one server-side copy); lower "
                "CERDAS_EVIDENCE_MAX_BYTES"
            )
        return value

    @field_validator("evidence_s3_bucket")
    @classmethod
    def _check_s3_bucket(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == "":
            if info.data.get("evidence_backend") == "s3":
                raise ValueError("required when CERDAS_EVIDENCE_BACKEND is s3")
            return None
        if not _BUCKET.fullmatch(value):
            raise ValueError(
                f"expected an S3 bucket name (3-63 of a-z, 0-9, '.', '-'), got {value!r}"
            )
        return value

    @field_validator("evidence_s3_prefix")
    @classmethod
    def _check_s3_prefix(cls, value: str) -> str:
        prefix = value.strip("/")
        return f"{prefix}/" if prefix else ""

    @field_validator("evidence_s3_endpoint_url")
    @classmethod
    def _check_s3_endpoint_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("webhook_secret_key")
    @classmethod
    def _check_webhook_secret_key(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is not None and value.get_secret_value() != "":
            key = value.get_secret_value().strip()
            try:
                valid = len(key) == 44 and len(base64.urlsafe_b64decode(key)) == 32
            except (binascii.Error, ValueError):
                valid = False
            if not valid:
                raise ValueError(
                    "expected a Fernet key (32 url-safe base64-encoded bytes), e.g. from "
                    '`python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32))'
                    '.decode())"`'
                )
            return SecretStr(key)
        database_url = info.data.get("database_url")
        if database_url and not _is_local_database(database_url):
            raise ValueError(
                "required when DATABASE_URL names another machine (every process encrypts and "
                "decrypts webhook secrets with it); set a Fernet key"
            )
        return None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path:
                raise ValueError(
                    f"an origin is scheme://host[:port] (no path, no '*'), got {origin!r}"
                )
        return value

    @property
    def evidence_path(self) -> Path:
        return self.evidence_dir or self.data_dir / "evidence"


# The environment variable each field is read from, for error messages.
_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "port": "PORT",
    "DATABASE_URL": "DATABASE_URL",
    "CERDAS_DATABASE_URL": "CERDAS_DATABASE_URL",
    "REDIS_URL": "REDIS_URL",
    "CERDAS_REDIS_URL": "CERDAS_REDIS_URL",
    "PORT": "PORT",
}


class SettingsError(Exception):
    """A setting could not be used; the message names the environment variable."""


def _is_local_database(url: str) -> bool:
    """Whether ``url`` names a database on this machine (loopback or a Unix socket): there a
    key kept in the data folder can be shared by every process."""
    parts = urlsplit(url)
    if "host=/" in parts.query:
        return True
    host = parts.hostname
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def to_asyncpg_url(url: str) -> str:
    """Hosting platforms hand out ``postgres://`` URLs; SQLAlchemy needs the asyncpg driver."""
    scheme, rest = url.split("://", 1)
    if scheme in {"postgres", "postgresql"}:
        return f"postgresql+asyncpg://{rest}"
    return url


def load_settings() -> Settings:
    """Read the settings, turning a validation failure into one line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            env = _ENV_NAMES.get(field, f"CERDAS_{field.upper()}")
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"invalid setting {env}: {message}")
        raise SettingsError("; ".join(lines)) from None
