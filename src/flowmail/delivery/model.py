"""What crosses the boundary between the sender and a provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutgoingEmail:
    """A rendered email, ready for a provider. Every string is untrusted until the MIME
    builder (``delivery.mime``) has checked it: header values never carry CR, LF or NUL."""

    message_id: str  # RFC 5322 Message-ID without angle brackets, stable across retries
    idempotency_key: str  # our message key: one per (run, step, visit)
    from_address: str
    to: str
    subject: str
    text: str
    html: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe, Feedback-ID, ...
    tags: dict[str, str] = field(default_factory=dict)  # workflow, step, message: for providers


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_id: str | None = None  # the provider's own message id, when it gives one


class SendError(Exception):
    """A send failed. ``permanent`` errors are not retried; ``hard_bounce`` ones also add a
    suppression for the recipient."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        hard_bounce: bool = False,
        code: str | None = None,
        provider: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.hard_bounce = hard_bounce
        self.code = code
        self.provider = provider


class Provider(Protocol):
    """A way out: SMTP, an HTTP API, or the console/file sink for development."""

    name: str

    async def send(self, email: OutgoingEmail) -> SendResult:
        """Hand one email over; raise :class:`SendError` on failure."""
        ...

    async def send_many(self, emails: Sequence[OutgoingEmail]) -> list[SendResult | SendError]:
        """Hand several over (concurrently or pipelined where the provider allows)."""
        ...

    async def close(self) -> None: ...
