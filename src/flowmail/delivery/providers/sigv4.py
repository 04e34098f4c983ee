"""AWS Signature Version 4 for one HTTP request (header form), as AWS documents it:
canonical request -> string to sign -> derived key -> HMAC-SHA256 signature.

Checked against AWS's published examples in ``tests/integration/test_http_providers.py``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_uri(path: str) -> str:
    """The path as sent, URI-encoded once more with ``/`` kept (every service but S3)."""
    return quote(path or "/", safe="/-_.~")


def canonical_query(query: str) -> str:
    """Parameters decoded, then each name and value URI-encoded, sorted."""
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """(canonical request, signed headers) for the headers given (all of them are signed)."""
    folded = sorted(
        (name.lower().strip(), " ".join(value.split())) for name, value in headers.items()
    )
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in folded)
    signed = ";".join(name for name, _ in folded)
    request = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            signed,
            payload_hash,
        ]
    )
    return request, signed


def amz_date(moment: datetime) -> str:
    """``20150830T123600Z``: the ``x-amz-date`` form of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("SigV4 needs an aware datetime")
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def authorization(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    stamp: str,
) -> str:
    """The ``Authorization`` header value. ``headers`` must include ``host`` and
    ``x-amz-date`` (= ``stamp``, like ``20150830T123600Z``); every header given is signed."""
    payload_hash = hashlib.sha256(body).hexdigest()
    request, signed = canonical_request(method, path, query, headers, payload_hash)
    date = stamp[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(request.encode("utf-8")).hexdigest()]
    )
    signature = hmac.new(
        signing_key(secret_key, date, region, service), to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
