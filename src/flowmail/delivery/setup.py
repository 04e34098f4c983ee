"""Wiring a :class:`~flowmail.delivery.sender.Sender` from settings: providers, templates,
policy, retries, rate limits and breakers."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from flowmail.clock import Clock, SystemClock
from flowmail.delivery.breaker import Breakers
from flowmail.delivery.compose import CachedTemplates, Composer, Identity
from flowmail.delivery.model import Provider
from flowmail.delivery.policy import PolicyConfig, QuietHours
from flowmail.delivery.ratelimit import RateLimits
from flowmail.delivery.sender import DEFAULT_RETRY, Sender, SenderOptions
from flowmail.runtime.actions import RetryPolicy
from flowmail.settings import Settings
from flowmail.store.sql import SqlStore
from flowmail.store.templates import get_template
from flowmail.templates.files import TemplateFileError, load_template_dir
from flowmail.templates.model import Template

log = logging.getLogger("flowmail.sender")


class FolderTemplates:
    """The templates folder, read again at most every ``ttl`` seconds."""

    def __init__(self, folder: str | Path, ttl: float = 5.0) -> None:
        self.folder = Path(folder)
        self.ttl = ttl
        self._read_at = -ttl - 1.0
        self._templates: dict[str, Template] = {}

    def get(self, name: str) -> Template | None:
        now = time.monotonic()
        if now - self._read_at > self.ttl:
            self._read_at = now
            self._templates = self._read()
        return self._templates.get(name)

    def _read(self) -> dict[str, Template]:
        if not self.folder.is_dir():
            return {}
        try:
            return load_template_dir(self.folder)
        except TemplateFileError as exc:
            log.error("templates folder %s: %s", self.folder, "; ".join(exc.problems))
            return {}


def template_source(store: SqlStore, folder: str | Path) -> CachedTemplates:
    """Templates saved in the database win over files of the same name."""
    files = FolderTemplates(folder)

    def load(workspace_id: str, name: str) -> Template | None:
        return get_template(store, workspace_id, name) or files.get(name)

    return CachedTemplates(load)


def policy_config(settings: Settings) -> PolicyConfig:
    return PolicyConfig(
        max_daily_sends=settings.max_daily_sends,
        quiet_hours=QuietHours.parse(settings.quiet_hours),
        default_timezone=settings.default_timezone,
    )


def make_sender(
    settings: Settings,
    store: SqlStore,
    clock: Clock | None = None,
    *,
    providers: dict[str, Provider] | None = None,
    batch: int | None = None,
    retry_base: timedelta | None = None,
) -> Sender:
    """A sender as the settings describe it. ``providers`` replaces the configured ones
    (tests); ValueError for settings that make no sense (bad quiet hours, ...)."""
    from flowmail.delivery.providers import make_provider

    if settings.unknown_policy not in ("resend", "hold"):
        raise ValueError(f"unknown_policy must be resend or hold, not {settings.unknown_policy!r}")
    names = [settings.provider] + (
        [settings.secondary_provider] if settings.secondary_provider else []
    )
    if providers is None:
        providers = {name: make_provider(name, settings) for name in names}
    retry = RetryPolicy(
        max_attempts=settings.max_attempts,
        base=retry_base or DEFAULT_RETRY.base,
        cap=DEFAULT_RETRY.cap,
    )
    options = SenderOptions(
        batch=batch or SenderOptions.batch,
        lease=timedelta(seconds=settings.lease_seconds),
        poll=max(settings.poll_seconds, 0.05),
        resend_unknown=settings.unknown_policy == "resend",
        retry=retry,
        policy=policy_config(settings),
    )
    composer = Composer(
        Identity.from_settings(settings), template_source(store, settings.templates_dir)
    )
    return Sender(
        store,
        clock or SystemClock(),
        providers,
        composer,
        primary=settings.provider,
        secondary=settings.secondary_provider or None,
        options=options,
        limits=RateLimits(settings.rate_limit),
        breakers=Breakers(),
    )
