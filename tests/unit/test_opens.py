"""Telling machine-made opens from people's, on the payload shapes providers publish.

Provider samples: the repository's fixtures (copied from each provider's documentation)
and, for the machine flags, the shapes of SendGrid's "Understanding Apple Mail Privacy
Protection and Open Events" (``sg_machine_open``) and Mailgun's "Open and Click Bot
Detection" (``client-info.bot``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowmail.analytics.opens import automated_open, machine_agent
from flowmail.runtime.feedback import provider_change
from flowmail.store.feedback import MessageRef
from flowmail.webhooks import DeliveryEvent, generic, mailgun, postmark, sendgrid, ses

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"
SENT = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)
TWO = timedelta(seconds=2)
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0",  # Apple Mail Privacy Protection's proxy says no more
        " mozilla/5.0 ",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0.0.0",
        "python-requests/2.31.0",
        "curl/8.4.0",
        "Go-http-client/1.1",
        "Barracuda Sentinel (EE)",
        "Mozilla/5.0 (compatible; Mimecast URL Protect)",
        "Proofpoint URL Defense scanner",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    ],
)
def test_prefetchers_scanners_and_scripts_are_machines(agent: str) -> None:
    assert machine_agent(agent)


@pytest.mark.parametrize(
    "agent",
    [
        None,
        "",
        APPLE_MAIL,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
        # Gmail and Yahoo fetch images through their proxies when the person opens the email
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Mobile Safari/537.36",
        "Thunderbird/115.3.1",
    ],
)
def test_mail_clients_and_reading_proxies_are_people(agent: str | None) -> None:
    assert not machine_agent(agent)


def test_the_provider_flag_wins_then_the_agent_then_the_timing() -> None:
    late = SENT + timedelta(hours=1)
    flagged = automated_open(
        machine="sg_machine_open", user_agent=APPLE_MAIL, at=late, sent_at=SENT, within=TWO
    )
    assert flagged == "the provider says so (sg_machine_open)"
    agent = automated_open(machine=None, user_agent="Mozilla/5.0", at=late, sent_at=SENT,
                           within=TWO)  # fmt: skip
    assert agent == "user agent 'Mozilla/5.0'"
    soon = automated_open(machine=None, user_agent=APPLE_MAIL, at=SENT + timedelta(seconds=1.5),
                          sent_at=SENT, within=TWO)  # fmt: skip
    assert soon == "opened 1.5s after sending"
    assert automated_open(machine=None, user_agent=APPLE_MAIL, at=late, sent_at=SENT,
                          within=TWO) is None  # fmt: skip


@pytest.mark.parametrize(
    ("at", "sent_at", "within", "automated"),
    [
        (SENT, SENT, TWO, True),  # the same instant
        (SENT + timedelta(seconds=1.999), SENT, TWO, True),
        (SENT + TWO, SENT, TWO, False),  # the window is open at its end
        (SENT - timedelta(seconds=1), SENT, TWO, False),  # before the hand-off: no evidence
        (SENT, None, TWO, False),  # never handed over as far as we know
        (SENT, SENT, timedelta(0), False),  # zero turns the timing rule off
    ],
)
def test_the_timing_rule(
    at: datetime, sent_at: datetime | None, within: timedelta, automated: bool
) -> None:
    reason = automated_open(machine=None, user_agent=None, at=at, sent_at=sent_at, within=within)
    assert (reason is not None) == automated


# --- provider payloads -----------------------------------------------------------------


def _sendgrid_open(**extra: Any) -> bytes:
    """The Event Webhook's open example, with the MPP field of the Apple MPP page."""
    event = {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "open",
        "category": "cat facts",
        "sg_event_id": "FOTFFO0ecsBE-zxFXfs6WA==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "useragent": APPLE_MAIL,
        "ip": "255.255.255.255",
        **extra,
    }
    return json.dumps([event]).encode()


def _verdict(event: DeliveryEvent, sent_at: datetime | None = None) -> str | None:
    return automated_open(
        machine=event.machine,
        user_agent=event.user_agent,
        at=event.at,
        sent_at=sent_at,
        within=TWO,
    )


def test_sendgrid_sg_machine_open() -> None:
    [machine] = sendgrid.normalize(_sendgrid_open(sg_machine_open=True))
    assert machine.machine == "sg_machine_open"
    assert _verdict(machine) == "the provider says so (sg_machine_open)"
    [person] = sendgrid.normalize(_sendgrid_open(sg_machine_open=False))
    assert (person.machine, _verdict(person)) == (None, None)
    [documented] = sendgrid.normalize(
        (FIXTURES / "sendgrid" / "event_webhook_reference.json").read_bytes()
    )[2:3]
    assert (documented.kind, documented.machine) == ("opened", None)


