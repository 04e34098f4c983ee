"""Amazon SNS message verification, for the SES webhook (see :mod:`flowmail.webhooks.ses`).

Follows "Verifying the signatures of Amazon SNS messages" and "Amazon SNS message and JSON
formats" (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flowmail.webhooks import _common as c
from flowmail.webhooks.model import MalformedPayload, VerificationError

_SNS_HOST = re.compile(r"sns\.[a-z0-9]+(?:-[a-z0-9]+)+\.amazonaws\.com")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def is_sns_url(url: str, *, certificate: bool = False) -> bool:
    """True for ``https://sns.<region>.amazonaws.com/<path>`` with no user, port or tricks;
    a ``certificate`` URL must also name a ``.pem`` file, with no query or fragment."""
    if not isinstance(url, str) or not url.isascii() or any(ch in url for ch in "\\ \t\r\n"):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port is None
        and parts.username is None
        and parts.password is None
        and parts.netloc == parts.hostname  # no userinfo or port, written in lower case
        and _SNS_HOST.fullmatch(parts.netloc) is not None
        and parts.path.startswith("/")
        and (
            not certificate or (parts.path.endswith(".pem") and not (parts.query or parts.fragment))
        )
    )


class CertificateCache:
    """A bounded, in-memory cache in front of a fetch function (e.g. an HTTPS GET with
    certificate validation). It refuses any URL that is not an SNS certificate URL, so
    even a misused cache never fetches from another host."""

    def __init__(self, fetch: Callable[[str], bytes], max_entries: int = 16) -> None:
        self._fetch = fetch
        self._max = max_entries
        self._certs: OrderedDict[str, bytes] = OrderedDict()

    def __call__(self, url: str) -> bytes:
        if not is_sns_url(url, certificate=True):
            raise ValueError(f"not an Amazon SNS certificate URL: {url!r}")
        if url in self._certs:
            self._certs.move_to_end(url)
            return self._certs[url]
        pem = self._fetch(url)
        self._certs[url] = pem
        while len(self._certs) > self._max:
            self._certs.popitem(last=False)
        return pem


def verify_envelope(
    body: bytes,
    topic_arn: str,
    certificate: Callable[[str], bytes],
    tolerance: timedelta,
    now: datetime,
) -> str:
    """Verify an SNS message's signature, topic and timestamp; return its ``MessageId``."""
    try:
        envelope = c.load_json(body)
    except ValueError:
        raise VerificationError("the body is not JSON") from None
    if not isinstance(envelope, dict) or envelope.get("Type") not in TYPES:
        raise VerificationError("not an SNS message")
    make_hash = _HASHES.get(str(envelope.get("SignatureVersion", "")))
    if make_hash is None:
        raise VerificationError("unsupported SNS SignatureVersion")
    url = envelope.get("SigningCertURL")
    if not isinstance(url, str) or not is_sns_url(url, certificate=True):
        raise VerificationError("SigningCertURL is not an Amazon SNS certificate URL")
    if envelope.get("TopicArn") != topic_arn:
        raise VerificationError("the message is for another SNS topic")
    c.check_window(_timestamp(envelope.get("Timestamp")), now, tolerance)
    signature = envelope.get("Signature")
    if not isinstance(signature, str) or not signature:
        raise VerificationError("missing SNS Signature")
    der = c.b64decode_strict(signature, "SNS Signature")
    key = _public_key(certificate, url, now)
    try:
        key.verify(der, string_to_sign(envelope), padding.PKCS1v15(), make_hash())
    except InvalidSignature:
        raise VerificationError("the SNS signature does not match") from None
    return str(envelope["MessageId"])


def string_to_sign(envelope: dict[str, Any]) -> bytes:
    """The canonical string AWS signs, for the envelope's ``Type``."""
    notification = envelope.get("Type") == "Notification"
    fields = _NOTIFICATION_FIELDS if notification else _CONFIRMATION_FIELDS
    lines = []
    for name in fields:
        value = envelope.get(name)
        if name == "Subject" and value is None:
            continue
        if not isinstance(value, str):
            raise VerificationError(f"missing or malformed SNS field {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def _timestamp(value: Any) -> datetime:
    try:
        return c.from_iso(value, "SNS Timestamp")
    except MalformedPayload:
        raise VerificationError("missing or malformed SNS Timestamp") from None


def _public_key(certificate: Callable[[str], bytes], url: str, now: datetime) -> rsa.RSAPublicKey:
    try:
        data = certificate(url)
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(data)
        )
    except Exception as exc:  # the fetcher is the caller's: any failure means "not verified"
        raise VerificationError(f"the SNS signing certificate is unavailable: {exc}") from exc
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise VerificationError("the SNS signing certificate is not valid now")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise VerificationError("the SNS signing certificate does not hold an RSA key")
    return key


@dataclass(frozen=True)
class SubscriptionConfirmation:
    type: str  # SubscriptionConfirmation or UnsubscribeConfirmation
    topic_arn: str
    subscribe_url: str  # checked: an https URL on an SNS host
    token: str


def subscription_confirmation(body: bytes) -> SubscriptionConfirmation | None:
    """For a verified confirmation envelope, what the endpoint needs to confirm the
    subscription (GET ``subscribe_url``, or ConfirmSubscription with ``token``)."""
    envelope = c.as_object(c.load_json(body), "an SNS message")
    kind = envelope.get("Type")
    if kind not in TYPES[1:]:
        return None
    url, token, topic = (
        envelope.get("SubscribeURL"),
        envelope.get("Token"),
        envelope.get("TopicArn"),
    )
    if not (isinstance(url, str) and is_sns_url(url)):
        raise MalformedPayload("SubscribeURL is not an Amazon SNS URL")
    if not (isinstance(token, str) and isinstance(topic, str)):
        raise MalformedPayload("a confirmation needs Token and TopicArn")
    return SubscriptionConfirmation(str(kind), topic, url, token)
