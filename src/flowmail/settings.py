"""Settings: ``flowmail.toml`` in the working folder, then ``FLOWMAIL_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
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
    retention_days: int = Field(
        default=90, ge=1, description="Processed events and journal rows older are pruned"
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
        rows.append((f"FLOWMAIL_{name.upper()}", repr(field.default), field.description or ""))
    return rows


__all__ = ["Path", "Settings", "load_settings", "settings_table"]
