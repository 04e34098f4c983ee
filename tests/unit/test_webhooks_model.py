"""The shared webhook model: events, requests, bounce classification, the registry."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import flowmail.webhooks as webhooks
from flowmail.webhooks import (
    PROVIDERS,
    DeliveryEvent,
    Headers,
    WebhookRequest,
    classify_bounce,
    generic,
    mailgun,
    postmark,
    sendgrid,
    ses,
    smtp_dsn,
)
from flowmail.webhooks.model import find_basic_code, find_enhanced_code

NOW = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)


def test_the_public_api_is_pinned() -> None:
    assert sorted(webhooks.__all__) == sorted(
        [
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
    )


def test_the_registry_names_one_module_per_provider() -> None:
    assert set(PROVIDERS) == {"ses", "sendgrid", "mailgun", "postmark", "smtp-dsn", "generic"}
    modules = {
        "ses": ses,
        "sendgrid": sendgrid,
        "mailgun": mailgun,
        "postmark": postmark,
        "smtp-dsn": smtp_dsn,
        "generic": generic,
    }
    for name, provider in PROVIDERS.items():
        module = modules[name]
        assert provider.name == name
        assert provider.verify is module.verify
        assert provider.normalize is module.normalize
        assert provider.config_type is module.Config


@pytest.mark.parametrize(
    ("status", "enhanced", "expected"),
    [
        (None, "5.1.1", "hard"),  # bad destination mailbox address
        (None, "5.1.10", "hard"),  # null MX / no such recipient
        (None, "5.2.1", "hard"),  # mailbox disabled
        (None, "5.4.4", "hard"),  # unable to route
        (None, "5.0.0", "hard"),  # unspecified permanent failure
        (None, "5.5.0", "hard"),  # often "mailbox unavailable"
        (None, "5.7.1", "soft"),  # policy: spam filter, reputation, not the address
        (None, "5.7.26", "soft"),  # DMARC failure
        (None, "5.6.0", "soft"),  # content
        (None, "5.2.2", "soft"),  # mailbox full
        (None, "5.3.4", "soft"),  # message too big
        (None, "4.2.2", "soft"),
        (None, "4.7.1", "soft"),
        (None, "4.0.0 (unknown temporary failure)", "soft"),
        ("550", None, "hard"),
        (550, None, "hard"),
        ("554", None, "hard"),
        ("552", None, "soft"),  # exceeded storage allocation
        ("421", None, "soft"),
        ("550 5.7.1 blocked by policy", None, "soft"),  # an enhanced code in the reply wins
        ("550 5.1.1 user unknown", None, "hard"),
        ("550", "4.2.0", "soft"),  # the enhanced code wins over the reply code
        (None, None, "soft"),  # unexplained failures never suppress
        ("garbage", "x.y.z", "soft"),
    ],
)
def test_bounces_are_classified_by_enhanced_code(
    status: str | int | None, enhanced: str | None, expected: str
) -> None:
    assert classify_bounce(status, enhanced) == expected


def test_codes_are_found_in_text() -> None:
    assert find_enhanced_code("smtp; 550 5.1.1 <jane@example.com>... User") == "5.1.1"
    assert find_enhanced_code("version 1.5.1.2 of something") is None
    assert find_enhanced_code("10.5.1.1") is None
    assert find_basic_code("smtp; 550 5.1.1 user") == "550"
    assert find_basic_code("no code") is None


def test_headers_are_case_insensitive() -> None:
    headers = Headers([("Content-Type", "a"), ("X-Thing", "1"), ("x-thing", "2")])
    assert headers["content-type"] == "a"
    assert headers.get("X-THING") == "1"
    assert headers.get_all("x-Thing") == ["1", "2"]
    assert "CONTENT-TYPE" in headers
    assert 42 not in headers  # type: ignore[comparison-overlap]
    assert len(headers) == 2


def test_requests_take_plain_mappings_and_refuse_naive_times() -> None:
    request = WebhookRequest("POST", "/v1/webhooks/x", {"A": "b"}, b"{}", NOW)  # type: ignore[arg-type]
    assert isinstance(request.headers, Headers)
    assert request.headers["a"] == "b"
    with pytest.raises(ValueError):
        WebhookRequest("POST", "/", Headers(), b"", datetime(2025, 1, 1))
    with pytest.raises(TypeError):
        WebhookRequest("POST", "/", Headers(), "text", NOW)  # type: ignore[arg-type]


def test_events_check_their_own_shape() -> None:
    DeliveryEvent("p", "id", "bounced", NOW, "a@example.com", bounce_type="hard")
    with pytest.raises(ValueError):
        DeliveryEvent("p", "id", "bounced", NOW, "a@example.com")
    with pytest.raises(ValueError):
        DeliveryEvent("p", "id", "delivered", NOW, "a@example.com", bounce_type="soft")
    with pytest.raises(ValueError):
        DeliveryEvent("p", "id", "delivered", datetime(2025, 1, 1), "a@example.com")
    with pytest.raises(ValueError):
        DeliveryEvent("p", "id", "sent", NOW, "a@example.com")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DeliveryEvent("p", "", "delivered", NOW, "a@example.com")


def _configs() -> dict[str, object]:
    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def no_certificate(url: str) -> bytes:
        raise AssertionError("nothing may be fetched for a hostile request")

    return {
        "sendgrid": sendgrid.Config(base64.b64encode(der).decode()),
        "mailgun": mailgun.Config("key-0123456789"),
        "postmark": postmark.Config("user", "password"),
        "ses": ses.Config("arn:aws:sns:us-east-1:123456789012:topic", no_certificate),
        "smtp-dsn": smtp_dsn.Config("0123456789abcdef0123"),
        "generic": generic.Config("whsec_" + base64.b64encode(b"k" * 32).decode()),
    }


HOSTILE_BODIES = [
    b"",
    b"\x00\xff\xfe",
    b"[]",
    b"{}",
    b"null",
    b'{"signature": []}',
    b'{"signature": {"timestamp": 1, "token": 2, "signature": 3}}',
    b'{"Type": "Notification", "SignatureVersion": "1"}',
    b"[" * 100_000 + b"]" * 100_000,
]
HOSTILE_HEADERS = [
    {},
    {"Authorization": "Basic \x00"},
    {"webhook-id": "", "webhook-timestamp": "", "webhook-signature": ""},
    {"webhook-id": "a", "webhook-timestamp": "9" * 40, "webhook-signature": "v1,===="},
    {"X-Twilio-Email-Event-Webhook-Signature": "@@", "X-Twilio-Email-Event-Webhook-Timestamp": "1"},
]


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_hostile_requests_only_ever_raise_verification_errors(name: str) -> None:
    provider, config = PROVIDERS[name], _configs()[name]
    for body in HOSTILE_BODIES:
        for headers in HOSTILE_HEADERS:
            request = WebhookRequest("POST", "/", Headers(headers), body, NOW)
            with pytest.raises(webhooks.VerificationError):
                provider.verify(request, config, NOW)


def test_verifiers_refuse_a_naive_now() -> None:
    request = WebhookRequest("POST", "/", Headers(), b"{}", NOW)
    for name, config in _configs().items():
        with pytest.raises(ValueError):
            PROVIDERS[name].verify(request, config, datetime(2025, 1, 1))
