"""The generic webhook: Standard Webhooks signatures and flowmail's own event format."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowmail.webhooks import Headers, MalformedPayload, VerificationError, WebhookRequest, generic

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "generic"

# The test vector of the Standard Webhooks reference library (see the fixtures' README).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SPEC_TIME = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)


def request(body: bytes, headers: dict[str, str], at: datetime = NOW) -> WebhookRequest:
    return WebhookRequest("POST", "/v1/webhooks/generic", Headers(headers), body, at)


def spec_headers(signature: str = SPEC_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": signature,
    }


def signed(
    body: bytes, at: datetime = NOW, secret: str = SECRET, webhook_id: str = "evt_1"
) -> WebhookRequest:
    timestamp = int(at.timestamp())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": generic.sign(secret, webhook_id, timestamp, body),
    }
    return request(body, headers, NOW)


# --- verify ---------------------------------------------------------------------------


def test_the_published_test_vector_signs_and_verifies() -> None:
    assert generic.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    config = generic.Config(SPEC_SECRET)
    assert (
        generic.verify(request(SPEC_BODY, spec_headers(), SPEC_TIME), config, SPEC_TIME) == SPEC_ID
    )


def test_the_secret_may_come_without_its_prefix() -> None:
    config = generic.Config(SPEC_SECRET.removeprefix("whsec_"))
    assert generic.verify(request(SPEC_BODY, spec_headers()), config, SPEC_TIME) == SPEC_ID


def test_the_vectors_altered_signature_is_refused() -> None:
    config = generic.Config(SPEC_SECRET)
    altered = spec_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=")
    with pytest.raises(VerificationError):
        generic.verify(request(SPEC_BODY, altered), config, SPEC_TIME)


def test_one_matching_signature_among_several_is_enough() -> None:
    config = generic.Config(SPEC_SECRET)
    several = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            SPEC_SIGNATURE,
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        ]
    )
    assert generic.verify(request(SPEC_BODY, spec_headers(several)), config, SPEC_TIME) == SPEC_ID
    only_wrong_versions = spec_headers(SPEC_SIGNATURE.replace("v1,", "v1a,"))
    with pytest.raises(VerificationError):
        generic.verify(request(SPEC_BODY, only_wrong_versions), config, SPEC_TIME)


def test_one_altered_body_byte_or_a_reserialised_body_is_refused() -> None:
    config = generic.Config(SPEC_SECRET)
    for body in (b'{"test": 2432232315}', b'{"test":2432232314}'):
        with pytest.raises(VerificationError):
            generic.verify(request(body, spec_headers()), config, SPEC_TIME)


def test_another_secret_is_refused() -> None:
    body = (FIXTURES / "events.json").read_bytes()
    forged = signed(body, secret="whsec_" + base64.b64encode(b"x" * 32).decode())
    with pytest.raises(VerificationError):
        generic.verify(forged, generic.Config(SECRET), NOW)
    assert generic.verify(signed(body), generic.Config(SECRET), NOW) == "evt_1"


@pytest.mark.parametrize(
    "offset", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)]
)
def test_stale_and_future_timestamps_are_refused(offset: timedelta) -> None:
    config = generic.Config(SPEC_SECRET)
    with pytest.raises(VerificationError):
        generic.verify(request(SPEC_BODY, spec_headers()), config, SPEC_TIME + offset)
    assert generic.verify(request(SPEC_BODY, spec_headers()), config, SPEC_TIME + offset / 2)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": None},
        {"webhook-timestamp": None},
        {"webhook-signature": None},
        {"webhook-timestamp": "hello"},
        {"webhook-timestamp": "1614265330.0"},
        {"webhook-signature": ""},
        {"webhook-signature": "v1,%%%"},
        {"webhook-signature": "v1"},
        {"webhook-signature": "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
        {"webhook-id": "msg_other"},
    ],
)
def test_missing_or_malformed_headers_are_verification_errors(
    change: dict[str, str | None],
) -> None:
    headers = {k: v for k, v in (spec_headers() | change).items() if v is not None}
    with pytest.raises(VerificationError):
        generic.verify(request(SPEC_BODY, headers), generic.Config(SPEC_SECRET), SPEC_TIME)


@pytest.mark.parametrize(
    "secret", ["", "whsec_", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_bad_secrets_are_configuration_errors(secret: str) -> None:
    with pytest.raises(ValueError):
        generic.Config(secret)


# --- normalize ------------------------------------------------------------------------


def test_the_sample_events_map_one_to_one() -> None:
    events = generic.normalize((FIXTURES / "events.json").read_bytes())
    assert [(e.kind, e.bounce_type) for e in events] == [
        ("delivered", None),
        ("opened", None),
        ("clicked", None),
        ("bounced", "hard"),  # by its status 5.1.1
        ("bounced", "soft"),  # as given
        ("complained", None),
        ("unsubscribed", None),
        ("deferred", None),
    ]
    delivered, opened, clicked = events[:3]
    assert delivered.provider_event_id == "evt_1"
    assert (delivered.message_id, delivered.workflow_id, delivered.step_id) == (
        "msg-0001",
        "welcome",
        "send_welcome",
    )
    assert opened.at == datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
    assert clicked.url == "https://flowmail.example/docs"
    assert opened.provider_event_id.startswith("generic:sha256:")


def test_ids_are_deterministic() -> None:
    body = (FIXTURES / "events.json").read_bytes()
    first = generic.normalize(body)
    assert first == generic.normalize(body)
    assert len({e.provider_event_id for e in first}) == len(first)


def test_a_single_object_is_one_event() -> None:
    body = json.dumps(
        {"type": "opened", "message_id": "m", "email": "a@example.com", "at": "2025-09-01T09:00:00"}
    )
    (event,) = generic.normalize(body.encode())
    assert event.at == datetime(2025, 9, 1, 9, 0, tzinfo=UTC)  # no offset: UTC


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"nope",
        b"[1]",
        b'{"type": "sent", "at": "2025-09-01T09:00:00Z"}',
        b'{"type": "opened"}',
        b'{"type": "opened", "at": "tomorrow"}',
        b'{"type": "bounced", "at": "2025-09-01T09:00:00Z", "bounce_type": "medium"}',
    ],
)
def test_malformed_events_are_malformed_payloads(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        generic.normalize(body)
