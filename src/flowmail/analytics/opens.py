"""Telling machine-made opens from people's. Pure: no I/O, no clock.

An open pixel is fetched by whatever loads the email's images, and not all of those are
people: Apple Mail Privacy Protection fetches every image of every message on arrival
through Apple's proxies, security gateways fetch them while scanning, scripts and
headless browsers fetch them for their own reasons. Counting those as opens inflates open
rates and would make ``opened:`` conditions and engagement scores fire for people who
never looked.

:func:`automated_open` calls an open automated, with the reason, when

* the provider says so (``DeliveryEvent.machine``: SendGrid's ``sg_machine_open``,
  Mailgun's ``client-info.bot``, the generic format's ``automated``);
* its user agent is a known prefetcher or scanner (:func:`machine_agent`): the bare
  ``Mozilla/5.0`` of Apple's privacy proxy, mail security gateways (Barracuda, Mimecast,
  Proofpoint, ...), HTTP libraries, headless browsers, crawlers;
* it came less than ``within`` after the message was handed over (a person does not
  open an email within a second or two of it being sent; a gateway does). An open
  stamped before the hand-off (another clock, or a copy sent before a resend) says
  nothing either way.

Otherwise it is a person's (an open with no user agent is given the benefit of the
doubt). Automated opens are stored, marked ``detail.automated``, and counted apart; they
are not fed to the engine, so they neither satisfy ``opened:`` conditions nor add to
engagement scores. The open still proves the delivery.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

APPLE_PROXY_AGENT = "mozilla/5.0"  # all that Apple's privacy proxy says of itself
MAX_SHOWN = 80  # characters of a user agent quoted in a reason

_TOOLS = (
    # mail security gateways and link/attachment scanners
    "barracuda",
    "mimecast",
    "proofpoint",
    "zscaler",
    "messagelabs",
    "symantec",
    "trendmicro",
    "trend micro",
    "fireeye",
    "forcepoint",
    "sophos",
    "ironport",
    # HTTP libraries and command-line clients
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    # browsers without a person
    "headlesschrome",
    "phantomjs",
    "facebookexternalhit",
)
_WORDS = re.compile(
    r"(?<![a-z])(?:bot|crawler|spider|scanner|prefetch)(?![a-z])"  # a word of its own
    r"|[a-z]bot[/-]"  # Googlebot/2.1, Slackbot-LinkExpanding (not a "CUBOT X30" phone)
)


def machine_agent(user_agent: str | None) -> bool:
    """Whether a user agent is a known prefetcher, scanner or script (not a mail client)."""
    if not user_agent:
        return False
    agent = user_agent.strip().lower()
    if agent == APPLE_PROXY_AGENT:
        return True
    return any(tool in agent for tool in _TOOLS) or _WORDS.search(agent) is not None


def automated_open(
    *,
    machine: str | None,
    user_agent: str | None,
    at: datetime,
    sent_at: datetime | None,
    within: timedelta,
) -> str | None:
    """Why an open looks machine-made, or None for a person's.

    ``machine``: what the provider said (None: it said nothing); ``at``: when the open
    happened; ``sent_at``: when the message was handed over (None: not known);
    ``within``: opens sooner than this after ``sent_at`` are automated (zero: never).
    """
    if machine:
        return f"the provider says so ({machine})"
    if machine_agent(user_agent):
        assert user_agent is not None
        return f"user agent {user_agent.strip()[:MAX_SHOWN]!r}"
    if sent_at is not None and timedelta(0) <= at - sent_at < within:
        return f"opened {(at - sent_at).total_seconds():g}s after sending"
    return None
