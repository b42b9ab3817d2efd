"""Settings from the environment (prefix QINGLANG_) and an optional .env file, one class per concern."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from db.crypto import parse_key
from qinglang.errors import ConfigError

_ENV = SettingsConfigDict(env_prefix="QINGLANG_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

# Accepted spellings of a database URL and the async driver each one means.
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class StorageSettings(BaseSettings):
    model_config = _ENV

    data_dir: Path = Path("data")
    max_evidence_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # images are decoded only within these (decompression bombs): one frame, a side, an animation's frames
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_image_side: int = Field(default=30_000, ge=1)
    max_image_frames: int = Field(default=300, ge=1)
    # an upload no case and no conversation draft refers to is removed by the daily job after this long
    # (a person may send a screenshot and finish telling the complaint days later: the draft keeps it)
    unreferenced_grace_hours: float = Field(default=48, ge=1)

    @property
    def unreferenced_grace(self) -> timedelta:
        return timedelta(hours=self.unreferenced_grace_hours)

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "evidence"


class DatabaseSettings(BaseSettings):
    model_config = _ENV

    database_url: str | None = None  # None: a SQLite file under the data directory
    database_echo: bool = False

    def resolved_url(self, data_dir: Path) -> str:
        """The URL with its async driver; a malformed or unsupported URL is a ConfigError."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{(data_dir / 'qinglang.db').resolve()}"
        return normalise_database_url(self.database_url)


class BotSettings(BaseSettings):
    model_config = _ENV

    bot_token: SecretStr | None = None
    bot_api_base: str = "https://api.telegram.org"
    bot_mode: str = Field(default="polling", pattern="^(polling|webhook)$")
    webhook_url: str | None = None  # the public https base URL Telegram calls, e.g. https://tousu.example.gov.cn
    webhook_path: str = Field(default="/telegram/webhook", pattern="^/[A-Za-z0-9/_-]*$")
    webhook_secret: SecretStr | None = None
    inbox_replay_seconds: float = Field(default=60, gt=0)
    # an update being handled is left alone by other replicas this long; after a crash, replayed after it
    inbox_lease_seconds: float = Field(default=90, ge=15, le=3600)
    # one person's updates are handled one at a time (a Redis lock across replicas); a lock left by a
    # killed replica holds that person this long. Longer than the slowest handling of one update.
    chat_lock_seconds: float = Field(default=60, ge=5, le=600)

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        number, _, secret = value.get_secret_value().partition(":")
        if not number.isdigit() or len(secret) < 20:
            raise ValueError("a bot token looks like 123456:ABC-DEF... (from @BotFather)")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> BotSettings:
        if self.bot_mode == "webhook" and self.webhook_secret is None:
            raise ValueError("webhook mode needs QINGLANG_WEBHOOK_SECRET, or anyone who finds the URL could post updates")
        return self

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and -
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", value.get_secret_value()):
            raise ValueError("16-256 characters of A-Z, a-z, 0-9, _ and -")
        return value


class RedisSettings(BaseSettings):
    model_config = _ENV

    redis_url: SecretStr | None = None


class NluSettings(BaseSettings):
    model_config = _ENV

    rasa_url: str | None = None
    rasa_timeout: float = Field(default=3.0, gt=0, le=60)
    nlu_backend: str = Field(default="embedded", pattern="^(embedded|rasa)$")
    nlu_confidence_threshold: float = Field(default=0.45, ge=0, le=1)
    nlu_cache_dir: Path | None = None  # trained embedded models; None: <data dir>/nlu


class WebSettings(BaseSettings):
    model_config = _ENV

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    timezone: str = "Asia/Shanghai"
    secret_key: SecretStr | None = None
    cookie_secure: bool = False  # set behind https so session cookies are never sent in clear
    # reverse proxies whose X-Forwarded-For is believed (comma-separated addresses or networks)
    trusted_proxies: str = "127.0.0.0/8,::1/128"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not an IP address or network (e.g. 172.28.0.10/32)") from None
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in self.trusted_proxies.split(",")
                     if part.strip())

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (for example Asia/Shanghai)") from None
        return value


class RulesSettings(BaseSettings):
    """Data files an administrator edits; None means the packaged default."""

    model_config = _ENV

    units_file: Path | None = None
    routing_file: Path | None = None
    deadlines_file: Path | None = None
    case_number_prefix: str = Field(default="LW", pattern=r"^[A-Z]{1,6}$")


