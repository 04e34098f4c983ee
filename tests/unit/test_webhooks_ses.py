"""Amazon SES over SNS: SNS message signatures (versions 1 and 2) and the SES event shapes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from flowmail.webhooks import Headers, MalformedPayload, VerificationError, WebhookRequest, ses

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks" / "ses"
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:flowmail-ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"


def certificate(key: Any, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FORGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = certificate(KEY, datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


class Fetcher:
    """A local stand-in for the HTTPS certificate fetch: records every URL it is asked for."""

    def __init__(self, certs: dict[str, bytes] | None = None) -> None:
        self.certs = {CERT_URL: PEM} if certs is None else certs
        self.asked: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        return self.certs[url]


def canonical(envelope: dict[str, Any]) -> bytes:
    """The string to sign, written out here from the AWS documentation on its own."""
    if envelope["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{envelope[n]}\n" for n in names if n in envelope).encode()


def sign(envelope: dict[str, Any], key: Any = KEY) -> dict[str, Any]:
    algorithm = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()
    signature = key.sign(canonical(envelope), padding.PKCS1v15(), algorithm)
    return {**envelope, "Signature": base64.b64encode(signature).decode()}


def envelope(
    message: dict[str, Any] | str,
    *,
    version: str = "1",
    at: datetime = NOW,
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    key: Any = KEY,
) -> dict[str, Any]:
    unsigned = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }
    return sign(unsigned, key)


def request(document: dict[str, Any] | bytes) -> WebhookRequest:
    body = document if isinstance(document, bytes) else json.dumps(document, indent=2).encode()
    return WebhookRequest("POST", "/v1/webhooks/ses", Headers(), body, NOW)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def config(fetcher: Callable[[str], bytes] | None = None, topic: str = TOPIC) -> ses.Config:
    return ses.Config(topic_arn=topic, certificate=fetcher or Fetcher())


# --- verify ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_verify(version: str) -> None:
    document = envelope(sample("event_bounce.json"), version=version)
    assert ses.verify(request(document), config(), NOW) == document["MessageId"]


def test_a_subject_is_part_of_the_signed_string() -> None:
    unsigned = {k: v for k, v in envelope("Hello world!").items() if k != "Signature"}
    document = sign({**unsigned, "Subject": "My First Message"})
    assert ses.verify(request(document), config(), NOW)
    with pytest.raises(VerificationError):
        ses.verify(request({**document, "Subject": "My Second Message"}), config(), NOW)


def test_a_signature_from_another_key_is_refused() -> None:
    with pytest.raises(VerificationError):
        ses.verify(request(envelope("{}", key=FORGER)), config(), NOW)


def test_a_version_1_signature_presented_as_version_2_is_refused() -> None:
    document = envelope("{}", version="1")
    with pytest.raises(VerificationError):
        ses.verify(request({**document, "SignatureVersion": "2"}), config(), NOW)


def test_one_altered_character_in_the_message_is_refused() -> None:
    document = envelope(sample("event_delivery.json"))
    body = json.dumps(document).encode()
    altered = body.replace(b"recipient@example.com", b"recipient@example.org", 1)
    assert altered != body
    with pytest.raises(VerificationError):
        ses.verify(request(altered), config(), NOW)


@pytest.mark.parametrize("offset", [timedelta(hours=1, seconds=1), -timedelta(hours=1, seconds=1)])
def test_stale_and_future_timestamps_are_refused(offset: timedelta) -> None:
    with pytest.raises(VerificationError):
        ses.verify(request(envelope("{}", at=NOW + offset)), config(), NOW)
    assert ses.verify(request(envelope("{}", at=NOW + offset / 2)), config(), NOW)


def test_a_shorter_window_can_be_configured() -> None:
    short = ses.Config(TOPIC, Fetcher(), tolerance=timedelta(minutes=5))
    with pytest.raises(VerificationError):
        ses.verify(request(envelope("{}", at=NOW - timedelta(minutes=6))), short, NOW)


def test_another_topic_is_refused_before_any_certificate_is_fetched() -> None:
    fetcher = Fetcher()
    document = envelope("{}", topic="arn:aws:sns:us-east-1:123456789012:someone-elses-topic")
    with pytest.raises(VerificationError):
        ses.verify(request(document), config(fetcher), NOW)
    assert fetcher.asked == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/cert.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService.pem",
        "https://sns.us-east-1.amazonaws.com./SimpleNotificationService.pem",
        "https://SNS.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "https://sns.amazonaws.com/SimpleNotificationService.pem",
        "https://sqs.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem?x=.exe",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService.pem",
        "https://[::1]/SimpleNotificationService.pem",
        "//sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "",
    ],
)
def test_certificate_urls_off_sns_are_refused_without_fetching(url: str) -> None:
    fetcher = Fetcher({url: PEM})
    with pytest.raises(VerificationError):
        ses.verify(request(envelope("{}", cert_url=url)), config(fetcher), NOW)
    assert fetcher.asked == []


def test_other_regions_are_sns_hosts_too() -> None:
    assert ses.is_sns_url("https://sns.eu-west-2.amazonaws.com/x.pem", certificate=True)
    assert ses.is_sns_url("https://sns.us-gov-west-1.amazonaws.com/x.pem", certificate=True)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("Signature"),
        lambda d: d.update(Signature=""),
        lambda d: d.update(Signature="%%% not base64 %%%"),
        lambda d: d.update(Signature=12),
        lambda d: d.pop("SignatureVersion"),
        lambda d: d.update(SignatureVersion="3"),
        lambda d: d.pop("SigningCertURL"),
        lambda d: d.pop("Timestamp"),
        lambda d: d.update(Timestamp="last tuesday"),
        lambda d: d.pop("MessageId"),
        lambda d: d.update(Message={"not": "a string"}),
        lambda d: d.update(Type="Announcement"),
        lambda d: d.pop("TopicArn"),
    ],
)
def test_missing_or_malformed_fields_are_verification_errors(mutate: Any) -> None:
    document = envelope("{}")
    mutate(document)
    with pytest.raises(VerificationError):
        ses.verify(request(document), config(), NOW)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"\xff"])
def test_bodies_that_are_not_sns_messages_are_verification_errors(body: bytes) -> None:
    with pytest.raises(VerificationError):
        ses.verify(request(body), config(), NOW)


def test_raw_message_delivery_without_an_envelope_is_refused() -> None:
    with pytest.raises(VerificationError):
        ses.verify(request(sample("event_bounce.json")), config(), NOW)


def test_the_sns_documentation_example_is_refused_for_its_placeholder_signature() -> None:
    document = sample("sns_notification.json")
    fetcher = Fetcher({document["SigningCertURL"]: PEM})
    at = datetime(2012, 5, 2, 0, 54, 6, tzinfo=UTC)
    old_cert = certificate(KEY, datetime(2012, 1, 1, tzinfo=UTC), datetime(2013, 1, 1, tzinfo=UTC))
    fetcher.certs[document["SigningCertURL"]] = old_cert
    with pytest.raises(VerificationError):
        ses.verify(request(document), config(fetcher, topic=document["TopicArn"]), at)
    assert fetcher.asked == [document["SigningCertURL"]]


def test_certificate_problems_are_verification_errors() -> None:
    def failing(url: str) -> bytes:
        raise OSError("connection refused")

    expired = certificate(KEY, datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    not_rsa = certificate(
        ec_key, datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    )
    for fetcher in (
        failing,
        Fetcher({CERT_URL: expired}),
        Fetcher({CERT_URL: not_rsa}),
        Fetcher({CERT_URL: b"garbage"}),
        Fetcher({}),
    ):
        with pytest.raises(VerificationError):
            ses.verify(request(envelope("{}")), config(fetcher), NOW)


def test_der_certificates_are_accepted() -> None:
    der = x509.load_pem_x509_certificate(PEM).public_bytes(serialization.Encoding.DER)
    assert ses.verify(request(envelope("{}")), config(Fetcher({CERT_URL: der})), NOW)


def test_subscription_confirmations_verify_and_give_the_url_to_visit() -> None:
    document = sample("sns_subscription_confirmation.json")
    unsigned = {k: v for k, v in document.items() if k != "Signature"}
    unsigned |= {
        "TopicArn": TOPIC,
        "SigningCertURL": CERT_URL,
        "Timestamp": "2025-09-01T08:59:00.000Z",
    }
    signed = sign(unsigned)
    assert ses.verify(request(signed), config(), NOW) == "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"
    body = json.dumps(signed).encode()
    assert ses.normalize(body) == []
    confirmation = ses.subscription_confirmation(body)
    assert confirmation is not None
    assert confirmation.subscribe_url.startswith(
        "https://sns.us-west-2.amazonaws.com/?Action=Confirm"
    )
    assert confirmation.token == document["Token"]
    with pytest.raises(VerificationError):
        ses.verify(request({**signed, "Token": "0" + document["Token"][1:]}), config(), NOW)


def test_confirmations_pointing_off_sns_are_refused() -> None:
    document = sample("sns_subscription_confirmation.json") | {
        "SubscribeURL": "https://evil.example/"
    }
    with pytest.raises(MalformedPayload):
        ses.subscription_confirmation(json.dumps(document).encode())
    unsubscribed = (FIXTURES / "sns_unsubscribe_confirmation.json").read_bytes()
    assert ses.normalize(unsubscribed) == []
    assert ses.subscription_confirmation((FIXTURES / "sns_notification.json").read_bytes()) is None


def test_the_certificate_cache_fetches_once_and_only_from_sns() -> None:
    fetcher = Fetcher()
    cache = ses.CertificateCache(fetcher, max_entries=1)
    assert cache(CERT_URL) == PEM and cache(CERT_URL) == PEM
    assert fetcher.asked == [CERT_URL]
    with pytest.raises(ValueError):
        cache("https://evil.example/cert.pem")
    other = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
    fetcher.certs[other] = PEM
    cache(other)
    cache(CERT_URL)  # evicted by the bound, fetched again
    assert fetcher.asked == [CERT_URL, other, CERT_URL]
    assert ses.verify(request(envelope("{}")), config(cache), NOW)


def test_a_topic_arn_is_required() -> None:
    with pytest.raises(ValueError):
        ses.Config("my-topic", Fetcher())


# --- normalize ------------------------------------------------------------------------


def events(message: dict[str, Any] | str, message_id: str = "sns-1") -> list[Any]:
    return ses.normalize(json.dumps(envelope(message, message_id=message_id)).encode())


def test_the_event_publishing_examples() -> None:
    (bounce,) = events(sample("event_bounce.json"))
    assert (bounce.kind, bounce.bounce_type, bounce.recipient) == (
        "bounced",
        "hard",
        "recipient@example.com",
    )
    assert bounce.reason == "smtp; 550 5.1.1 user unknown"
    assert bounce.at == datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=UTC)
    assert (
        bounce.provider_message_id == "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
    )
    (complaint,) = events(sample("event_complaint.json"))
    assert complaint.kind == "complained"
    assert complaint.user_agent is not None and complaint.user_agent.startswith("Mozilla/5.0")
    (delivery,) = events(sample("event_delivery.json"))
    assert (delivery.kind, delivery.reason) == ("delivered", "250 2.6.0 Message received")
    (opened,) = events(sample("event_open.json"))
    assert (opened.kind, opened.recipient) == ("opened", "recipient@example.com")
    (clicked,) = events(sample("event_click.json"))
    assert (
        clicked.url == "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"
    )
    (rejected,) = events(sample("event_reject.json"))
    assert (rejected.kind, rejected.bounce_type, rejected.reason) == (
        "bounced",
        "soft",
        "Bad content",
    )
    (delayed,) = events(sample("event_delivery_delay.json"))
    assert (delayed.kind, delayed.reason) == (
        "deferred",
        "smtp; 421 4.4.1 Unable to connect to remote host",
    )
    (unsubscribed,) = events(sample("event_subscription.json"))
    assert (unsubscribed.kind, unsubscribed.recipient) == ("unsubscribed", "recipient@example.com")
    assert events(sample("event_send.json")) == []
    assert events(sample("event_rendering_failure.json")) == []


def test_the_classic_notification_examples() -> None:
    (bounce,) = events(sample("notification_bounce_dsn.json"))
    assert (bounce.kind, bounce.bounce_type, bounce.recipient) == (
        "bounced",
        "hard",
        "jane@example.com",
    )
    assert bounce.rfc_message_id == "custom-message-ID"
    no_dsn = events(sample("notification_bounce_no_dsn.json"))
    assert [e.recipient for e in no_dsn] == ["jane@example.com", "richard@example.com"]
    assert len({e.provider_event_id for e in no_dsn}) == 2
    (complaint,) = events(sample("notification_complaint_feedback.json"))
    assert (complaint.kind, complaint.recipient) == ("complained", "richard@example.com")
    assert complaint.user_agent == "AnyCompany Feedback Loop (V0.01)"
    (delivery,) = events(sample("notification_delivery.json"))
    assert (delivery.kind, delivery.recipient) == ("delivered", "jane@example.com")


def test_our_tags_and_header_identify_the_message() -> None:
    document = sample("event_delivery.json")
    document["mail"]["tags"] |= {
        "flowmail_message": ["msg-0001"],
        "flowmail_workflow": ["welcome"],
        "flowmail_step": ["send_welcome"],
    }
    (event,) = events(document)
    assert (event.message_id, event.workflow_id, event.step_id) == (
        "msg-0001",
        "welcome",
        "send_welcome",
    )
    document = sample("notification_delivery.json")
    document["mail"]["headers"].append({"name": "X-Flowmail-Message", "value": "msg-0002"})
    (event,) = events(document)
    assert event.message_id == "msg-0002"


@pytest.mark.parametrize(
    ("bounce_type", "status", "expected"),
    [
        ("Permanent", "5.1.1", "hard"),
        ("Transient", "5.1.1", "soft"),
        ("Undetermined", "5.1.1", "hard"),
        ("Undetermined", "4.4.7", "soft"),
        ("Undetermined", None, "soft"),
    ],
)
def test_bounce_types(bounce_type: str, status: str | None, expected: str) -> None:
    document = sample("event_bounce.json")
    document["bounce"]["bounceType"] = bounce_type
    entry = document["bounce"]["bouncedRecipients"][0]
    entry["status"] = status
    entry["diagnosticCode"] = None
    (event,) = events(document)
    assert event.bounce_type == expected


def test_a_complaint_on_the_suppression_list_is_a_hard_bounce_not_a_complaint() -> None:
    document = sample("event_complaint.json")
    document["complaint"]["complaintSubType"] = "OnAccountSuppressionList"
    (event,) = events(document)
    assert (event.kind, event.bounce_type) == ("bounced", "hard")


def test_ids_are_deterministic_and_the_same_across_sns_deliveries() -> None:
    document = sample("event_click.json")
    first, again = events(document, "sns-1"), events(document, "sns-2")
    assert first == again  # another SNS message (another topic, a retry): the same event
    kinds = {}
    for name in (
        "event_bounce.json",
        "event_complaint.json",
        "event_delivery.json",
        "event_open.json",
        "event_click.json",
        "event_delivery_delay.json",
    ):
        (event,) = events(sample(name))
        kinds[event.provider_event_id] = event.kind
    assert len(kinds) == 6


def test_malformed_messages_are_malformed_payloads() -> None:
    with pytest.raises(MalformedPayload):
        events("not json")
    with pytest.raises(MalformedPayload):
        events({"eventType": "Delivery", "mail": {}, "delivery": {"recipients": ["a@b.c"]}})
    with pytest.raises(MalformedPayload):
        ses.normalize(b'{"Type": "Announcement"}')
    with pytest.raises(MalformedPayload):
        ses.normalize(b'{"Type": "Notification", "Message": 42}')
    assert events({"eventType": "Something new"}) == []
