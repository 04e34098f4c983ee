"""What a provider webhook becomes: delivery events, and the request they arrive in.

Every provider module has the same two functions (STYLE habit 8):

* ``verify(request, config, now) -> str | None`` checks the raw request bytes the way the
  provider documents it and raises :class:`VerificationError` for anything unsigned, forged,
  altered or stale. It returns a *replay key* where the scheme has one (Mailgun's token,
  the Standard Webhooks ``webhook-id``, the SNS ``MessageId``): a value the caller may
  remember for the replay window to refuse the same signed request twice. ``None`` where
  the scheme has no such value.
* ``normalize(body) -> list[DeliveryEvent]`` is pure: the same bytes always give the same
  events, with deterministic ``provider_event_id`` values, so a replayed webhook
  deduplicates on the store's UNIQUE constraint. Events that flowmail has no kind for
  (SendGrid ``processed``, SES ``Send``, ...) are skipped, not errors; a body that is not
  the provider's format raises :class:`MalformedPayload`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Kind = Literal[
    "delivered", "opened", "clicked", "bounced", "complained", "unsubscribed", "deferred"
]
BounceType = Literal["hard", "soft"]
KINDS: frozenset[str] = frozenset(
    {"delivered", "opened", "clicked", "bounced", "complained", "unsubscribed", "deferred"}
)

# What flowmail attaches to every email it sends, and looks for in what comes back.
TAG_MESSAGE = "flowmail_message"
TAG_WORKFLOW = "flowmail_workflow"
TAG_STEP = "flowmail_step"
HEADER_MESSAGE = "X-Flowmail-Message"

MAX_EVENTS = 10_000  # events one request may carry; more is a malformed payload


class VerificationError(Exception):
    """The request is unsigned, forged, altered, stale or otherwise not to be trusted."""


class MalformedPayload(ValueError):
    """The body is not the provider's documented format."""


@dataclass(frozen=True)
class DeliveryEvent:
    """One thing that happened to one email we sent, as a provider reported it."""

    provider: str
    provider_event_id: str  # unique per provider event and stable across replays
    kind: Kind
    at: datetime  # aware
    recipient: str | None
    message_id: str | None = None  # OUR message key, when the provider echoed our tags
    workflow_id: str | None = None
    step_id: str | None = None
    rfc_message_id: str | None = None  # the Message-ID header, without angle brackets
    provider_message_id: str | None = None  # the provider's own id for the email
    bounce_type: BounceType | None = None  # only for kind == "bounced"
    url: str | None = None  # only for kind == "clicked"
    user_agent: str | None = None
    reason: str | None = None  # the remote server's words (diagnostic, response, ...)
    machine: str | None = None  # opened only: the provider says a machine opened it (why)
    detail: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown delivery event kind {self.kind!r}")
        if self.at.tzinfo is None:
            raise ValueError("delivery events need an aware timestamp")
        if (self.kind == "bounced") != (self.bounce_type is not None):
            raise ValueError("bounce_type is required for bounces and only for them")
        if not self.provider_event_id:
            raise ValueError("provider_event_id must not be empty")


class Headers(Mapping[str, str]):
    """Request headers, looked up without regard to case; the first value of a repeated
    header wins for ``[]`` and ``get``, :meth:`get_all` gives every value."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in pairs]
        self._first: dict[str, str] = {}
        for key, value in self._items:
            self._first.setdefault(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [value for name, value in self._items if name.lower() == wanted]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request as it arrived: the body is the raw bytes, never re-serialised."""

    method: str
    path: str
    headers: Headers
    body: bytes
    received_at: datetime
    query: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            object.__setattr__(self, "headers", Headers(self.headers))
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be aware")
        if not isinstance(self.body, bytes):
            raise TypeError("the body must be the raw request bytes")


Verify = Callable[[WebhookRequest, Any, datetime], str | None]
Normalize = Callable[[bytes], list[DeliveryEvent]]


@dataclass(frozen=True)
class WebhookProvider:
    """One provider's pair of functions and the type of its verifier configuration."""

    name: str
    config_type: type[Any]
    verify: Verify
    normalize: Normalize


# --- bounce classification -------------------------------------------------------------

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\d|\.\d)")
_BASIC = re.compile(r"(?<!\d)([245]\d\d)(?!\d)")

# Permanent (5.x.x) codes that common practice treats as soft: the problem is the message,
# the sender or a full mailbox, not the address, so suppressing the address would be wrong.
_SOFT_PERMANENT_SUBJECTS = {"6", "7"}  # 5.6.x media/content, 5.7.x security/policy
_SOFT_PERMANENT_CODES = {"2.2", "2.3", "3.4"}  # mailbox full, message too long, too big


def find_enhanced_code(text: str | None) -> str | None:
    """The first RFC 3463 enhanced status code (``5.1.1``) in ``text``, if any."""
    if not text:
        return None
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def find_basic_code(text: str | int | None) -> str | None:
    """The first three-digit SMTP reply code (``550``) in ``text``, if any."""
    if text is None:
        return None
    match = _BASIC.search(str(text))
    return match.group(1) if match else None


def classify_bounce(status_code: str | int | None, enhanced: str | None) -> BounceType:
    """Hard or soft, by the enhanced status code (RFC 3463) first, the SMTP reply code next.

    * ``4.x.x`` is soft; ``5.x.x`` is hard, except where common practice (SES, Postmark,
      SendGrid "blocked") counts a permanent reply as soft because the address itself is
      fine: ``5.7.x`` (policy and security: spam filters, reputation, DMARC, blocklists -
      so ``5.7.1`` is **soft**), ``5.6.x`` (content), ``5.2.2`` (mailbox full), ``5.2.3`` and
      ``5.3.4`` (message too big).
    * ``status_code`` may be a whole SMTP reply (``"550 5.1.1 user unknown"``): an enhanced
      code found in it counts when ``enhanced`` has none.
    * Without a usable enhanced code, ``5xx`` is hard (``552``, "exceeded storage", is
      soft) and ``4xx`` is soft.
    * Nothing usable at all is soft: an unexplained failure never suppresses an address.
    """
    code = find_enhanced_code(enhanced) or find_enhanced_code(
        None if status_code is None else str(status_code)
    )
    if code is not None:
        klass, subject, detail = code.split(".")
        if klass != "5":
            return "soft"
        if subject in _SOFT_PERMANENT_SUBJECTS or f"{subject}.{detail}" in _SOFT_PERMANENT_CODES:
            return "soft"
        return "hard"
    basic = find_basic_code(status_code)
    if basic is not None and basic.startswith("5") and basic != "552":
        return "hard"
    return "soft"
