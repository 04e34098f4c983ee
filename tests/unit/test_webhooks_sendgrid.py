"""SendGrid: the Signed Event Webhook (ECDSA P-256) and the Event Webhook batches."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flowmail.webhooks import Headers, MalformedPayload, VerificationError, WebhookRequest, sendgrid

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "sendgrid"
VECTOR = json.loads((FIXTURES / "signed_vector.json").read_text())
VECTOR_TIME = datetime.fromtimestamp(int(VECTOR["timestamp"]), UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(body: bytes, headers: dict[str, str], at: datetime = VECTOR_TIME) -> WebhookRequest:
    return WebhookRequest("POST", "/v1/webhooks/sendgrid", Headers(headers), body, at)


def vector_request(**overrides: str) -> WebhookRequest:
    headers = {
        sendgrid.SIGNATURE_HEADER: VECTOR["signature"],
        sendgrid.TIMESTAMP_HEADER: VECTOR["timestamp"],
    }
    headers.update(overrides)
    return request(VECTOR["payload"].encode(), headers)


def spki(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signed(key: ec.EllipticCurvePrivateKey, body: bytes, at: datetime) -> WebhookRequest:
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        sendgrid.TIMESTAMP_HEADER: timestamp,
    }
    return request(body, headers, at)


# --- verify: SendGrid's published test vector ------------------------------------------


def test_sendgrids_published_vector_verifies() -> None:
    config = sendgrid.Config(VECTOR["public_key"])
    assert sendgrid.verify(vector_request(), config, VECTOR_TIME) is None


def test_the_vector_is_refused_with_another_key() -> None:
    config = sendgrid.Config(VECTOR["other_public_key"])
    with pytest.raises(VerificationError):
        sendgrid.verify(vector_request(), config, VECTOR_TIME)


def test_the_vectors_bad_signature_is_refused() -> None:
    config = sendgrid.Config(VECTOR["public_key"])
    bad = {sendgrid.SIGNATURE_HEADER: VECTOR["bad_signature"]}
    with pytest.raises(VerificationError):
        sendgrid.verify(vector_request(**bad), config, VECTOR_TIME)


def test_one_altered_byte_is_refused() -> None:
    config = sendgrid.Config(VECTOR["public_key"])
    body = bytearray(VECTOR["payload"].encode())
    body[10] ^= 0x01
    headers = {
        sendgrid.SIGNATURE_HEADER: VECTOR["signature"],
        sendgrid.TIMESTAMP_HEADER: VECTOR["timestamp"],
    }
    with pytest.raises(VerificationError):
        sendgrid.verify(request(bytes(body), headers), config, VECTOR_TIME)


def test_the_raw_bytes_are_checked_not_a_reserialisation() -> None:
    config = sendgrid.Config(VECTOR["public_key"])
    reserialised = json.dumps(json.loads(VECTOR["payload"])).encode()
    headers = {
        sendgrid.SIGNATURE_HEADER: VECTOR["signature"],
        sendgrid.TIMESTAMP_HEADER: VECTOR["timestamp"],
    }
    with pytest.raises(VerificationError):
        sendgrid.verify(request(reserialised, headers), config, VECTOR_TIME)


@pytest.mark.parametrize(
    "offset", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)]
)
def test_stale_and_future_timestamps_are_refused(offset: timedelta) -> None:
    config = sendgrid.Config(VECTOR["public_key"])
    with pytest.raises(VerificationError):
        sendgrid.verify(vector_request(), config, VECTOR_TIME + offset)
    assert sendgrid.verify(vector_request(), config, VECTOR_TIME + offset / 2) is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {sendgrid.TIMESTAMP_HEADER: VECTOR["timestamp"]},
        {sendgrid.SIGNATURE_HEADER: VECTOR["signature"]},
        {sendgrid.SIGNATURE_HEADER: "not base64!", sendgrid.TIMESTAMP_HEADER: VECTOR["timestamp"]},
        {sendgrid.SIGNATURE_HEADER: "AAAA", sendgrid.TIMESTAMP_HEADER: VECTOR["timestamp"]},
        {sendgrid.SIGNATURE_HEADER: VECTOR["signature"], sendgrid.TIMESTAMP_HEADER: "yesterday"},
        {sendgrid.SIGNATURE_HEADER: VECTOR["signature"], sendgrid.TIMESTAMP_HEADER: "-1600112502"},
        {sendgrid.SIGNATURE_HEADER: VECTOR["signature"], sendgrid.TIMESTAMP_HEADER: "١٦٠٠"},
        {sendgrid.SIGNATURE_HEADER: "", sendgrid.TIMESTAMP_HEADER: VECTOR["timestamp"]},
    ],
)
def test_missing_or_malformed_headers_are_verification_errors(headers: dict[str, str]) -> None:
    config = sendgrid.Config(VECTOR["public_key"])
    with pytest.raises(VerificationError):
        sendgrid.verify(request(VECTOR["payload"].encode(), headers), config, VECTOR_TIME)


def test_header_names_are_case_insensitive() -> None:
    config = sendgrid.Config(VECTOR["public_key"])
    headers = {
        sendgrid.SIGNATURE_HEADER.lower(): VECTOR["signature"],
        sendgrid.TIMESTAMP_HEADER.upper(): VECTOR["timestamp"],
    }
    assert (
        sendgrid.verify(request(VECTOR["payload"].encode(), headers), config, VECTOR_TIME) is None
    )


# --- verify: keys generated here -------------------------------------------------------


def test_a_batch_signed_with_our_own_key_verifies_and_a_forged_one_does_not() -> None:
    key, forger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
    body = fixture("event_webhook_reference.json")
    config = sendgrid.Config(spki(key))
    assert sendgrid.verify(signed(key, body, now), config, now) is None
    with pytest.raises(VerificationError):
        sendgrid.verify(signed(forger, body, now), config, now)


def test_keys_are_accepted_as_sendgrid_shows_them_or_as_pem() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
    assert sendgrid.verify(signed(key, b"[]", now), sendgrid.Config(pem.decode()), now) is None


@pytest.mark.parametrize("bad", ["", "not a key", base64.b64encode(b"junk").decode()])
def test_a_bad_configured_key_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ValueError):
        sendgrid.Config(bad)


def test_only_p256_keys_are_accepted() -> None:
    with pytest.raises(ValueError):
        sendgrid.Config(spki(ec.generate_private_key(ec.SECP384R1())))


# --- normalize ------------------------------------------------------------------------


def kinds(body: bytes) -> list[tuple[str, str | None]]:
    return [(e.kind, e.bounce_type) for e in sendgrid.normalize(body)]


def test_the_reference_example_maps_each_event() -> None:
    assert kinds(fixture("event_webhook_reference.json")) == [
        ("deferred", None),
        ("delivered", None),
        ("opened", None),
        ("clicked", None),
        ("bounced", "hard"),  # status 5.0.0
        ("bounced", "hard"),  # dropped: Bounced Address
        ("complained", None),
        ("unsubscribed", None),
        ("unsubscribed", None),  # group_unsubscribe
    ]  # processed and group_resubscribe are skipped


def test_the_per_event_examples_map_and_keep_their_ids() -> None:
    events = sendgrid.normalize(fixture("per_event_examples.json"))
    by_id = {e.provider_event_id: e for e in events if e.kind != "bounced"}
    assert by_id["rWVYmVk90MjZJ9iohOBa3w=="].kind == "delivered"
    assert by_id["t7LEShmowp86DTdUW8M-GQ=="].reason == "400 try again later"
    opened = by_id["FOTFFO0ecsBE-zxFXfs6WA=="]
    assert opened.kind == "opened"
    assert opened.user_agent is not None and opened.user_agent.startswith("Mozilla/4.0")
    clicked = by_id["kCAi1KttyQdEKHhdC-nuEA=="]
    assert (clicked.kind, clicked.url) == ("clicked", "http://www.sendgrid.com/")
    assert by_id["37nvH5QBz858KGVYCM4uOA=="].kind == "complained"
    assert by_id["ahSCB7xYcXFb-hEaawsPRw=="].detail["asm_group_id"] == 10
    bounces = [(e.provider_event_id, e.bounce_type) for e in events if e.kind == "bounced"]
    assert bounces == [
        ("zmzJhfJgAfUSOW80yEbPyw==", "hard"),  # dropped: Bounced Address
        ("6g4ZI7SA-xmRDv57GoPIPw==", "hard"),  # type bounce, 5.0.0
        ("6g4ZI7SA-xmRDv57GoPIPw==", "soft"),  # type blocked (the docs reuse the id)
    ]
    assert {e.provider_event_id for e in events}.isdisjoint(
        {"rbtnWrG1DVDGGGFHFyun0A==", "w_u0vJhLT-OFfprar5N93g=="}  # processed, resubscribe
    )
    first = events[0]
    assert first.at == datetime.fromtimestamp(1513299569, UTC)
    assert first.recipient == "example@test.com"
    assert first.rfc_message_id == "14c5d75ce93.dfd.64b469@ismtpd-555"
    assert first.provider_message_id == "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
    assert first.provider == "sendgrid"


def test_the_signed_vector_payload_is_a_hard_bounce_from_a_drop() -> None:
    (event,) = sendgrid.normalize(VECTOR["payload"].encode())
    assert (event.kind, event.bounce_type, event.recipient) == (
        "bounced",
        "hard",
        "hello@world.com",
    )
    assert event.provider_event_id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"


def with_args(event: dict[str, Any], **args: str) -> bytes:
    return json.dumps([{**event, **args}]).encode()


def test_our_custom_args_come_back_as_top_level_keys() -> None:
    (sample,) = json.loads(fixture("custom_args_click.json"))
    (plain,) = sendgrid.normalize(fixture("custom_args_click.json"))
    assert plain.message_id is None and plain.detail["userid"] == "1123"
    body = with_args(
        sample, flowmail_message="msg-0001", flowmail_workflow="welcome", flowmail_step="s1"
    )
    (event,) = sendgrid.normalize(body)
    assert (event.message_id, event.workflow_id, event.step_id) == ("msg-0001", "welcome", "s1")
    assert (event.kind, event.url) == ("clicked", "https://sendgrid.com")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "5.1.1", "reason": "550 5.1.1 user unknown"}, "hard"),
        ({"status": "5.7.1", "reason": "550 5.7.1 spam"}, "soft"),
        ({"status": "4.2.2", "reason": "452 mailbox full"}, "soft"),
        ({"type": "blocked", "status": "5.1.1"}, "soft"),
    ],
)
def test_bounces_are_hard_or_soft_by_enhanced_code(fields: dict[str, str], expected: str) -> None:
    sample = {
        "email": "a@example.com",
        "timestamp": 1700000000,
        "event": "bounce",
        "sg_event_id": "x",
    }
    (event,) = sendgrid.normalize(with_args(sample, **fields))
    assert event.bounce_type == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("Bounced Address", "hard"),
        ("Unsubscribed Address", "hard"),
        ("Spam Reporting Address", "hard"),
        ("Invalid", "hard"),
        ("Spam Content (if Spam Checker app is enabled)", "soft"),
        ("Invalid SMTPAPI header", "soft"),
    ],
)
def test_drops_are_bounces_never_complaints(reason: str, expected: str) -> None:
    sample = {
        "email": "a@example.com",
        "timestamp": 1700000000,
        "event": "dropped",
        "sg_event_id": "x",
    }
    (event,) = sendgrid.normalize(with_args(sample, reason=reason))
    assert (event.kind, event.bounce_type) == ("bounced", expected)


def test_ids_are_deterministic_even_without_sg_event_id() -> None:
    body = fixture("custom_args_click.json")  # this sample has no sg_event_id
    first, second = sendgrid.normalize(body), sendgrid.normalize(body)
    assert first == second
    assert first[0].provider_event_id.startswith("sendgrid:sha256:")
    (sample,) = json.loads(body)
    (other,) = sendgrid.normalize(with_args(sample, url="https://sendgrid.com/other"))
    assert other.provider_event_id != first[0].provider_event_id


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"{}", b'{"event": "open"}', b"[1, 2]", b'[{"event": "open"}]', b"\xff\xfe"],
)
def test_malformed_bodies_are_malformed_payloads(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        sendgrid.normalize(body)
