"""Provider webhooks over HTTP: verification, deduplication, what an event changes, the
engine hearing of it, and complaint rates. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import T0, Api, running_api
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from flowmail.api.webhooks import use_fetcher
from flowmail.engine.state import IDENTIFY
from flowmail.runtime.service import apply_workflow
from flowmail.runtime.worker import Worker
from flowmail.store import schema as t
from flowmail.store.feedback import is_suppressed
from flowmail.store.records import InboundEvent
from flowmail.store.sql import SqlStore
from flowmail.webhooks import generic, sendgrid, smtp_dsn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"
WS = "default"

# --- keys and secrets, made here the way tests/unit/test_webhooks_*.py make them ------

SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_OTHER = ec.generate_private_key(ec.SECP256R1())
MG_KEY = "key-5e1f7a0b3c2d4e6f8a9b0c1d2e3f4a5b"
PM_USER, PM_PASSWORD = "flowmail-hooks", "s3cret-Passw0rd"
GENERIC_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
DSN_SECRET = "dsn-secret-0123456789abcdef"
TOPIC = "arn:aws:sns:us-east-1:123456789012:flowmail-ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SNS_FORGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _spki(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2026, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


SECRETS: dict[str, Any] = {
    "sendgrid_public_key": _spki(SG_KEY),
    "mailgun_signing_key": MG_KEY,
    "postmark_user": PM_USER,
    "postmark_password": PM_PASSWORD,
    "sns_topic_arn": TOPIC,
    "generic_webhook_secret": GENERIC_SECRET,
    "dsn_secret": DSN_SECRET,
}


class Fetcher:
    """The local stand-in for HTTPS to SNS: serves the certificate, records every URL."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        if url == CERT_URL:
            return _certificate(SNS_KEY)
        return b"<ConfirmSubscriptionResponse/>"


@dataclass
class Hooks:
    api: Api
    fetcher: Fetcher

    @property
    def store(self) -> SqlStore:
        return self.api.store

    def post(self, provider: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        return self.api.client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)


@pytest.fixture
def hooks(store: SqlStore) -> Iterator[Hooks]:
    with running_api(store, **SECRETS) as api:
        fetcher = Fetcher()
        use_fetcher(api.client.app, fetcher)  # type: ignore[arg-type]
        yield Hooks(api, fetcher)


# --- signing requests as each provider does --------------------------------------------


