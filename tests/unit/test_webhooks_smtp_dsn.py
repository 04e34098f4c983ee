"""Plain SMTP: RFC 3464 delivery status notifications and RFC 5965 feedback reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowmail.webhooks import Headers, MalformedPayload, VerificationError, WebhookRequest, smtp_dsn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "smtp_dsn"
SECRET = "dsn-forwarder-secret-0123456789"
CONFIG = smtp_dsn.Config(SECRET)
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
EDT = timezone(timedelta(hours=-4))


def report(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(headers: dict[str, str], query: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(
        "POST",
        "/v1/webhooks/smtp-dsn",
        Headers(headers),
        report("rfc3464_simple.eml"),
        NOW,
        query=query or {},
    )


# --- verify ---------------------------------------------------------------------------


def test_the_secret_in_the_header_or_the_url_verifies() -> None:
    assert smtp_dsn.verify(request({"X-Flowmail-Webhook-Secret": SECRET}), CONFIG, NOW) is None
    assert smtp_dsn.verify(request({"x-flowmail-webhook-secret": SECRET}), CONFIG, NOW) is None
    assert smtp_dsn.verify(request({}, {"token": SECRET}), CONFIG, NOW) is None


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {}),
        ({"X-Flowmail-Webhook-Secret": ""}, {}),
        ({"X-Flowmail-Webhook-Secret": SECRET[:-1]}, {}),
        ({"X-Flowmail-Webhook-Secret": SECRET + "x"}, {}),
        ({"X-Flowmail-Webhook-Secret": "ünïcode"}, {}),
        ({}, {"token": "guess"}),
        ({"X-Flowmail-Webhook-Secret": "wrong"}, {"token": SECRET}),  # the header wins
        ({"Authorization": SECRET}, {}),
    ],
)
def test_missing_or_wrong_secrets_are_refused(
    headers: dict[str, str], query: dict[str, str]
) -> None:
    with pytest.raises(VerificationError):
        smtp_dsn.verify(request(headers, query), CONFIG, NOW)


def test_short_secrets_are_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        smtp_dsn.Config("short")


# --- delivery status notifications ----------------------------------------------------


def test_the_rfc3464_simple_dsn_is_a_soft_bounce() -> None:
    (event,) = smtp_dsn.normalize(report("rfc3464_simple.eml"))
    # Action: failed, but Status 4.0.0: the MTA gave up on a temporary failure.
    assert (event.kind, event.bounce_type) == ("bounced", "soft")
    assert event.recipient == "louisl@larry.slip.umd.edu"
    assert event.reason == "426 connection timed out"
    assert event.at == datetime(1994, 7, 7, 17, 15, 49, tzinfo=EDT)
    assert (
        event.provider_event_id
        == "199407072116.RAA14128@CS.UTK.EDU:failed:louisl@larry.slip.umd.edu"
    )
    assert event.message_id is None  # "[original message goes here]"


def test_the_rfc3464_multi_recipient_dsn() -> None:
    events = smtp_dsn.normalize(report("rfc3464_multi.eml"))
    assert [(e.recipient, e.kind, e.bounce_type) for e in events] == [
        ("arathib@vnet.ibm.com", "bounced", "hard"),
        ("johnh@hpnjld.njd.hp.com", "deferred", None),
        ("wsnell@sdcc13.ucsd.edu", "bounced", "hard"),
    ]
    assert events[0].reason == "550 'arathib@vnet.IBM.COM' is not a registered gateway user"
    assert events[1].at == datetime(1994, 7, 8, 9, 21, 47, tzinfo=EDT)  # the report's Date
    assert len({e.provider_event_id for e in events}) == 3
    assert events[0].provider_event_id.startswith(
        "smtp-dsn:sha256:"
    )  # the report has no Message-ID


def test_our_message_is_found_in_the_returned_headers() -> None:
    (event,) = smtp_dsn.normalize(report("dsn_flowmail_hard.eml"))
    assert (event.kind, event.bounce_type, event.recipient) == (
        "bounced",
        "hard",
        "ada@example.com",
    )
    assert event.message_id == "msg-0001"
    assert event.rfc_message_id == "msg-0001.welcome.1@flowmail.example"
    assert event.reason == "550 5.1.1 <ada@example.com>: Recipient address rejected: User unknown"
    assert event.at == datetime(2025, 9, 1, 9, 5, 2, tzinfo=UTC)  # the report's Date
    assert event.detail["per_recipient"]["status"] == "5.1.1"


def test_a_policy_rejection_is_soft_and_a_delay_is_deferred() -> None:
    rejected, delayed = smtp_dsn.normalize(report("dsn_flowmail_policy.eml"))
    assert (rejected.kind, rejected.bounce_type, rejected.recipient) == (
        "bounced",
        "soft",
        "grace@example.org",
    )
    assert rejected.message_id == "msg-0002"  # from a message/rfc822 third part
    assert rejected.rfc_message_id == "msg-0002.digest.1@flowmail.example"
    assert (delayed.kind, delayed.recipient) == ("deferred", "linus@example.org")


def test_normalize_is_deterministic() -> None:
    for name in (
        "rfc3464_simple.eml",
        "rfc3464_multi.eml",
        "dsn_flowmail_hard.eml",
        "arf_flowmail.eml",
    ):
        assert smtp_dsn.normalize(report(name)) == smtp_dsn.normalize(report(name))


def test_crlf_line_endings_parse_the_same() -> None:
    lf = report("dsn_flowmail_hard.eml")
    crlf = lf.replace(b"\n", b"\r\n")
    assert [(e.kind, e.bounce_type, e.message_id) for e in smtp_dsn.normalize(crlf)] == [
        (e.kind, e.bounce_type, e.message_id) for e in smtp_dsn.normalize(lf)
    ]


def test_success_notifications_are_deliveries_and_relays_are_skipped() -> None:
    text = report("dsn_flowmail_hard.eml").decode()
    delivered = text.replace("Action: failed", "Action: delivered").replace(
        "Status: 5.1.1", "Status: 2.0.0"
    )
    (event,) = smtp_dsn.normalize(delivered.encode())
    assert (event.kind, event.bounce_type) == ("delivered", None)
    assert smtp_dsn.normalize(text.replace("Action: failed", "Action: relayed").encode()) == []


# --- feedback reports -----------------------------------------------------------------


def test_the_rfc5965_example_is_a_complaint() -> None:
    (event,) = smtp_dsn.normalize(report("rfc5965_example2.eml"))
    assert (event.kind, event.recipient) == ("complained", "user@example.com")
    assert event.user_agent == "SomeGenerator/1.0"
    assert event.rfc_message_id == "8787KJKJ3K4J3K4J3K4J3.mail@example.net"
    assert event.at == datetime(2005, 3, 8, 14, 0, tzinfo=EDT)
    assert event.detail["feedback_report"]["source-ip"] == "192.0.2.1"


def test_a_feedback_loop_report_about_our_message() -> None:
    (event,) = smtp_dsn.normalize(report("arf_flowmail.eml"))
    assert (event.kind, event.recipient, event.message_id) == (
        "complained",
        "ada@example.com",
        "msg-0001",
    )
    assert event.provider_event_id == "fbl-20250901-0001@isp.example:arf:ada@example.com"


def test_a_redacted_recipient_still_identifies_our_message() -> None:
    text = report("arf_flowmail.eml").decode().replace("Original-Rcpt-To: <ada@example.com>\n", "")
    (event,) = smtp_dsn.normalize(text.encode())
    assert (event.recipient, event.message_id) == (None, "msg-0001")


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_reports_that_are_not_complaints_are_skipped(feedback_type: str) -> None:
    text = (
        report("arf_flowmail.eml")
        .decode()
        .replace("Feedback-Type: abuse", f"Feedback-Type: {feedback_type}")
    )
    assert smtp_dsn.normalize(text.encode()) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"From: someone@example.com\n\nHello, I am not a report.\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n"
        b"Content-Type: text/plain\n\nno status part\n--x--\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n"
        b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; a.example\n\n"
        b"Final-Recipient: rfc822; b@example.com\nAction: failed\nStatus: 5.1.1\n--x--\n",
    ],
)
def test_what_is_not_a_usable_report_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        smtp_dsn.normalize(body)  # the last one has no date anywhere
