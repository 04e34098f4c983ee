"""Mailgun: HMAC-SHA256 over timestamp + token, and the published event payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowmail.webhooks import Headers, MalformedPayload, VerificationError, WebhookRequest, mailgun

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "mailgun"
KEY = "key-5e1f7a0b3c2d4e6f8a9b0c1d2e3f4a5b"
CONFIG = mailgun.Config(KEY)
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
TOKEN = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def sign(document: dict[str, Any], key: str = KEY, at: datetime = NOW, token: str = TOKEN) -> bytes:
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    signature = {"timestamp": timestamp, "token": token, "signature": digest}
    return json.dumps({**document, "signature": signature}).encode()


def request(body: bytes) -> WebhookRequest:
    return WebhookRequest("POST", "/v1/webhooks/mailgun", Headers(), body, NOW)


# --- verify ---------------------------------------------------------------------------


def test_a_signed_sample_verifies_and_returns_its_token_for_replay_checks() -> None:
    body = sign(sample("delivered.json"))
    assert mailgun.verify(request(body), CONFIG, NOW) == TOKEN


def test_the_signature_from_another_key_is_refused() -> None:
    body = sign(sample("delivered.json"), key="key-of-someone-else")
    with pytest.raises(VerificationError):
        mailgun.verify(request(body), CONFIG, NOW)


def test_the_samples_own_signature_blocks_are_refused() -> None:
    for name in ("delivered.json", "opened.json", "complained.json", "permanent_fail.json"):
        body = (FIXTURES / name).read_bytes()
        with pytest.raises(VerificationError):
            mailgun.verify(request(body), CONFIG, NOW)


def test_an_altered_token_is_refused() -> None:
    body = sign(sample("delivered.json")).replace(TOKEN.encode(), b"b" + TOKEN[1:].encode())
    with pytest.raises(VerificationError):
        mailgun.verify(request(body), CONFIG, NOW)


@pytest.mark.parametrize(
    "offset", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)]
)
def test_stale_and_future_timestamps_are_refused(offset: timedelta) -> None:
    body = sign(sample("delivered.json"), at=NOW + offset)
    with pytest.raises(VerificationError):
        mailgun.verify(request(body), CONFIG, NOW)
    assert mailgun.verify(request(sign(sample("delivered.json"), at=NOW + offset / 2)), CONFIG, NOW)


def test_uppercase_hex_signatures_compare_equal() -> None:
    document = json.loads(sign(sample("opened.json")))
    document["signature"]["signature"] = document["signature"]["signature"].upper()
    assert mailgun.verify(request(json.dumps(document).encode()), CONFIG, NOW) == TOKEN


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("signature"),
        lambda d: d.update(signature="abc"),
        lambda d: d["signature"].pop("signature"),
        lambda d: d["signature"].pop("token"),
        lambda d: d["signature"].pop("timestamp"),
        lambda d: d["signature"].update(timestamp="soon"),
        lambda d: d["signature"].update(signature=None),
        lambda d: d["signature"].update(signature="ü" * 64),
        lambda d: d["signature"].update(token=""),
    ],
)
def test_missing_or_malformed_signatures_are_verification_errors(mutate: Any) -> None:
    document = json.loads(sign(sample("delivered.json")))
    mutate(document)
    with pytest.raises(VerificationError):
        mailgun.verify(request(json.dumps(document).encode()), CONFIG, NOW)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"text"', b"\xff"])
def test_bodies_that_are_not_objects_are_verification_errors(body: bytes) -> None:
    with pytest.raises(VerificationError):
        mailgun.verify(request(body), CONFIG, NOW)


def test_an_empty_signing_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        mailgun.Config("")


# --- normalize ------------------------------------------------------------------------


def one(name: str) -> Any:
    (event,) = mailgun.normalize((FIXTURES / name).read_bytes())
    return event


def test_the_delivered_sample() -> None:
    event = one("delivered.json")
    assert event.kind == "delivered"
    assert event.recipient == "alice@example.com"
    assert event.at == datetime.fromtimestamp(1521472262.908181, UTC)
    assert event.provider_event_id == "CPgfbmQMTCKtHW6uIWtuVe@1521472262.908181"
    assert event.rfc_message_id == (
        "20130503182626.18666.16540@sandbox22aee81b13674403a5335202df94f7e7.mailgun.org"
    )
    assert event.message_id is None  # the sample's user variables are not ours
    assert event.detail["user-variables"] == {
        "my_var_1": "Mailgun Variable #1",
        "my-var-2": "awesome",
    }


def test_the_engagement_samples() -> None:
    opened, clicked, unsubscribed = (
        one("opened.json"),
        one("clicked.json"),
        one("unsubscribed.json"),
    )
    assert (opened.kind, clicked.kind, unsubscribed.kind) == ("opened", "clicked", "unsubscribed")
    assert opened.user_agent is not None and "Chrome/26.0.1410.43" in opened.user_agent
    assert clicked.url is None  # Mailgun's clicked sample carries no url
    # Mailgun's samples share one placeholder id and timestamp, so their event ids match too.
    assert opened.provider_event_id == clicked.provider_event_id


def test_the_complained_sample() -> None:
    event = one("complained.json")
    assert (event.kind, event.recipient) == ("complained", "alice@example.com")
    assert event.provider_event_id == "-Agny091SquKnsrW2NEKUA@1521233123.501324"


def test_a_permanent_failure_for_a_suppressed_address_is_hard() -> None:
    event = one("permanent_fail.json")
    assert (event.kind, event.bounce_type) == ("bounced", "hard")
    assert event.reason == "Not delivering to previously bounced address"


def test_a_real_permanent_bounce_is_hard_by_its_enhanced_code() -> None:
    event = one("failed_bounce.json")
    assert (event.kind, event.bounce_type, event.recipient) == (
        "bounced",
        "hard",
        "invalid@example.com",
    )
    assert event.reason is not None and event.reason.startswith("5.1.1 The email account")
    assert event.provider_event_id.startswith("mailgun:sha256:")  # that sample has no id


def test_a_temporary_failure_is_deferred() -> None:
    event = one("failed_temporary.json")
    assert (event.kind, event.bounce_type) == ("deferred", None)
    assert event.reason == "No MX for nomx.example.com"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"code": 550, "enhanced-code": "5.1.1", "message": "no such user"}, "hard"),
        ({"code": 550, "enhanced-code": "5.7.1", "message": "spam"}, "soft"),
        (
            {
                "code": 552,
                "message": "5.2.2 The email account that you tried to reach is over quota",
            },
            "soft",
        ),
        ({"code": 550, "message": "mailbox unavailable"}, "hard"),
        ({"code": 421, "message": "gave up"}, "soft"),  # permanent only because Mailgun gave up
    ],
)
def test_permanent_failures_are_hard_or_soft_by_code(status: dict[str, Any], expected: str) -> None:
    document = sample("failed_bounce.json")
    document["event-data"]["delivery-status"] = status
    (event,) = mailgun.normalize(json.dumps(document).encode())
    assert event.bounce_type == expected


def test_our_user_variables_identify_the_message() -> None:
    document = sample("clicked.json")
    document["event-data"]["user-variables"] = {
        "flowmail_message": "msg-0001",
        "flowmail_workflow": "welcome",
        "flowmail_step": "send_welcome",
    }
    document["event-data"]["url"] = "https://flowmail.example/docs"
    (event,) = mailgun.normalize(json.dumps(document).encode())
    assert (event.message_id, event.workflow_id, event.step_id) == (
        "msg-0001",
        "welcome",
        "send_welcome",
    )
    assert event.url == "https://flowmail.example/docs"


def test_normalize_is_deterministic_and_skips_what_it_has_no_kind_for() -> None:
    body = (FIXTURES / "failed_bounce.json").read_bytes()
    assert mailgun.normalize(body) == mailgun.normalize(body)
    document = sample("delivered.json")
    document["event-data"]["event"] = "accepted"
    assert mailgun.normalize(json.dumps(document).encode()) == []
    document["event-data"]["event"] = "rejected"
    (rejected,) = mailgun.normalize(json.dumps(document).encode())
    assert (rejected.kind, rejected.bounce_type) == ("bounced", "soft")


@pytest.mark.parametrize(
    "body", [b"", b"[]", b"{}", b'{"event-data": []}', b'{"event-data": {"event": "opened"}}']
)
def test_malformed_bodies_are_malformed_payloads(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        mailgun.normalize(body)