def sendgrid_request(
    events: list[dict[str, Any]], at: datetime = T0, key: ec.EllipticCurvePrivateKey = SG_KEY
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    stamp = str(int(at.timestamp()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        sendgrid.TIMESTAMP_HEADER: stamp,
    }
    return body, headers


def mailgun_request(
    event: dict[str, Any], at: datetime = T0, key: str = MG_KEY, token: str = "token-0001"
) -> tuple[bytes, dict[str, str]]:
    stamp = str(int(at.timestamp()))
    digest = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    document = {
        "signature": {"timestamp": stamp, "token": token, "signature": digest},
        "event-data": event,
    }
    return json.dumps(document).encode(), {"Content-Type": "application/json"}


def postmark_request(
    record: dict[str, Any], user: str = PM_USER, password: str = PM_PASSWORD
) -> tuple[bytes, dict[str, str]]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps(record).encode(), {"Authorization": f"Basic {credentials}"}


def _canonical(envelope: dict[str, Any]) -> bytes:
    if envelope["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{envelope[n]}\n" for n in names if n in envelope).encode()


def sns_request(
    message: dict[str, Any] | None,
    at: datetime = T0,
    key: rsa.RSAPrivateKey = SNS_KEY,
    message_id: str = "sns-0001",
    cert_url: str = CERT_URL,
    topic: str = TOPIC,
    kind: str = "Notification",
) -> tuple[bytes, dict[str, str]]:
    envelope: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": json.dumps(message) if message is not None else "You have chosen to ...",
        "Timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": "2",
        "SigningCertURL": cert_url,
    }
    if kind != "Notification":
        envelope["Token"] = "2336412f37fb687f5d51e6e2425c464de12884"
        envelope["SubscribeURL"] = (
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={topic}&Token=2336412f37fb687f5d51e6e2425c464de12884"
        )
    signature = key.sign(_canonical(envelope), padding.PKCS1v15(), hashes.SHA256())
    envelope["Signature"] = base64.b64encode(signature).decode()
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": kind}
    return json.dumps(envelope).encode(), headers


def generic_request(
    events: list[dict[str, Any]],
    at: datetime = T0,
    secret: str = GENERIC_SECRET,
    webhook_id: str = "msg_0001",
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    stamp = int(at.timestamp())
    return body, {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": generic.sign(secret, webhook_id, stamp, body),
    }


def dsn_request(raw: bytes, secret: str = DSN_SECRET) -> tuple[bytes, dict[str, str]]:
    return raw, {"Content-Type": "message/rfc822", smtp_dsn.Config(DSN_SECRET).header: secret}


# --- the database, read back ------------------------------------------------------------


def sent_message(
    store: SqlStore,
    key: str,
    *,
    workspace: str = WS,
    contact: str = "ada",
    workflow: str = "welcome",
    step: str = "hello",
    to: str = "ada@example.com",
    rfc: str | None = None,
    provider_id: str | None = None,
    sent_at: datetime = T0,
    topic: str = "marketing",
) -> None:
    """An outbox row as the sender leaves a sent message (and its contact)."""
    store.ingest(
        [InboundEvent(contact, "seen", sent_at, id=f"seen-{key}", workspace_id=workspace)], sent_at
    )
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.messages).values(
                workspace_id=workspace,
                id=key,
                run_id=f"run-{key}",
                contact_id=contact,
                workflow_id=workflow,
                version=1,
                step_id=step,
                to_address=to,
                template=None,
                subject="Hello",
                topic=topic,
                priority=0,
                on_capped="defer",
                status="sent",
                created_at=sent_at,
                send_after=sent_at,
                sent_at=sent_at,
                attempts=1,
                rfc_message_id=rfc or f"{key}@flowmail.example",
                provider="test",
                provider_id=provider_id,
            )
        )


def status(store: SqlStore, key: str, workspace: str = WS) -> str:
    m = t.messages
    with store.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(m.c.status).where(m.c.workspace_id == workspace, m.c.id == key)
            ).scalar_one()
        )


def delivery_events(store: SqlStore, key: str | None = None) -> list[dict[str, Any]]:
    e = t.message_events
    query = sa.select(e).where(e.c.provider_event_id.is_not(None)).order_by(e.c.seq)
    if key is not None:
        query = query.where(e.c.message_id == key)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def inbox(store: SqlStore, prefix: str = "email_") -> list[dict[str, Any]]:
    e = t.events
    query = sa.select(e).where(e.c.name.startswith(prefix)).order_by(e.c.seq)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def counts(store: SqlStore) -> tuple[int, int, int, int]:
    """(delivery events, inbox events, suppressions, consents): to see nothing changed."""
    with store.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for table in (t.message_events, t.events, t.suppressions, t.consents)
        )


# --- valid, forged, stale, replayed: every provider ------------------------------------


@dataclass(frozen=True)
class Case:
    """Requests for one provider about message ``m-1`` (to ada@example.com)."""

    provider: str
    valid: Callable[[], tuple[bytes, dict[str, str]]]
    forged: Callable[[], tuple[bytes, dict[str, str]]]
    stale: Callable[[], tuple[bytes, dict[str, str]]] | None  # None: no timestamp to go stale


def _sg_event(**extra: Any) -> dict[str, Any]:
    return {
        "email": "ada@example.com",
        "timestamp": int(T0.timestamp()),
        "event": "delivered",
        "sg_event_id": "sg-evt-1",
        "sg_message_id": "sg-1.filter",
        "flowmail_message": "m-1",
        **extra,
    }


def _mg_event() -> dict[str, Any]:
    return {
        "event": "delivered",
        "id": "mg-evt-1",
        "timestamp": T0.timestamp(),
        "recipient": "ada@example.com",
        "user-variables": {"flowmail_message": "m-1"},
        "message": {"headers": {"message-id": "m-1@flowmail.example"}},
    }


def _pm_record() -> dict[str, Any]:
    return {
        "RecordType": "Delivery",
        "MessageID": "pm-1",
        "Recipient": "ada@example.com",
        "DeliveredAt": "2025-09-01T09:00:00Z",
        "Metadata": {"flowmail_message": "m-1"},
    }


