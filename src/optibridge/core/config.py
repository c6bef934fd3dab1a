"""Settings: defaults < TOML file < environment (`OPTIBRIDGE_*`) < command-line flags.

The TOML file is parsed here (not by pydantic-settings) so that a malformed file is reported with
its line and column, and a file that was asked for but is missing is an error, not silently skipped.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from optibridge.core.collector import GC_YOUNG_THRESHOLD
from optibridge.core.engagement_settings import EngagementConfig
from optibridge.core.errors import ConfigError
from optibridge.core.feedback_settings import FeedbackOptions, FeedbackSettings
from optibridge.core.outbound import OutboundPolicy, parse_networks
from optibridge.core.promotion_settings import PromotionSettingsIn
from optibridge.core.quiet_hours import QuietHours
from optibridge.core.reporting_settings import ReportingSettings

DEFAULT_CONFIG_FILE = Path("optibridge.toml")
CONFIG_ENV = "OPTIBRIDGE_CONFIG"

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ChannelKind = Literal["email", "sms", "push", "webhook"]
# optimove_rate_margin_s: the shared rate window is held this much longer than Optimove's: 5 % of
# its 10 s. The spread to cover is between the first requests of a window, which often open new
# connections (TCP and TLS to a remote Optimove: 100-400 ms), and a later one on a warm connection.
# 0.25 s was not enough: one CI run of tests/integration/optimove/test_optimove_shared_limit.py (3
# processes, the emulator on the same loaded 2-core machine) got a 429.
OPTIMOVE_RATE_MARGIN_S = 0.5
# Provider settings whose names match this are credentials: they are stored encrypted and never
# shown back. Matching by name keeps provider modules free to add fields without a schema change.
SECRET_FIELD = re.compile(r"(pass(word)?|secret|token|api_?key|private_?key|credentials?)$", re.I)


# The customer attribute that holds the address, unless a channel names another.
DEFAULT_ADDRESS_ATTRIBUTE: dict[str, str | None] = {
    "email": "Email",
    "sms": "MobilePhone",
    "push": "DeviceToken",
    "webhook": None,
}


class ChannelOptions(BaseModel):
    """How a channel receives and times its messages (not how its provider is reached)."""

    model_config = ConfigDict(extra="forbid")

    address_attribute: str | None = Field(
        default=None,
        description="Customer attribute holding the address; default by kind: "
        "Email, MobilePhone, DeviceToken; empty string: addresses come only from contacts",
    )
    timezone_attribute: str | None = Field(default=None, description="Attribute with an IANA zone")
    local_send_time: bool = False
    reference_timezone: str = "UTC"
    quiet_hours: str | None = Field(default=None, description="e.g. 21:00-08:00")
    extra_attributes: list[str] = Field(
        default_factory=list, description="Attributes to fetch even if no template uses them"
    )
    engagement_customer_id_field: str = Field(
        default="CustomerID",
        min_length=1,
        max_length=100,
        description="Event 14: the Avro record field holding the customer id (matched "
        "case-insensitively; the record schema is UNCONFIRMED, docs/flows/event14.md)",
    )
    feedback: FeedbackOptions = Field(default_factory=FeedbackOptions)
    # Delivery (docs/delivery.md)
    lanes: int = Field(default=2, ge=1, le=64, description="Send jobs working this channel at once")
    rate_per_s: float | None = Field(default=None, gt=0, description="Messages/s per worker process")
    chunk: int = Field(default=64, ge=1, le=1000, description="Messages sent between two state writes")
    in_flight: int | None = Field(
        default=None,
        ge=1,
        le=8192,
        description="Sends in flight at once per send job (default: ceil(rate_per_s x 0.3 s), at "
        "least one chunk; without a rate 512). At a provider's latency L the rate is in_flight / L",
    )
    claim_chunks: int = Field(
        default=4, ge=1, le=64, description="Chunks a send job claims at once (a slice: chunk x claim_chunks)"
    )
    max_attempts: int = Field(default=8, ge=1, le=100, description="Transient failures before giving up")
    max_lateness_hours: float = Field(
        default=24.0, gt=0, description="Past its time by this, a message expires"
    )
    uncertain: Literal["resend", "assume_sent"] = Field(
        default="resend", description="After a crash with no delivery lookup: at least once, or at most once"
    )
    delivery_lookup_url: str | None = Field(
        default=None, pattern=r"^https?://", description="POST {message_ids: [...]} -> {delivered: [...]}"
    )
    tracking: bool = Field(default=True, description="Rewrite e-mail links and add an open pixel")

    @field_validator("reference_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value:
            QuietHours.parse(value)
        return value or None


class ChannelConfig(BaseModel):
    """One Optimove execution channel of a tenant, and the provider that delivers it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Our name for it")
    kind: ChannelKind
    channel_id: int = Field(gt=0, description="Optimove's ChannelID (e.g. 504 email, 505 SMS)")
    provider: dict[str, Any] = Field(default_factory=dict)
    options: ChannelOptions = Field(default_factory=ChannelOptions)

    def address_attribute(self) -> str | None:
        return address_attribute(self.kind, self.options.address_attribute)


