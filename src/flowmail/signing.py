"""Opaque, signed tokens for links in emails (unsubscribe, preferences, clicks, opens).

A token is ``base64url(payload) "." base64url(HMAC-SHA256(secret, purpose, payload))``.
Verification is constant-time; a token signed for one purpose never passes for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import lru_cache
from typing import Any


class BadToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=64)
def _keyed(secret: str, purpose: str) -> Any:
    """The HMAC state after the key and the purpose: copied per token, not rebuilt."""
    mac = hmac.new(secret.encode(), purpose.encode() + b"\x00", hashlib.sha256)
    return mac


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    mac = _keyed(secret, purpose).copy()
    mac.update(payload)
    return bytes(mac.digest())


def sign(secret: str, purpose: str, data: dict[str, Any]) -> str:
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify(secret: str, purpose: str, token: str) -> dict[str, Any]:
    """The signed data, or :class:`BadToken` for anything forged, altered or malformed."""
    try:
        body, mac = token.split(".", 1)
        payload = _unb64(body)
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise BadToken("malformed token") from None
    if not hmac.compare_digest(given, _mac(secret, purpose, payload)):
        raise BadToken("bad signature")
    try:
        data = json.loads(payload)
    except ValueError:
        raise BadToken("malformed token") from None
    if not isinstance(data, dict):
        raise BadToken("malformed token")
    return data