def _ses_event() -> dict[str, Any]:
    return {
        "eventType": "Delivery",
        "mail": {
            "timestamp": "2025-09-01T08:59:59.000Z",
            "messageId": "ses-1",
            "destination": ["ada@example.com"],
            "tags": {"flowmail_message": ["m-1"]},
        },
        "delivery": {"timestamp": "2025-09-01T09:00:00.000Z", "recipients": ["ada@example.com"]},
    }


def _generic_event() -> dict[str, Any]:
    return {
        "type": "delivered",
        "id": "gen-1",
        "message_id": "m-1",
        "email": "ada@example.com",
        "at": "2025-09-01T09:00:00Z",
    }


def _dsn() -> bytes:
    raw = (FIXTURES / "smtp_dsn" / "dsn_flowmail_hard.eml").read_bytes()
    return raw.replace(b"msg-0001", b"m-1")


STALE = T0 - timedelta(hours=2)
CASES = [
    Case(
        "sendgrid",
        lambda: sendgrid_request([_sg_event()]),
        lambda: sendgrid_request([_sg_event()], key=SG_OTHER),
        lambda: sendgrid_request([_sg_event()], at=STALE),
    ),
    Case(
        "mailgun",
        lambda: mailgun_request(_mg_event()),
        lambda: mailgun_request(_mg_event(), key="key-of-someone-else"),
        lambda: mailgun_request(_mg_event(), at=STALE),
    ),
    Case(
        "postmark",
        lambda: postmark_request(_pm_record()),
        lambda: postmark_request(_pm_record(), password="guessed"),
        None,
    ),
    Case(
        "ses",
        lambda: sns_request(_ses_event()),
        lambda: sns_request(_ses_event(), key=SNS_FORGER),
        lambda: sns_request(_ses_event(), at=T0 - timedelta(hours=3)),
    ),
    Case(
        "smtp-dsn",
        lambda: dsn_request(_dsn()),
        lambda: dsn_request(_dsn(), secret="not-the-secret-at-all"),
        None,
    ),
    Case(
        "generic",
        lambda: generic_request([_generic_event()]),
        lambda: generic_request([_generic_event()], secret="whsec_" + "A" * 44),
        lambda: generic_request([_generic_event()], at=STALE),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.provider for c in CASES])
