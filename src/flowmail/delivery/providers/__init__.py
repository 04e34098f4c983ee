"""The ways out, and the one function that picks one from the settings.

Credentials come from ``settings.api_keys`` (``[api_keys]`` in flowmail.toml):

============  ===================================================================
provider      keys
============  ===================================================================
sendgrid      ``sendgrid``
mailgun       ``mailgun``, ``mailgun_domain``; optional ``mailgun_region = "eu"``
postmark      ``postmark``; optional ``postmark_stream`` (default ``outbound``)
ses           ``ses_access_key``, ``ses_secret_key``, ``ses_region``; optional
              ``ses_session_token``, ``ses_configuration_set``
file          optional ``file_dir`` (default ``mail-out``)
============  ===================================================================

Every HTTP provider also takes ``<name>_base_url`` (tests point it at a local server).
SMTP uses the ``smtp_*`` settings; the providers that send our own MIME (smtp, file, ses,
mailgun) sign it with DKIM when ``dkim_domain`` is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowmail.clock import Clock
from flowmail.delivery.dkim import DkimSigner
from flowmail.delivery.model import Provider
from flowmail.delivery.providers.console import ConsoleProvider, FileProvider
from flowmail.delivery.providers.mailgun import EU_BASE_URL, MailgunProvider
from flowmail.delivery.providers.postmark import PostmarkProvider
from flowmail.delivery.providers.sendgrid import SendGridProvider
from flowmail.delivery.providers.ses import SesProvider
from flowmail.delivery.providers.smtp import SmtpProvider, TlsMode

if TYPE_CHECKING:
    from flowmail.settings import Settings

__all__ = [
    "PROVIDERS",
    "ConsoleProvider",
    "FileProvider",
    "MailgunProvider",
    "PostmarkProvider",
    "SendGridProvider",
    "SesProvider",
    "SmtpProvider",
    "make_provider",
]

PROVIDERS = ("smtp", "console", "file", "ses", "sendgrid", "mailgun", "postmark")


def _require(settings: Settings, provider: str, *keys: str) -> list[str]:
    missing = [key for key in keys if not settings.api_keys.get(key)]
    if missing:
        names = ", ".join(f"api_keys.{key}" for key in missing)
        raise ValueError(f"provider {provider!r} needs {names} in the settings")
    return [settings.api_keys[key] for key in keys]


def make_provider(name: str, settings: Settings, *, clock: Clock | None = None) -> Provider:
    """The provider called ``name``, configured from ``settings``.

    Raises ``ValueError`` naming the problem for an unknown name or missing credentials.
    """
    keys = settings.api_keys
    base_url = keys.get(f"{name}_base_url") or None
    if name == "console":
        return ConsoleProvider(clock=clock)
    dkim = DkimSigner.from_settings(settings)
    if name == "smtp":
        if settings.smtp_tls not in ("none", "starttls", "tls"):
            raise ValueError(f"smtp_tls must be none, starttls or tls, not {settings.smtp_tls!r}")
        tls: TlsMode = settings.smtp_tls  # type: ignore[assignment]
        return SmtpProvider(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            connections=settings.smtp_connections,
            dkim=dkim,
            clock=clock,
        )
    if name == "file":
        return FileProvider(keys.get("file_dir") or "mail-out", dkim=dkim, clock=clock)
    if name == "sendgrid":
        (api_key,) = _require(settings, name, "sendgrid")
        return SendGridProvider(api_key=api_key, base_url=base_url, clock=clock)
    if name == "mailgun":
        api_key, domain = _require(settings, name, "mailgun", "mailgun_domain")
        if not base_url and keys.get("mailgun_region", "").lower() == "eu":
            base_url = EU_BASE_URL
        return MailgunProvider(
            api_key=api_key, domain=domain, base_url=base_url, dkim=dkim, clock=clock
        )
    if name == "postmark":
        (token,) = _require(settings, name, "postmark")
        return PostmarkProvider(
            server_token=token,
            message_stream=keys.get("postmark_stream", "outbound"),
            base_url=base_url,
            clock=clock,
        )
    if name == "ses":
        access, secret, region = _require(
            settings, name, "ses_access_key", "ses_secret_key", "ses_region"
        )
        return SesProvider(
            access_key=access,
            secret_key=secret,
            region=region,
            session_token=keys.get("ses_session_token", ""),
            configuration_set=keys.get("ses_configuration_set", ""),
            base_url=base_url,
            dkim=dkim,
            clock=clock,
        )
    raise ValueError(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}")
