"""Small helpers every provider module shares: parsing, time, tags, ids, replay windows."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flowmail.webhooks.model import (
    HEADER_MESSAGE,
    MAX_EVENTS,
    TAG_MESSAGE,
    TAG_STEP,
    TAG_WORKFLOW,
    MalformedPayload,
    VerificationError,
    find_enhanced_code,
)

# --- payloads --------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """The JSON document in ``body``, or :class:`MalformedPayload`."""
    if not isinstance(body, bytes):
        raise MalformedPayload("the body must be bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedPayload(f"the body is not JSON: {exc}") from None


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} must be a JSON object")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedPayload(f"{what} must be a JSON array")
    if len(value) > MAX_EVENTS:
        raise MalformedPayload(f"{what} has more than {MAX_EVENTS} entries")
    return value


def text(value: Any) -> str | None:
    """A non-empty string, or None (numbers become their decimal text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def strip_brackets(message_id: str | None) -> str | None:
    if message_id is None:
        return None
    inner = message_id.strip().removeprefix("<").removesuffix(">").strip()
    return inner or None


def find_enhanced_code_in(*values: Any) -> str | None:
    """The first enhanced status code found in any of ``values``."""
    for value in values:
        found = find_enhanced_code(text(value))
        if found is not None:
            return found
    return None


def content_id(prefix: str, obj: Any) -> str:
    """A deterministic id for an event the provider gave no id: a hash of its content."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{prefix}:sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


# --- time ------------------------------------------------------------------------------


def from_unix(value: Any, what: str = "timestamp") -> datetime:
    """Seconds since the epoch (int, float or numeric string) as an aware UTC datetime."""
    seconds: float | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except ValueError:
            seconds = None
    if seconds is None or not (0 <= seconds < 32503680000):
        raise MalformedPayload(f"{what} is not a Unix timestamp: {value!r}")
    return datetime.fromtimestamp(seconds, UTC)


def from_iso(value: Any, what: str = "timestamp") -> datetime:
    """An ISO 8601 timestamp as an aware datetime; one without an offset is taken as UTC."""
    if not isinstance(value, str):
        raise MalformedPayload(f"{what} is not an ISO 8601 timestamp: {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MalformedPayload(f"{what} is not an ISO 8601 timestamp: {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")


def check_window(stamp: datetime, now: datetime, tolerance: timedelta) -> None:
    """Refuse a signed timestamp further than ``tolerance`` from ``now``, either way."""
    if abs(now - stamp) > tolerance:
        raise VerificationError("the signed timestamp is outside the replay window")


def unix_header(value: str | None, what: str) -> datetime:
    """A signed Unix-seconds timestamp from a header or field, or :class:`VerificationError`."""
    if value is None:
        raise VerificationError(f"missing {what}")
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise VerificationError(f"malformed {what}")
    return datetime.fromtimestamp(int(value), UTC)


def b64decode_strict(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise VerificationError(f"malformed {what}") from None


def same_secret(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time equality of two secrets, whatever characters they hold."""
    a = given.encode("utf-8", "surrogatepass") if isinstance(given, str) else given
    b = expected.encode("utf-8", "surrogatepass") if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


# --- our tags --------------------------------------------------------------------------


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return text(value)


def our_tags(tags: Mapping[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """(message, workflow, step) from a provider's custom arguments or metadata; values may
    be strings, numbers or lists of strings (SES ``mail.tags``)."""
    if not isinstance(tags, Mapping):
        return None, None, None
    return _first(tags.get(TAG_MESSAGE)), _first(tags.get(TAG_WORKFLOW)), _first(tags.get(TAG_STEP))


def header_value(headers: Iterable[Any], name: str) -> str | None:
    """The first value of header ``name`` in a ``[{"name": .., "value": ..}]`` list."""
    wanted = name.lower()
    for header in headers:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == wanted:
            return text(header.get("value"))
    return None


def message_key_from_headers(headers: Iterable[Any]) -> str | None:
    return header_value(headers, HEADER_MESSAGE)