def test_valid_forged_stale_and_replayed_requests(
    hooks: Hooks, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    sent_message(hooks.store, "m-1")
    before = counts(hooks.store)
    bad = [case.forged(), *([case.stale()] if case.stale else [])]
    bad.append((case.valid()[0], {}))  # unsigned: the valid body without its headers
    if case.provider in ("mailgun", "ses"):  # signed inside the body: strip the signature
        document = json.loads(case.valid()[0])
        document.pop("signature" if case.provider == "mailgun" else "Signature")
        bad[-1] = (json.dumps(document).encode(), case.valid()[1])
    with caplog.at_level(logging.WARNING, logger="flowmail.webhooks"):
        for body, headers in bad:
            refused = hooks.post(case.provider, body, headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"] == "unauthorized"
    assert counts(hooks.store) == before  # nothing applied
    assert status(hooks.store, "m-1") == "sent"
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == len(bad)
    assert all(case.provider in r.getMessage() for r in refusals)

    body, headers = case.valid()
    first = hooks.post(case.provider, body, headers)
    assert first.status_code == 200, first.text
    assert first.json()["applied"] == 1
    expected = "bounced" if case.provider == "smtp-dsn" else "delivered"
    assert status(hooks.store, "m-1") == expected
    after = counts(hooks.store)

    again = hooks.post(case.provider, body, headers)  # the very same request, replayed
    assert again.status_code == 200, again.text
    assert again.json()["applied"] == 0
    assert again.json()["replayed"] or again.json()["duplicates"] == 1
    assert counts(hooks.store) == after


def test_a_provider_that_is_not_configured_refuses_everything(store: SqlStore) -> None:
    sent_message(store, "m-1")
    with running_api(store) as api:
        body, headers = generic_request([_generic_event()])
        response = api.client.post("/v1/webhooks/generic", content=body, headers=headers)
        assert response.status_code == 401
        assert "not configured" in response.json()["message"]
        assert api.client.post("/v1/webhooks/nowhere", content=b"{}").status_code == 422
    assert delivery_events(store) == []


def test_a_mailgun_token_replayed_with_other_event_data_is_refused(hooks: Hooks) -> None:
    sent_message(hooks.store, "m-1")
    body, headers = mailgun_request(_mg_event(), token="tok-A")
    assert hooks.post("mailgun", body, headers).json()["applied"] == 1
    forged = {**_mg_event(), "event": "complained", "id": "mg-evt-2"}
    body, headers = mailgun_request(forged, token="tok-A")  # the same signature block
    response = hooks.post("mailgun", body, headers)
    assert response.status_code == 401
    assert "replayed" in response.json()["message"]
    assert status(hooks.store, "m-1") == "delivered"
    assert is_suppressed(hooks.store, WS, "ada@example.com") is None


def test_a_generic_webhook_id_replayed_with_another_body_is_refused(hooks: Hooks) -> None:
    sent_message(hooks.store, "m-1")
    body, headers = generic_request([_generic_event()], webhook_id="msg_A")
    assert hooks.post("generic", body, headers).status_code == 200
    complaint = {**_generic_event(), "type": "complained", "id": "gen-2"}
    body, headers = generic_request([complaint], webhook_id="msg_A")
    assert hooks.post("generic", body, headers).status_code == 401
    assert status(hooks.store, "m-1") == "delivered"


# --- SNS: subscriptions and certificates -----------------------------------------------


def test_an_sns_subscription_is_confirmed_through_sns_only(hooks: Hooks) -> None:
    body, headers = sns_request(None, kind="SubscriptionConfirmation", message_id="sub-1")
    response = hooks.post("ses", body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["confirmed"] is True
    assert hooks.fetcher.asked[0] == CERT_URL
    assert hooks.fetcher.asked[1].startswith("https://sns.us-east-1.amazonaws.com/?Action=")
    assert all(u.startswith("https://sns.us-east-1.amazonaws.com/") for u in hooks.fetcher.asked)


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://evil.example.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
    ],
)
def test_a_certificate_off_sns_is_never_fetched(hooks: Hooks, cert_url: str) -> None:
    sent_message(hooks.store, "m-1")
    for kind in ("Notification", "SubscriptionConfirmation"):
        message = _ses_event() if kind == "Notification" else None
        body, headers = sns_request(message, cert_url=cert_url, kind=kind)
        assert hooks.post("ses", body, headers).status_code == 401
    assert hooks.fetcher.asked == []
    assert delivery_events(hooks.store) == []


def test_another_topic_is_refused(hooks: Hooks) -> None:
    sent_message(hooks.store, "m-1")
    other = "arn:aws:sns:us-east-1:123456789012:someone-else"
    for kind in ("Notification", "SubscriptionConfirmation"):
        message = _ses_event() if kind == "Notification" else None
        body, headers = sns_request(message, topic=other, kind=kind)
        assert hooks.post("ses", body, headers).status_code == 401
    assert hooks.fetcher.asked == []
    assert delivery_events(hooks.store) == []


def test_a_verified_body_that_is_not_the_format_is_a_400(hooks: Hooks) -> None:
    body, headers = generic_request([{"type": "exploded", "at": "2025-09-01T09:00:00Z"}])
    response = hooks.post("generic", body, headers)
    assert response.status_code == 400
    assert delivery_events(hooks.store) == []


# --- what events change ----------------------------------------------------------------


def _generic_sample() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((FIXTURES / "generic" / "events.json").read_text())
    return loaded


def _sample_messages(store: SqlStore) -> None:
    sent_message(store, "msg-0001", contact="ada", to="ada@example.com", step="send_welcome")
    sent_message(store, "msg-0002", contact="grace", to="grace@example.org")
    sent_message(store, "msg-0003", contact="linus", to="linus@example.org")
    # msg-0004 (a deferral) is about no message of ours


def test_the_generic_sample_updates_messages_suppresses_and_feeds_the_engine(
    hooks: Hooks,
) -> None:
    _sample_messages(hooks.store)
    body, headers = generic_request(_generic_sample())
    result = hooks.post("generic", body, headers).json()
    assert result == {
        "received": 8,
        "applied": 7,
        "duplicates": 0,
        "ignored": 1,
        "replayed": False,
        "confirmed": False,
    }
    assert status(hooks.store, "msg-0001") == "complained"
    assert status(hooks.store, "msg-0002") == "bounced"  # hard
    assert status(hooks.store, "msg-0003") == "bounced"  # soft: no suppression
    assert is_suppressed(hooks.store, WS, "ada@example.com") == "complaint"
    assert is_suppressed(hooks.store, WS, "GRACE@example.org") == "hard_bounce"
    assert is_suppressed(hooks.store, WS, "linus@example.org") is None
    kinds = [e["kind"] for e in delivery_events(hooks.store, "msg-0001")]
    assert kinds == ["delivered", "opened", "clicked", "complained", "unsubscribed"]
    fed = {(e["name"], e["contact_id"]): e for e in inbox(hooks.store)}
    assert set(fed) == {
        ("email_delivered", "ada"),
        ("email_opened", "ada"),
        ("email_clicked", "ada"),
        ("email_complained", "ada"),
        ("email_unsubscribed", "ada"),
        ("email_bounced", "grace"),
        ("email_bounced", "linus"),
    }
    opened = fed[("email_opened", "ada")]
    assert opened["id"] == "fm:email_opened:msg-0001"
    assert opened["properties"]["message_id"] == "msg-0001"
    assert opened["properties"]["workflow"] == "welcome"
    assert opened["properties"]["step"] == "send_welcome"
    assert fed[("email_clicked", "ada")]["properties"]["url"] == "https://flowmail.example/docs"
    assert fed[("email_bounced", "grace")]["properties"]["bounce_type"] == "hard"
    consents = _consents(hooks.store)
    assert consents == [("ada", "marketing", "unsubscribed", "webhook:generic")]


def _consents(store: SqlStore) -> list[tuple[str, str, str, str]]:
    k = t.consents
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(k.c.contact_id, k.c.topic, k.c.status, k.c.source))
        return sorted((r[0], r[1], r[2], r[3]) for r in rows)