def address_attribute(kind: str, configured: str | None) -> str | None:
    if configured is None:
        return DEFAULT_ADDRESS_ATTRIBUTE.get(kind)
    return configured or None


class TenantConfig(BaseModel):
    """One Optimove client: where its API is, how we authenticate, and its channels."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=TENANT_ID_PATTERN)
    name: str = ""
    api_base_url: str = Field(pattern=r"^https?://[^\s/$.?#][^\s]*$")
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    channels: list[ChannelConfig] = Field(default_factory=list)
    # Reporting mode and saveEvent settings (docs/flows/engagement-events.md); None: classic.
    engagement_events: EngagementConfig | None = None
    # Promotions for event-5 campaigns (docs/flows/promotions.md); None: disabled.
    promotions: PromotionSettingsIn | None = None

    @model_validator(mode="after")
    def _one_auth_style(self) -> TenantConfig:
        has_key = self.api_key is not None and self.api_key.get_secret_value() != ""
        has_login = bool(self.username) and self.password is not None
        if has_key == has_login:
            raise ValueError("give either api_key, or username and password (exactly one)")
        names = [c.name for c in self.channels]
        ids = [c.channel_id for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channel names must be unique within a tenant")
        if len(set(ids)) != len(ids):
            raise ValueError("channel_id values must be unique within a tenant")
        return self

    @property
    def auth_kind(self) -> Literal["api_key", "login"]:
        return "api_key" if self.api_key is not None else "login"

    def credentials(self) -> dict[str, str]:
        if self.api_key is not None:
            return {"api_key": self.api_key.get_secret_value()}
        assert self.username is not None
        assert self.password is not None
        return {"username": self.username, "password": self.password.get_secret_value()}


class _TomlSource(PydanticBaseSettingsSource):
    """Feeds the already-parsed TOML table to pydantic-settings at the lowest priority."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """Every setting of the service. See docs/configuration.md for the reference."""

    model_config = SettingsConfigDict(env_prefix="OPTIBRIDGE_", extra="forbid", populate_by_name=True)

    data_dir: Path = Field(
        default=Path(".optibridge"), description="Holds the embedded database and key file"
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPTIBRIDGE_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="PostgreSQL 14+ URL; unset = embedded PostgreSQL in data_dir/pg",
    )
    embedded_pg_dir: Path | None = Field(default=None, description="Default: data_dir/pg")
    embedded_pg_fsync: bool = Field(default=True, description="Only tests should turn this off")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(default=None, description="Base URL Optimove and recipients reach us at")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for /metrics; unset: /metrics answers loopback clients only",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`optibridge worker` only: serve this process's counters on host:metrics_port "
        "(GET /metrics, same access rule); unset: none (docs/observability.md)",
    )
    # Outbound policy (docs/configuration.md): an operator setting, never a tenant's.
    allow_private_destinations: list[str] = Field(
        default_factory=list,
        description="CIDR networks outbound connections (Optimove, providers, webhooks, delivery "
        'lookups) may reach although loopback/private/link-local, e.g. ["127.0.0.0/8", "::1/128"]',
    )

    @field_validator("allow_private_destinations")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        parse_networks(values)
        return values

    @property
    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy.from_strings(self.allow_private_destinations)

    # Event 14 (docs/flows/event14.md): where the customer files are read. An operator setting,
    # never a tenant's: a tenant-set endpoint would be an outbound URL reached with the GCS client.
    gcs_api_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+/?$",
        description="GCS JSON API endpoint (e.g. an emulator, read with anonymous credentials); "
        "unset: Google Cloud Storage with the default GCP credentials",
    )

    outbound_proxy_from_env: bool = Field(
        default=True,
        description="Provider HTTP requests honour HTTPS_PROXY/HTTP_PROXY/NO_PROXY (a channel's own "
        "proxy_url wins); the destination is still checked against the outbound policy first",
    )

    workers: int = Field(default=1, ge=0, le=64, description="Worker processes under serve")
    worker_concurrency: int = Field(default=8, ge=1, le=256, description="Jobs at once per worker")
    shutdown_timeout_s: float = Field(
        default=15.0,
        ge=0,
        le=3600,
        description="On SIGTERM/SIGINT, how long running jobs may take to finish before they are "
        "aborted (send jobs stop claiming and return their unstarted claims at once)",
    )
    db_pool_size: int = Field(default=10, ge=2, le=200)
    # HTTP request limits and failed-auth throttling (optibridge.web.limits, optibridge.web.ratelimit;
    # docs/admin-api.md "Limits"). Checked before authentication and before any database access.
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=64 * 1024, description="Largest admin API request body (templates: 8x)"
    )
    max_import_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024 * 1024, description="Largest contacts import upload"
    )
    body_timeout_s: float = Field(default=10.0, gt=0, le=600, description="Time to receive a request body")
    import_timeout_s: float = Field(default=300.0, gt=0, le=3600, description="Time to receive an upload")
    auth_failure_limit: int = Field(
        default=20, ge=0, description="Failed API key checks per client IP per window before 429 (0: off)"
    )
    auth_failure_window_s: float = Field(default=60.0, gt=0, le=3600, description="Window of that limit")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For names the client (comma-separated IPs/CIDRs, '*': any)",
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Fernet key(s), comma-separated; the first encrypts"
    )
    secret_key_file: Path | None = Field(default=None, description="Default: data_dir/secret.key")
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    optimove_page_size: int = Field(default=10_000, ge=1, le=100_000, description="$top per page")
    optimove_page_end: Literal["empty", "short"] = Field(
        default="empty",
        description="Paging ends at an empty page (safe whatever the server's page cap) or at the "
        "first page shorter than $top (one request less; truncates if the server caps pages)",
    )
    optimove_rate_limit: int = Field(
        default=50, ge=0, description="Requests per 10 s per API key (0: no client-side limit)"
    )
    optimove_rate_margin_s: float = Field(
        default=OPTIMOVE_RATE_MARGIN_S,
        ge=0,
        le=10,
        description="Seconds added to Optimove's rate window, shared by all processes (10 s -> 10.5 s)",
    )
    optimove_timeout_s: float = Field(default=60.0, gt=0, description="One HTTP attempt to Optimove")
    heartbeat_cron: str = Field(
        default="* * * * *", description="How often the engine heartbeat job runs (cron, 5-6 fields)"
    )
    stalled_jobs_cron: str = Field(
        default="* * * * * */15", description="How often jobs of dead workers are re-queued"
    )
    dispatch_cron: str = Field(
        default="* * * * * *", description="How often channels are checked for due messages (cron, seconds)"
    )
    catalog_reconcile_cron: str = Field(
        default="17 * * * *", description="How often every channel's templates are compared with Optimove's"
    )
    # Template rendering. The other render limits (ranges, filter output, loop iterations) are
    # constants in rendering/limits.py: every process must apply the same ones (why: there).
    render_timeout_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest one render may take (a preview, the trial render at save, one message "
        "at send); past it the preview or save is refused, the message fails",
    )
    task_modules: list[str] = Field(
        default_factory=list, description="Extra modules whose procrastinate tasks workers load"
    )
    # Process tuning of `serve` and `worker` (core/collector.py has the measurements).
    gc_young_threshold: int = Field(
        default=GC_YOUNG_THRESHOLD,
        ge=0,
        le=1_000_000,
        description="Net container allocations between two young garbage collections in serve and "
        "worker processes, whose start-up objects are also frozen; 0: Python's defaults (700)",
    )
    # Retention (optibridge.retention, docs/scaling.md "Retention"): a campaign's message rows and
    # events are summarized and deleted after its reporting window plus this margin; old finished
    # jobs go with procrastinate's own cleanup.
    retention_margin_days: float = Field(
        default=3.0, ge=0, le=365, description="Days after a campaign's final report before its rows go"
    )
    retention_cron: str = Field(default="*/10 * * * *", description="How often the retention job runs (cron)")
    retention_batch_rows: int = Field(
        default=5000, ge=1, le=100_000, description="Message rows summarized and deleted per transaction"
    )
    retention_max_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="Longest one retention run; the rest is the next run's"
    )
    finished_jobs_keep_days: float = Field(
        default=7.0, ge=0, description="Days succeeded, cancelled and aborted jobs are kept"
    )
    failed_jobs_keep_days: float = Field(default=30.0, ge=0, description="Days failed jobs are kept")
    # At least 30: CAN-SPAM requires an opt-out to be honoured for 30 days after sending, and the
    # message row (hence who to suppress) is purged about 10 days after sending.
    unsubscribe_keep_days: float = Field(
        default=60.0,
        ge=30,
        le=3650,
        description="Days after sending a purged message's unsubscribe link still suppresses its recipient",
    )
    notifications_keep_days: float = Field(
        default=30.0,
        ge=1,
        le=3650,
        description="Days Optimove's notifications are kept when no unpurged campaign holds them",
    )
    tenants: list[TenantConfig] = Field(default_factory=list)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)

    @field_validator("tenants")
    @classmethod
    def _unique_tenants(cls, tenants: list[TenantConfig]) -> list[TenantConfig]:
        seen: set[str] = set()
        for tenant in tenants:
            if tenant.id in seen:
                raise ValueError(f"tenant id {tenant.id!r} appears twice")
            seen.add(tenant.id)
        return tenants

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^postgres(ql)?://", url):
            raise ValueError("must start with postgresql:// (or postgres://)")
        return url or None

    @property
    def pg_dir(self) -> Path:
        return self.embedded_pg_dir or self.data_dir / "pg"

    @property
    def key_file(self) -> Path:
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TomlSource(settings_cls, _pending_toml.get("data", {}))
        return (init_settings, env_settings, toml)


# The TOML table handed to settings_customise_sources, which pydantic-settings calls as a classmethod
# with no way to pass arguments; set only for the duration of one load_settings() call.
_pending_toml: dict[str, dict[str, Any]] = {}


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """All of pydantic's complaints on one line: `where: field.path: reason; ...`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid configuration (from {source}): " + "; ".join(parts)


