"""Provider webhooks in are just events: ``verify(request, config, now)`` and a pure
``normalize(body) -> list[DeliveryEvent]``, one module per provider.

The HTTP endpoint for ``POST /v1/webhooks/{name}`` looks the provider up in
:data:`PROVIDERS`, calls ``verify`` on the raw request (a :class:`VerificationError` is a
401 that applies nothing), remembers the returned replay key for the window where there is
one, then stores ``normalize(request.body)``, deduplicating on ``provider_event_id``.
"""

from __future__ import annotations

from flowmail.webhooks import generic, mailgun, postmark, sendgrid, ses, smtp_dsn
from flowmail.webhooks.model import (
    HEADER_MESSAGE,
    TAG_MESSAGE,
    TAG_STEP,
    TAG_WORKFLOW,
    BounceType,
    DeliveryEvent,
    Headers,
    Kind,
    MalformedPayload,
    VerificationError,
    WebhookProvider,
    WebhookRequest,
    classify_bounce,
)

PROVIDERS: dict[str, WebhookProvider] = {
    module.NAME: WebhookProvider(module.NAME, module.Config, module.verify, module.normalize)
    for module in (ses, sendgrid, mailgun, postmark, smtp_dsn, generic)
}

__all__ = [
    "HEADER_MESSAGE",
    "PROVIDERS",
    "TAG_MESSAGE",
    "TAG_STEP",
    "TAG_WORKFLOW",
    "BounceType",
    "DeliveryEvent",
    "Headers",
    "Kind",
    "MalformedPayload",
    "VerificationError",
    "WebhookProvider",
    "WebhookRequest",
    "classify_bounce",
]