def test_redelivered_events_are_deduplicated_by_provider_event_id(hooks: Hooks) -> None:
    _sample_messages(hooks.store)
    body, headers = generic_request(_generic_sample(), webhook_id="first")
    hooks.post("generic", body, headers)
    before = counts(hooks.store)
    body, headers = generic_request(_generic_sample(), webhook_id="second")  # a new delivery
    result = hooks.post("generic", body, headers).json()
    assert (result["applied"], result["duplicates"], result["ignored"]) == (0, 7, 1)
    assert counts(hooks.store) == before


def test_published_provider_samples_resolve_by_message_id(hooks: Hooks) -> None:
    """Samples without our tags still find their message: by Message-ID or provider id."""
    store = hooks.store
    sent_message(store, "k-pm", provider_id="883953f4-6105-42a2-a16a-77a8eac79483")
    ses_id = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
    sent_message(store, "k-ses", contact="rcpt", to="recipient@example.com", rfc=ses_id)
    mailgun_id = "20130503192659.13651.20287@sandboxd2bff44e72964702a4db1512384d6e9c.mailgun.org"
    sent_message(store, "k-mg", contact="alice", to="alice@example.com", rfc=mailgun_id)

    record = json.loads((FIXTURES / "postmark" / "bounce.json").read_text())
    assert hooks.post("postmark", *postmark_request(record)).json()["applied"] == 1
    event = json.loads((FIXTURES / "ses" / "event_bounce.json").read_text())
    assert hooks.post("ses", *sns_request(event)).json()["applied"] == 1
    document = json.loads((FIXTURES / "mailgun" / "permanent_fail.json").read_text())
    assert hooks.post("mailgun", *mailgun_request(document["event-data"])).json()["applied"] == 1

    assert [status(store, k) for k in ("k-pm", "k-ses", "k-mg")] == ["bounced"] * 3
    assert is_suppressed(store, WS, "john@example.com") == "hard_bounce"
    assert is_suppressed(store, WS, "recipient@example.com") == "hard_bounce"
    assert is_suppressed(store, WS, "alice@example.com") == "hard_bounce"