def config_path(explicit: Path | None) -> Path | None:
    """The file to read: --config, else $OPTIBRIDGE_CONFIG, else ./optibridge.toml if it exists."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings; raises ConfigError with one clear line on any problem."""
    path = config_path(config_file)
    data = read_toml(path) if path is not None else {}
    source = f"{path} and the environment" if path is not None else "the environment"
    _pending_toml["data"] = data
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None
    finally:
        _pending_toml.clear()


def split_provider_settings(provider: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split provider settings into (plain, secret) by field name; see SECRET_FIELD.

    Works at any depth (a failover list of providers, each with its own password): secrets are
    keyed by their path ("providers/1/password"), and `merge_provider_settings` puts them back.
    """
    secret: dict[str, Any] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                where = f"{path}/{key}" if path else str(key)
                if SECRET_FIELD.search(str(key)) and not isinstance(item, dict | list):
                    secret[where] = item
                else:
                    out[key] = walk(item, where)
            return out
        if isinstance(value, list):
            return [walk(item, f"{path}/{i}") for i, item in enumerate(value)]
        return value

    plain = walk(provider, "")
    return plain, secret


def merge_provider_settings(plain: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `split_provider_settings`."""
    import copy

    merged = copy.deepcopy(plain)
    for path, value in secret.items():
        *parents, leaf = path.split("/")
        node: Any = merged
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[leaf] = value
    return merged