class NotifySettings(BaseSettings):
    """The notifier worker and the scheduler (intake/notifier.py, intake/scheduler.py)."""

    model_config = _ENV

    notify_rate: float = Field(default=30, gt=0, le=30)  # messages/s of this worker; share 30 among workers
    notify_chat_interval: float = Field(default=1.0, ge=1.0)  # Telegram: about one message per second per chat
    notify_max_attempts: int = Field(default=10, ge=1, le=100)
    notify_backoff_base: float = Field(default=5.0, gt=0)
    notify_backoff_cap: float = Field(default=3600.0, gt=0)
    notify_timeout: float = Field(default=10.0, gt=0, le=120)  # one send (Telegram or callback)
    notify_poll: float = Field(default=1.0, gt=0, le=60)
    worker_port: int = Field(default=8081, ge=0, le=65535)  # `qinglang worker`: /healthz, /readyz, /metrics; 0: none
    # a claim on a notice; when a worker dies, another takes over what it had not started after this long
    notify_lease_seconds: float = Field(default=120, ge=30, le=3600)
    schedule_time: str = Field(default="08:30", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # local, daily jobs
    schedule_poll: float = Field(default=60.0, gt=0, le=3600)
    consultation_autoclose_days: int = Field(default=3, ge=1, le=60)  # working days after the answer
    reminder_days: int = Field(default=2, ge=1, le=10)  # working days before a due date
    escalation_unit: str = Field(default="xiaobao", pattern=r"^[a-z][a-z0-9_]*$")  # gets the overdue digest

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifySettings:
        if self.notify_lease_seconds < self.notify_timeout + 15:
            raise ValueError("QINGLANG_NOTIFY_LEASE_SECONDS must be at least QINGLANG_NOTIFY_TIMEOUT + 15 s, "
                             "or a slow send could be taken over and repeated by another worker")
        return self


class ReportSettings(BaseSettings):
    """The statistics forms and the dashboard (reports/)."""

    model_config = _ENV

    # the forms count "since the campaign began" (附件2 note 1); the seed's plan is dated 2024-05-14
    campaign_start: date = date(2024, 5, 14)


class PrivacySettings(BaseSettings):
    """Personal data at rest (db/crypto.py) and how long it is kept after a case closes (intake/retention.py)."""

    model_config = _ENV

    # 32 random bytes, URL-safe base64; None: a key file generated once in <data dir>/secrets (embedded use)
    data_key: SecretStr | None = None
    old_data_keys: SecretStr | None = None  # comma-separated keys still accepted for reading (rotation)
    retention_days: int | None = Field(default=1095, ge=0)  # after close; 0 or empty: kept for ever

    @field_validator("data_key", "old_data_keys", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _blank_days(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_key", "old_data_keys")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for part in value.get_secret_value().split(","):
                if part.strip():
                    parse_key(part)  # a DataKeyError is a ValueError: reported as this variable's error
        return value

    @property
    def current_key(self) -> bytes | None:
        return parse_key(self.data_key.get_secret_value()) if self.data_key else None

    @property
    def old_keys(self) -> list[bytes]:
        if self.old_data_keys is None:
            return []
        return [parse_key(part) for part in self.old_data_keys.get_secret_value().split(",") if part.strip()]

    @property
    def retention(self) -> timedelta | None:
        return timedelta(days=self.retention_days) if self.retention_days else None


class OutboundSettings(BaseSettings):
    """Every request the product makes on someone's behalf (API cases' callback URLs): one policy
    (intake/outbound.py). Public https destinations on the listed ports only, unless allowed here."""

    model_config = _ENV

    outbound_allow_http: bool = False  # plain http too: for tests and a local set-up, never in production
    # destinations trusted despite the rules (e.g. an intranet 12345 platform), comma-separated: host names
    # (exact, any port) and IP addresses or networks (any port)
    outbound_allow_hosts: str = ""
    outbound_ports: str = "443,80"  # the ports a destination not on the allow list may use
    outbound_ca_file: Path | None = None  # extra CA certificates (PEM) to trust, e.g. an intranet CA

    @field_validator("outbound_allow_hosts")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        from intake.outbound import parse_allow_list

        parse_allow_list(value)  # a ValueError names the entry at fault
        return value

    @field_validator("outbound_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        from intake.outbound import parse_ports

        parse_ports(value)
        return value

    @field_validator("outbound_ca_file", mode="before")
    @classmethod
    def _blank_ca(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("outbound_ca_file")
    @classmethod
    def _ca_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            import ssl

            try:
                ssl.create_default_context().load_verify_locations(cafile=str(value))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"{value} is not a readable file of PEM CA certificates "
                                 f"({getattr(exc, 'strerror', None) or exc})") from None
        return value


class LimitSettings(BaseSettings):
    """The web chat's limits on anonymous visitors: status look-ups and uploads before a complaint
    (web/chat/limits.py), counted in the database before the work they guard (intake/counters.py)."""

    model_config = _ENV

    # status look-ups (case number + access code), every try counted, right or wrong, in fixed windows
    lookup_window_seconds: int = Field(default=600, ge=60, le=86_400)
    lookup_tries_per_address: int = Field(default=10, ge=1)
    lookup_tries_per_cookie: int = Field(default=10, ge=1)
    lookup_tries_per_case: int = Field(default=10, ge=1)  # from all addresses together
    # the status page's answers and ratings of a granted case, per chat cookie
    status_posts_per_cookie: int = Field(default=20, ge=1)
    status_post_window_seconds: int = Field(default=600, ge=60, le=86_400)
    # files sent in the chat before a complaint exists, per day (fixed windows of 24 hours)
    upload_files_per_cookie: int = Field(default=20, ge=1)
    upload_bytes_per_cookie: int = Field(default=100 * 1024 * 1024, ge=1)
    upload_files_per_address: int = Field(default=50, ge=1)
    upload_bytes_per_address: int = Field(default=200 * 1024 * 1024, ge=1)
    upload_files_total: int = Field(default=2000, ge=1)  # all chat visitors together
    upload_bytes_total: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)

    @property
    def lookup_window(self) -> timedelta:
        return timedelta(seconds=self.lookup_window_seconds)

    @property
    def status_post_window(self) -> timedelta:
        return timedelta(seconds=self.status_post_window_seconds)


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    database: DatabaseSettings
    bot: BotSettings
    redis: RedisSettings
    nlu: NluSettings
    web: WebSettings
    rules: RulesSettings
    notify: NotifySettings
    reports: ReportSettings
    privacy: PrivacySettings
    outbound: OutboundSettings
    limits: LimitSettings

    @property
    def database_url(self) -> str:
        return self.database.resolved_url(self.storage.data_dir)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.web.timezone)


def load_settings(env_file: str | os.PathLike[str] | None = ".env", **overrides: object) -> Settings:
    """Read every settings class; any invalid value ends in a ConfigError naming the variable."""
    parts = {
        "storage": StorageSettings,
        "database": DatabaseSettings,
        "bot": BotSettings,
        "redis": RedisSettings,
        "nlu": NluSettings,
        "web": WebSettings,
        "rules": RulesSettings,
        "notify": NotifySettings,
        "reports": ReportSettings,
        "privacy": PrivacySettings,
        "outbound": OutboundSettings,
        "limits": LimitSettings,
    }
    built = {}
    for name, cls in parts.items():
        own = {k: v for k, v in overrides.items() if k in cls.model_fields}
        try:
            built[name] = cls(_env_file=env_file, **own)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
    settings = Settings(**built)
    settings.database_url  # noqa: B018 - validates the URL early
    return settings


def normalise_database_url(raw: str) -> str:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"QINGLANG_DATABASE_URL is not a database URL: {_redact(raw)!r}; "
            "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host:5432/db"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ConfigError(
            f"QINGLANG_DATABASE_URL uses unsupported driver {url.drivername!r}; "
            "use sqlite+aiosqlite or postgresql+asyncpg"
        )
    if driver.startswith("sqlite") and not url.database:
        raise ConfigError("QINGLANG_DATABASE_URL names no SQLite file; use sqlite+aiosqlite:///path/to/file.db")
    if driver.startswith("postgresql") and not (url.host and url.database):
        raise ConfigError("QINGLANG_DATABASE_URL needs a host and a database name: postgresql+asyncpg://user@host:5432/db")
    return url.set(drivername=driver).render_as_string(hide_password=False)


def _redact(raw: str) -> str:
    head, sep, tail = raw.rpartition("@")
    return f"***@{tail}" if sep else raw


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else "?"
    message = err["msg"].removeprefix("Value error, ")
    return f"QINGLANG_{field.upper()}: {message}" if err["loc"] else message