def test_sendgrid_batches_apply_each_event(hooks: Hooks) -> None:
    sent_message(hooks.store, "m-1", sent_at=T0 - timedelta(minutes=5))  # not opened at once
    events = [
        _sg_event(),
        _sg_event(event="open", sg_event_id="sg-evt-2"),
        _sg_event(event="click", sg_event_id="sg-evt-3", url="https://example.com/x"),
        _sg_event(event="processed", sg_event_id="sg-evt-4"),  # no kind of ours
    ]
    result = hooks.post("sendgrid", *sendgrid_request(events)).json()
    assert (result["received"], result["applied"]) == (3, 3)
    names = [e["name"] for e in inbox(hooks.store)]
    assert names == ["email_delivered", "email_opened", "email_clicked"]


def test_an_event_goes_to_the_workspace_of_its_message(hooks: Hooks) -> None:
    sent_message(hooks.store, "m-other", workspace="other", contact="ada")
    complaint = {**_generic_event(), "type": "complained", "message_id": "m-other"}
    assert hooks.post("generic", *generic_request([complaint])).json()["applied"] == 1
    assert status(hooks.store, "m-other", workspace="other") == "complained"
    assert is_suppressed(hooks.store, "other", "ada@example.com") == "complaint"
    assert is_suppressed(hooks.store, WS, "ada@example.com") is None
    assert {e["workspace_id"] for e in inbox(hooks.store)} == {"other"}


def test_events_about_unknown_messages_are_acknowledged_and_ignored(hooks: Hooks) -> None:
    before = counts(hooks.store)
    unknown = {**_generic_event(), "message_id": "never-sent"}
    response = hooks.post("generic", *generic_request([unknown]))
    assert response.status_code == 200
    assert (response.json()["ignored"], response.json()["applied"]) == (1, 0)
    assert counts(hooks.store) == before


# --- the engine hears of it ------------------------------------------------------------

JOURNEY = {
    "id": "onboarding",
    "topic": "marketing",
    "trigger": {"event": "signed_up"},
    "steps": [
        {"id": "hello", "email": {"subject": "Hello"}},
        {"id": "pause", "wait": "1d"},
        {
            "id": "check",
            "branch": [{"if": {"opened": "hello"}, "then": "engaged"}, {"else": "quiet"}],
        },
        {"id": "engaged", "email": {"subject": "Thanks for reading"}, "next": "end"},
        {"id": "quiet", "email": {"subject": "Still there?"}},
    ],
}


def test_a_journey_branches_on_an_open_reported_by_a_webhook(hooks: Hooks) -> None:
    store, clock = hooks.store, hooks.api.clock
    apply_workflow(store, WS, JOURNEY, clock.now())
    worker = Worker(store, clock, worker_id="test-worker")
    for contact in ("ana", "ben"):
        store.ingest(
            [
                InboundEvent(
                    contact, IDENTIFY, clock.now(), traits={"email": f"{contact}@example.com"},
                    id=f"i-{contact}", kind="identify",
                ),
                InboundEvent(contact, "signed_up", clock.now(), id=f"s-{contact}"),
            ],
            clock.now(),
        )  # fmt: skip
    worker.drain()
    hello = {m["contact_id"]: m for m in store.messages(WS) if m["step_id"] == "hello"}
    m = t.messages
    with store.engine.begin() as conn:  # the sender hands both over
        conn.execute(sa.update(m).values(status="sent", sent_at=clock.now()))
    clock.advance(timedelta(hours=2))
    opened = {
        "type": "opened",
        "message_id": hello["ana"]["id"],
        "email": "ana@example.com",
        "at": clock.now().isoformat(),
    }
    assert hooks.post("generic", *generic_request([opened], at=clock.now())).json()["applied"] == 1
    worker.drain()
    clock.advance(timedelta(days=1))
    worker.drain()
    paths = {run.contact_id: run.path for run in store.runs(WS, workflow_id="onboarding")}
    assert "engaged" in paths["ana"] and "quiet" not in paths["ana"]
    assert "quiet" in paths["ben"] and "engaged" not in paths["ben"]
    assert status(store, hello["ana"]["id"]) == "delivered"  # an open proves delivery