def _mailgun_open(client: dict[str, str]) -> bytes:
    """Mailgun's opened payload, with the client-info of its bot detection page."""
    document = json.loads((FIXTURES / "mailgun" / "opened.json").read_text())
    document["event-data"]["client-info"] = client
    return json.dumps(document).encode()


@pytest.mark.parametrize("bot", ["apple", "gmail", "generic"])
def test_mailgun_client_info_bot(bot: str) -> None:
    client = {
        "client-name": "unknown",
        "client-type": "unknown",
        "user-agent": "Mozilla/5.0",
        "device-type": "unknown",
        "client-os": "unknown",
        "bot": bot,
    }
    [event] = mailgun.normalize(_mailgun_open(client))
    assert event.machine == f"bot: {bot}"
    assert _verdict(event) == f"the provider says so (bot: {bot})"


def test_mailgun_without_a_bot_is_a_person_in_chrome() -> None:
    [event] = mailgun.normalize((FIXTURES / "mailgun" / "opened.json").read_bytes())
    assert event.machine is None
    assert event.user_agent is not None and "Chrome/26" in event.user_agent
    assert _verdict(event) is None
    [empty] = mailgun.normalize(_mailgun_open({"user-agent": APPLE_MAIL, "bot": ""}))
    assert (empty.machine, _verdict(empty)) == (None, None)


def test_postmark_has_no_flag_so_the_agent_decides() -> None:
    sample = json.loads((FIXTURES / "postmark" / "open.json").read_text())
    [person] = postmark.normalize(json.dumps(sample).encode())
    assert (person.kind, person.machine, _verdict(person)) == ("opened", None, None)
    proxied = {**sample, "UserAgent": "Mozilla/5.0", "Platform": "Unknown"}
    [machine] = postmark.normalize(json.dumps(proxied).encode())
    assert _verdict(machine) == "user agent 'Mozilla/5.0'"


def test_ses_has_no_flag_so_the_agent_and_the_timing_decide() -> None:
    sample = (FIXTURES / "ses" / "event_open.json").read_text()
    envelope = {"Type": "Notification", "MessageId": "n-1", "Message": sample}
    [event] = ses.normalize(json.dumps(envelope).encode())
    assert (event.kind, event.machine) == ("opened", None)
    assert _verdict(event) is None  # an iPhone, half a minute after the send
    # the send's own timestamp is 22:00:19.652 minus 30 s: opened 1 s after it, automated
    sent = event.at - timedelta(seconds=1)
    assert _verdict(event, sent_at=sent) == "opened 1s after sending"


def test_generic_automated_field() -> None:
    body = {"type": "opened", "message_id": "m-1", "at": "2025-09-01T09:00:00Z",
            "automated": True}  # fmt: skip
    [event] = generic.normalize(json.dumps(body).encode())
    assert event.machine == "automated"
    [plain] = generic.normalize(json.dumps({**body, "automated": "yes"}).encode())
    assert plain.machine is None, "only a JSON true counts"


# --- what the feedback does with it ------------------------------------------------------

MESSAGE = MessageRef(
    "default", "m-1", "r-1", "ada", "welcome", "hello", "ada@example.com", "marketing",
    "sent", SENT, SENT,
)  # fmt: skip


def test_an_automated_open_is_marked_and_not_fed_a_persons_is_fed() -> None:
    [machine] = sendgrid.normalize(_sendgrid_open(sg_machine_open=True))
    change = provider_change(MESSAGE, machine, TWO)
    assert change.detail["automated"] is True
    assert change.detail["automated_by"] == "the provider says so (sg_machine_open)"
    assert change.inbox is None, "the engine never hears of it"
    assert change.status == "delivered", "it still proves the delivery"

    [person] = sendgrid.normalize(_sendgrid_open())
    fed = provider_change(MESSAGE, person, TWO)
    assert "automated" not in fed.detail
    assert fed.inbox is not None and fed.inbox.name == "email_opened"


def test_only_opens_are_judged() -> None:
    click = DeliveryEvent("generic", "c-1", "clicked", SENT, "ada@example.com",
                          url="https://example.com", user_agent="curl/8.4.0")  # fmt: skip
    change = provider_change(MESSAGE, click, TWO)
    assert "automated" not in change.detail
    assert change.inbox is not None and change.inbox.name == "email_clicked"
