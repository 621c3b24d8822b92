"""Typed settings, read from the environment once and validated at start.

Every process (web, worker, CLI, migrations) builds its settings here, so a bad
value is reported the same way everywhere: one line naming the variable.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

APP_ROLE_DEFAULT = "orderdesk_app"


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message is one readable line."""


def to_asyncpg_url(raw: str, *, variable: str) -> URL:
    """Accept `postgresql://`, `postgres://` and `postgresql+asyncpg://` alike.

    Hosting platforms hand out the plain form; SQLAlchemy needs the driver named.
    Raises SettingsError for anything that is not a PostgreSQL URL.
    """
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise SettingsError(f"{variable} is not a valid database URL: {raw!r}") from exc
    backend = url.get_backend_name()
    if backend not in {"postgresql", "postgres"}:
        raise SettingsError(
            f"{variable} must be a PostgreSQL URL (postgresql://...), got scheme {url.drivername!r}"
        )
    if url.drivername not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise SettingsError(
            f"{variable} names driver {url.drivername!r}; use postgresql:// or postgresql+asyncpg://"
        )
    if not url.database:
        raise SettingsError(f"{variable} must name a database, e.g. postgresql://host/orderdesk")
    return url.set(drivername="postgresql+asyncpg")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # Owner connection: migrations run with it. Web and worker processes need only
    # APP_DATABASE_URL, so a production deployment can keep the owner's password away
    # from them.
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    # The application's own connection: a role that owns nothing and cannot bypass
    # row-level security. When unset it is derived from DATABASE_URL (same server and
    # database, user APP_DATABASE_ROLE, password APP_DATABASE_PASSWORD).
    app_database_url: str | None = Field(default=None, alias="APP_DATABASE_URL")
    app_database_role: str = Field(default=APP_ROLE_DEFAULT, alias="APP_DATABASE_ROLE")
    app_database_password: str | None = Field(default=None, alias="APP_DATABASE_PASSWORD")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")
    secret_key: str = Field(alias="ORDERDESK_SECRET_KEY", min_length=32)
    environment: Literal["dev", "test", "production"] = Field(default="production", alias="ORDERDESK_ENV")
    # Queue names are prefixed so several deployments (or test runs) can share a Redis.
    queue_name: str = Field(default="orderdesk", alias="ORDERDESK_QUEUE")
    db_pool_size: int = Field(default=10, ge=1, le=200, alias="ORDERDESK_DB_POOL_SIZE")
    # Connections a process may open beyond the pool when all of its are busy; each is
    # closed again on return, so a sustained load above the pool keeps connecting (see
    # core.db.make_engine; by default requests wait for a pooled connection instead).
    db_max_overflow: int = Field(default=0, ge=0, le=200, alias="ORDERDESK_DB_MAX_OVERFLOW")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", alias="ORDERDESK_LOG_LEVEL"
    )
    log_json: bool = Field(default=True, alias="ORDERDESK_LOG_JSON")
    # Webhook URLs that resolve to private, loopback or link-local addresses are refused
    # (server-side request forgery) unless this is set, e.g. for local development and tests.
    webhooks_allow_private: bool = Field(default=False, alias="ORDERDESK_WEBHOOKS_ALLOW_PRIVATE")
    # Seconds to wait before each retry, after the first attempt (the Standard Webhooks example).
    webhook_retry_schedule: tuple[float, ...] = Field(
        default=(5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400),
        alias="ORDERDESK_WEBHOOK_RETRY_SCHEDULE",
    )
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=120, alias="ORDERDESK_WEBHOOK_TIMEOUT")
    # How long a worker holds a delivery it is posting; a dead worker's deliveries return after it.
    webhook_lease_seconds: float = Field(default=30.0, ge=1, le=600, alias="ORDERDESK_WEBHOOK_LEASE_SECONDS")
    # An endpoint failing without a single success for this long is disabled.
    webhook_disable_after_days: float = Field(default=5.0, gt=0, alias="ORDERDESK_WEBHOOK_DISABLE_AFTER_DAYS")

    # Where customers reach this deployment (scheme and host, e.g. https://desk.example.com):
    # the base of the tracking-page links put in outbound emails. Unset: emails carry none.
    public_url: str | None = Field(default=None, alias="ORDERDESK_PUBLIC_URL")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise SettingsError(
                f"ORDERDESK_PUBLIC_URL must be an http(s) URL such as https://desk.example.com, got {value!r}"
            )
        return value.strip().rstrip("/")

    # Customer communication (comms/): the domains of tenants' inbound addresses
    # (acme@<domain>); empty accepts any domain, which suits development only. The SMTP
    # listener of `orderdesk smtp` binds here.
    inbound_email_domains: tuple[str, ...] = Field(default=(), alias="ORDERDESK_INBOUND_DOMAINS")
    smtp_host: str = Field(default="127.0.0.1", alias="ORDERDESK_SMTP_HOST")
    smtp_port: int = Field(default=2525, ge=0, le=65535, alias="ORDERDESK_SMTP_PORT")

    @field_validator("inbound_email_domains", mode="before")
    @classmethod
    def _domains(cls, value):
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        for domain in value:
            if "@" in domain or " " in domain or "." not in domain:
                raise SettingsError(
                    f"ORDERDESK_INBOUND_DOMAINS must be comma-separated domains, e.g. inbound.example.com; "
                    f"got {domain!r}"
                )
        return tuple(value)

    # --- Outbound mail (replies, auto answers, platform notices), sent by the worker through
    # this relay. Unset host: nothing is sent; email waits queued until one is configured.
    outbound_smtp_host: str | None = Field(default=None, alias="ORDERDESK_OUTBOUND_SMTP_HOST")
    outbound_smtp_port: int = Field(default=587, ge=1, le=65535, alias="ORDERDESK_OUTBOUND_SMTP_PORT")
    # "starttls" upgrades a plain connection (port 587); "tls" is implicit TLS (port 465);
    # "none" is for a relay on the same host or network only.
    outbound_smtp_tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls", alias="ORDERDESK_OUTBOUND_SMTP_TLS"
    )
    outbound_smtp_user: str | None = Field(default=None, alias="ORDERDESK_OUTBOUND_SMTP_USER")
    outbound_smtp_password: str | None = Field(default=None, alias="ORDERDESK_OUTBOUND_SMTP_PASSWORD")
    outbound_smtp_timeout_seconds: float = Field(
        default=30.0, gt=0, le=300, alias="ORDERDESK_OUTBOUND_SMTP_TIMEOUT"
    )
    # Seconds before each retry after a temporary failure (4xx, connection lost); then failed.
    outbound_smtp_retry_schedule: tuple[float, ...] = Field(
        default=(60, 300, 1800, 7200, 21600), alias="ORDERDESK_OUTBOUND_SMTP_RETRY_SCHEDULE"
    )
    # From of the platform's own notices to tenants (e.g. "OrderDesk <ops@desk.example>").
    mail_from: str | None = Field(default=None, alias="ORDERDESK_MAIL_FROM")

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None, info) -> str | None:
        if value is None:
            return None
        variable = "DATABASE_URL" if info.field_name == "database_url" else "APP_DATABASE_URL"
        return to_asyncpg_url(value, variable=variable).render_as_string(hide_password=False)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_other_sources):
        # load_settings() hands over the environment itself, so every value passes the same
        # validators (and errors stay one line); pydantic's own env parsing would JSON-decode.
        return (init_settings,)

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value):
        if isinstance(value, str):
            try:
                value = tuple(float(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise SettingsError(
                    "ORDERDESK_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, e.g. 5,300,1800"
                ) from None
        if not value or any(v < 0 for v in value):
            raise SettingsError("ORDERDESK_WEBHOOK_RETRY_SCHEDULE needs at least one non-negative delay")
        return tuple(value)

    @field_validator("outbound_smtp_retry_schedule", mode="before")
    @classmethod
    def _smtp_schedule(cls, value):
        if isinstance(value, str):
            try:
                value = tuple(float(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise SettingsError(
                    "ORDERDESK_OUTBOUND_SMTP_RETRY_SCHEDULE must be comma-separated seconds, e.g. 60,300,1800"
                ) from None
        if any(v < 0 for v in value):
            raise SettingsError("ORDERDESK_OUTBOUND_SMTP_RETRY_SCHEDULE delays must not be negative")
        return tuple(value)

    @field_validator("outbound_smtp_host")
    @classmethod
    def _outbound_smtp_host(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if "://" in value or "/" in value or " " in value or ":" in value.strip("[]"):
            raise SettingsError(
                "ORDERDESK_OUTBOUND_SMTP_HOST must be a host name or IP address only "
                f"(port in ORDERDESK_OUTBOUND_SMTP_PORT), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _smtp_credentials(self) -> Settings:
        if bool(self.outbound_smtp_user) != bool(self.outbound_smtp_password):
            raise SettingsError(
                "ORDERDESK_OUTBOUND_SMTP_USER and ORDERDESK_OUTBOUND_SMTP_PASSWORD must be set together"
            )
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {value!r}")
        return value

    @property
    def owner_url(self) -> URL:
        if not self.database_url:
            raise SettingsError("DATABASE_URL is not set (migrations run as the database owner)")
        return make_url(self.database_url)

    @property
    def app_url(self) -> URL:
        if self.app_database_url:
            return make_url(self.app_database_url)
        return self.owner_url.set(username=self.app_database_role, password=self.app_database_password)

    @property
    def inbound_domain(self) -> str | None:
        """The domain replies' Reply-To addresses use: the first of ORDERDESK_INBOUND_DOMAINS."""
        return self.inbound_email_domains[0] if self.inbound_email_domains else None

    @property
    def cookie_secure(self) -> bool:
        return self.environment == "production"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    variable = str(first["loc"][0]) if first["loc"] else "settings"
    message = first["msg"]
    if first["type"] == "missing":
        return f"{variable} is not set"
    message = message.removeprefix("Value error, ")
    if not first["loc"]:  # a check across variables names them itself
        return message
    return message if message.startswith(variable) else f"{variable}: {message}"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from `env` (default: the process environment).

    Raises SettingsError with one line naming the first bad variable.
    """
    source = dict(os.environ if env is None else env)
    try:
        settings = Settings(**{k: v for k, v in source.items() if k.isupper()})
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    if not settings.database_url and not settings.app_database_url:
        raise SettingsError("DATABASE_URL is not set")
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
