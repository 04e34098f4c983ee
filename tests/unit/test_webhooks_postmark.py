"""Postmark: HTTP Basic credentials and the published webhook examples."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowmail.webhooks import Headers, MalformedPayload, VerificationError, WebhookRequest, postmark

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "postmark"
CONFIG = postmark.Config("postmark-hooks", "s3cret:with-colon")
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(headers: dict[str, str], body: bytes = b"{}") -> WebhookRequest:
    return WebhookRequest("POST", "/v1/webhooks/postmark", Headers(headers), body, NOW)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def one(document: dict[str, Any]) -> Any:
    (event,) = postmark.normalize(json.dumps(document).encode())
    return event


# --- verify ---------------------------------------------------------------------------


def test_the_configured_credentials_verify() -> None:
    headers = {"Authorization": basic("postmark-hooks", "s3cret:with-colon")}
    assert postmark.verify(request(headers), CONFIG, NOW) is None
    assert (
        postmark.verify(request({"authorization": headers["Authorization"]}), CONFIG, NOW) is None
    )


@pytest.mark.parametrize(
    "value",
    [
        basic("postmark-hooks", "wrong"),
        basic("someone", "s3cret:with-colon"),
        basic("postmark-hooks", "s3cret:with-colon "),
        basic("", ""),
        "Basic " + base64.b64encode(b"postmark-hooks").decode(),  # no colon at all
        "Bearer " + base64.b64encode(b"postmark-hooks:s3cret:with-colon").decode(),
        "Basic",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode("postmark-hooks:sëcret".encode()).decode(),
        "",
    ],
)
def test_wrong_or_malformed_credentials_are_refused(value: str) -> None:
    with pytest.raises(VerificationError):
        postmark.verify(request({"Authorization": value}), CONFIG, NOW)


def test_a_missing_authorization_header_is_refused() -> None:
    with pytest.raises(VerificationError):
        postmark.verify(request({}), CONFIG, NOW)


def test_empty_credentials_are_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        postmark.Config("", "x")


# --- normalize ------------------------------------------------------------------------


def test_the_bounce_example_is_a_hard_bounce() -> None:
    event = one(sample("bounce.json"))
    assert (event.kind, event.bounce_type) == ("bounced", "hard")
    assert event.recipient == "john@example.com"
    assert event.provider_event_id == "Bounce:4323372036854775807"
    assert event.provider_message_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert event.at == datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)
    assert event.reason == "Test bounce details"
    assert event.message_id is None and event.detail["Metadata"] == {
        "a_key": "a_value",
        "b_key": "b_value",
    }


def test_the_delivery_open_and_click_examples() -> None:
    delivered, opened, clicked = (
        one(sample(name)) for name in ("delivery.json", "open.json", "click.json")
    )
    assert (delivered.kind, delivered.recipient) == ("delivered", "john@example.com")
    assert delivered.provider_event_id == (
        "Delivery:883953f4-6105-42a2-a16a-77a8eac79483:john@example.com:2019-11-05T16:33:54.9070259Z"
    )
    assert opened.kind == "opened"
    assert opened.user_agent is not None and opened.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert (clicked.kind, clicked.url) == ("clicked", "https://example.com")
    assert clicked.at == datetime(2017, 10, 25, 15, 21, 11, 906561, tzinfo=UTC)
    assert clicked.provider_event_id.endswith(":https://example.com")


def test_the_spam_complaint_example() -> None:
    event = one(sample("spam_complaint.json"))
    assert (event.kind, event.recipient, event.provider_event_id) == (
        "complained",
        "john@example.com",
        "SpamComplaint:42",
    )


def test_the_subscription_change_example_is_left_to_the_bounce_webhook() -> None:
    # Postmark's example suppresses the address for a hard bounce, which its Bounce webhook
    # reports itself; counting it twice would double the bounce.
    assert postmark.normalize((FIXTURES / "subscription_change.json").read_bytes()) == []
    document = sample("subscription_change.json")
    document["SuppressionReason"] = "ManualSuppression"
    event = one(document)
    assert (event.kind, event.recipient) == ("unsubscribed", "bounced-address@wildbit.com")
    document["SuppressSending"] = False
    assert postmark.normalize(json.dumps(document).encode()) == []


@pytest.mark.parametrize(
    ("bounce_type", "details", "expected"),
    [
        ("HardBounce", "", ("bounced", "hard")),
        ("BadEmailAddress", "", ("bounced", "hard")),
        ("SoftBounce", "", ("bounced", "soft")),
        ("Transient", "", ("bounced", "soft")),
        ("DnsError", "", ("bounced", "soft")),
        ("Blocked", "550 5.7.1 blocked", ("bounced", "soft")),
        ("SpamNotification", "", ("bounced", "soft")),
        ("Unknown", "smtp;550 5.1.1 The email account does not exist", ("bounced", "hard")),
        ("Unknown", "smtp;452 4.2.2 over quota", ("bounced", "soft")),
        ("Unknown", "", ("bounced", "soft")),
        ("Unsubscribe", "", ("unsubscribed", None)),
        ("SpamComplaint", "", ("complained", None)),
    ],
)
def test_bounce_types_map_to_hard_or_soft(
    bounce_type: str, details: str, expected: tuple[str, str | None]
) -> None:
    document = sample("bounce.json") | {"Type": bounce_type, "Details": details}
    event = one(document)
    assert (event.kind, event.bounce_type) == expected


@pytest.mark.parametrize(
    "bounce_type", ["AutoResponder", "Subscribe", "AddressChange", "OpenRelayTest"]
)
def test_bounce_records_that_are_not_failures_are_skipped(bounce_type: str) -> None:
    document = sample("bounce.json") | {"Type": bounce_type}
    assert postmark.normalize(json.dumps(document).encode()) == []


def test_our_metadata_identifies_the_message() -> None:
    metadata = {
        "flowmail_message": "msg-0001",
        "flowmail_workflow": "welcome",
        "flowmail_step": "s1",
    }
    event = one(sample("open.json") | {"Metadata": metadata})
    assert (event.message_id, event.workflow_id, event.step_id) == ("msg-0001", "welcome", "s1")


def test_ids_are_stable_across_calls() -> None:
    for name in ("bounce.json", "delivery.json", "open.json", "click.json", "spam_complaint.json"):
        body = (FIXTURES / name).read_bytes()
        assert postmark.normalize(body) == postmark.normalize(body)


def test_unknown_record_types_are_skipped_and_garbage_is_malformed() -> None:
    assert postmark.normalize(b'{"RecordType": "Inbound"}') == []
    for body in (b"", b"[]", b"nope", b'{"RecordType": "Delivery", "DeliveredAt": "yesterday"}'):
        with pytest.raises(MalformedPayload):
            postmark.normalize(body)
