"""Settings: ``flowmail.toml`` in the working folder, then ``FLOWMAIL_*`` environment variables."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from flowmail.language.types import TimeZone


class Settings(BaseSettings):
    """Every setting, with its default. Environment variables win over flowmail.toml."""

    model_config = SettingsConfigDict(
        env_prefix="FLOWMAIL_", toml_file="flowmail.toml", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///./flowmail.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user:pw@host/db",
    )
    default_timezone: TimeZone = Field(
        default="UTC", description="Zone for contacts that have none"
    )
    worker_batch: int = Field(default=256, ge=1, le=10_000, description="Contacts per claim")
    lease_seconds: float = Field(
        default=30.0, gt=0, description="How long claimed work stays with a worker"
    )
    poll_seconds: float = Field(
        default=0.1,
        gt=0,
        description="Longest idle sleep between looks for work (PostgreSQL also wakes on NOTIFY)",
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="Python modules imported at start, to register predicates and content",
    )
    replay_event_time: bool = Field(
        default=False,
        description="Decide each past-stamped event at its own time (backfills, demos)",
    )
    retention_days: int = Field(
        default=90, ge=1, description="Processed events and journal rows older are pruned"
    )

    # --- messages -------------------------------------------------------------------
    public_url: str = Field(
        default="http://127.0.0.1:8025",
        description="Base URL of this installation, for unsubscribe, click and open links",
    )
    secret_key: str = Field(
        default="change-me-in-production",
        description="Signs links in emails (unsubscribe, clicks); keep it secret and stable",
    )
    from_address: str = Field(default="hello@example.com", description="Sender address")
    from_name: str = Field(default="flowmail", description="Sender display name")
    postal_address: str = Field(
        default="",
        description="The sender's postal address; marketing templates must show it",
    )
    templates_dir: str = Field(default="templates", description="Folder of template files")
    provider: str = Field(
        default="smtp",
        description="Where email goes: smtp, console, file, ses, sendgrid, mailgun, postmark",
    )
    secondary_provider: str = Field(
        default="", description="Provider that takes over while the primary's circuit is open"
    )
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server")
    smtp_port: int = Field(default=1025, description="SMTP port")
    smtp_username: str = Field(default="", description="SMTP user (empty: no AUTH)")
    smtp_password: str = Field(default="", description="SMTP password")
    smtp_tls: str = Field(default="none", description="none, starttls or tls (implicit)")
    smtp_connections: int = Field(default=4, ge=1, le=64, description="SMTP connection pool")
    rate_limit: float = Field(
        default=0, ge=0, description="Messages per second per provider; 0 means unlimited"
    )
    max_daily_sends: int = Field(
        default=5, ge=0, description="Marketing emails per contact per rolling 24 h (cap)"
    )
    quiet_hours: str = Field(
        default="", description="Local hours without marketing email, like 21-8 (off if empty)"
    )
    unknown_policy: str = Field(
        default="resend",
        description="A send whose outcome is unknown after a crash: resend or hold",
    )
    max_attempts: int = Field(default=8, ge=1, description="Send attempts before dead-letter")
    open_tracking: bool = Field(default=False, description="Add an open pixel to HTML email")
    click_tracking: bool = Field(default=True, description="Rewrite links to signed redirects")
    dkim_domain: str = Field(default="", description="DKIM signing domain (empty: no DKIM)")
    dkim_selector: str = Field(default="", description="DKIM selector")
    dkim_key_file: str = Field(default="", description="PEM file of the DKIM private key")
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Provider credentials, e.g. {sendgrid = 'SG...'} in flowmail.toml",
    )

    # --- the HTTP API (flowmail serve) --------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="Address `flowmail serve` listens on")
    api_port: int = Field(
        default=8025, ge=1, le=65_535, description="Port `flowmail serve` listens on"
    )
    api_access_log: bool = Field(default=False, description="Log every HTTP request")
    max_event_bytes: int = Field(
        default=32 * 1024,
        ge=256,
        description="Largest /v1/track or /v1/identify body, and batch item (Segment: 32 KB)",
    )
    max_batch_bytes: int = Field(
        default=500 * 1024,
        ge=1024,
        description="Largest /v1/batch body, and of any other request (Segment: 500 KB)",
    )
    max_future_seconds: float = Field(
        default=86_400.0, ge=0, description="Event timestamps further ahead than this are refused"
    )
    rate_limit_per_key: float = Field(
        default=100.0, ge=0, description="API requests per second per key; 0 means unlimited"
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="Requests a key may send at once above its rate"
    )
    api_key_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How long the API trusts a key it checked; a revoked key stops within this",
    )

    # --- provider webhooks, recipients' links, complaint rates --------------------------
    sendgrid_public_key: str = Field(
        default="", description="SendGrid Event Webhook verification key (empty: refused)"
    )
    mailgun_signing_key: str = Field(
        default="", description="Mailgun HTTP webhook signing key (empty: refused)"
    )
    postmark_user: str = Field(
        default="", description="User name in the Postmark webhook URL's Basic auth"
    )
    postmark_password: str = Field(
        default="", description="Password in the Postmark webhook URL's Basic auth"
    )
    sns_topic_arn: str = Field(
        default="", description="The SNS topic that carries SES events (empty: refused)"
    )
    generic_webhook_secret: str = Field(
        default="", description="Standard Webhooks secret (whsec_...) of /v1/webhooks/generic"
    )
    dsn_secret: str = Field(
        default="", description="Shared secret (16+ chars) of /v1/webhooks/smtp-dsn"
    )
    complaint_alert_rate: float = Field(
        default=0.001, ge=0, le=1, description="A workflow's complaint rate that raises an alert"
    )
    complaint_pause_rate: float = Field(
        default=0.003, ge=0, le=1, description="A workflow's complaint rate that pauses it (drain)"
    )
    complaint_min_volume: int = Field(
        default=1000, ge=1, description="Emails sent in the window before complaint rates count"
    )
    complaint_window_days: int = Field(
        default=7, ge=1, description="Days of sending a workflow's complaint rate looks at"
    )
    unsubscribe_link_days: int = Field(
        default=365, ge=30, description="Days an email's unsubscribe link keeps working"
    )

    # --- analytics and alerts ---------------------------------------------------------
    conversion_events: list[str] = Field(
        default_factory=lambda: ["purchase", "order_completed"],
        description="Events credited to emails as conversions (besides workflow goals)",
    )
    attribution_hours: float = Field(
        default=72.0, gt=0, description="Hours after a send or click that a conversion counts"
    )
    attribution_model: str = Field(
        default="last",
        pattern="^(last|first)$",
        description="Which email in the window gets the credit: last or first touch",
    )
    automated_open_seconds: float = Field(
        default=2.0,
        ge=0,
        description="Opens this soon after sending count as automated (proxy prefetch)",
    )
    alert_queue_depth: int = Field(
        default=10_000, ge=1, description="Pending events or due messages that raise an alert"
    )
    alert_lag_seconds: float = Field(
        default=300.0, gt=0, description="Age of the oldest unprocessed event that raises one"
    )
    alert_error_rate: float = Field(
        default=0.05, ge=0, le=1, description="Failed runs or messages per ended or sent"
    )
    alert_bounce_rate: float = Field(
        default=0.05, ge=0, le=1, description="Bounces per delivered email (last 24 h)"
    )
    alert_min_volume: int = Field(
        default=100, ge=1, description="Emails or runs in the window before rates can alert"
    )
    alert_webhook_url: str = Field(
        default="", description="Alerts are POSTed here as JSON when they fire and resolve"
    )
    health_sample_seconds: float = Field(
        default=60.0, gt=0, description="How often a health sample is taken for the charts"
    )

    # --- dashboard ----------------------------------------------------------------------
    dashboard_session_hours: float = Field(
        default=12.0, gt=0, description="How long a dashboard login lasts"
    )
    dev_mailbox: str = Field(
        default="",
        description="Folder of the local SMTP sink's caught emails, shown at /ui/mailbox",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def settings_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for the README's settings table."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        rows.append((f"FLOWMAIL_{name.upper()}", repr(default), field.description or ""))
    return rows