# --- complaint rates -------------------------------------------------------------------


def _bulk_sent(store: SqlStore, workflow: str, count: int, at: datetime) -> None:
    rows = [
        {
            "workspace_id": WS,
            "id": f"{workflow}-{i}",
            "run_id": f"run-{workflow}-{i}",
            "contact_id": f"c{i}",
            "workflow_id": workflow,
            "version": 1,
            "step_id": "promo",
            "to_address": f"c{i}@example.com",
            "subject": "Sale",
            "topic": "marketing",
            "priority": 0,
            "on_capped": "defer",
            "status": "sent",
            "created_at": at,
            "send_after": at,
            "sent_at": at,
            "attempts": 1,
        }
        for i in range(count)
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(t.messages), rows)


def _complain(hooks: Hooks, workflow: str, numbers: range) -> dict[str, Any]:
    events = [
        {
            "type": "complained",
            "id": f"cmp-{workflow}-{i}",
            "message_id": f"{workflow}-{i}",
            "email": f"c{i}@example.com",
            "at": hooks.api.clock.now().isoformat(),
        }
        for i in numbers
    ]
    body, headers = generic_request(events, webhook_id=f"cmp-{workflow}-{numbers.start}")
    response = hooks.post("generic", body, headers)
    assert response.status_code == 200
    return dict(response.json())


def _mode(store: SqlStore, workflow: str) -> tuple[str, str | None]:
    row = next(r for r in store.workflow_rows(WS) if r.id == workflow)
    return row.mode, row.reason


def test_complaint_rates_alert_at_a_tenth_of_a_percent_and_pause_at_three_tenths(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    store, now = hooks.store, hooks.api.clock.now()
    apply_workflow(store, WS, {**JOURNEY, "id": "promo"}, now)
    _bulk_sent(store, "promo", 1000, now - timedelta(days=1))
    with caplog.at_level(logging.WARNING, logger="flowmail.feedback"):
        _complain(hooks, "promo", range(0, 1))  # 1 in 1,000: 0.1 %
    assert _mode(store, "promo") == ("active", None)
    alerts = [r for r in caplog.records if "alert line" in r.getMessage()]
    assert len(alerts) == 1 and "'promo'" in alerts[0].getMessage()

    _complain(hooks, "promo", range(1, 3))  # 3 in 1,000: 0.3 %
    mode, reason = _mode(store, "promo")
    assert mode == "drain"
    assert reason is not None and "0.30%" in reason and "pause line" in reason


def test_complaint_rates_wait_for_the_minimum_volume(hooks: Hooks) -> None:
    store, now = hooks.store, hooks.api.clock.now()
    apply_workflow(store, WS, {**JOURNEY, "id": "tiny"}, now)
    _bulk_sent(store, "tiny", 999, now - timedelta(days=1))
    _complain(hooks, "tiny", range(0, 50))
    assert _mode(store, "tiny") == ("active", None)


def test_complaint_rate_settings_are_honoured(store: SqlStore) -> None:
    with running_api(store, **SECRETS, complaint_min_volume=100, complaint_pause_rate=0.02) as api:
        hooks = Hooks(api, Fetcher())
        now = api.clock.now()
        apply_workflow(store, WS, {**JOURNEY, "id": "small"}, now)
        _bulk_sent(store, "small", 100, now - timedelta(hours=1))
        _complain(hooks, "small", range(0, 1))
        assert _mode(store, "small")[0] == "active"
        _complain(hooks, "small", range(1, 2))  # 2 %: the configured pause line
        assert _mode(store, "small")[0] == "drain"


def test_the_sns_fetcher_only_ever_reaches_sns_hosts() -> None:
    from flowmail.api.webhooks import WebhookHub, fetch_from_sns

    fetcher = Fetcher()
    hub = WebhookHub(fetch_sns=fetcher)
    for url in (
        "https://evil.example/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "file:///etc/passwd",
    ):
        with pytest.raises(ValueError, match="not an Amazon SNS URL"):
            hub.fetch(url)
        with pytest.raises(ValueError, match="not an Amazon SNS URL"):
            fetch_from_sns(url)
    assert fetcher.asked == []
    assert hub.fetch(CERT_URL).startswith(b"-----BEGIN CERTIFICATE")
